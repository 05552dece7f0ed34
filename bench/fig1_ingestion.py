"""Figure 1, ingestion: a resampled landing file into raw_flights through the product (checks
included) against DuckDB's own read_csv into a table (the limit), each run in a fresh process."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.common import (
    Timer,
    base_parser,
    child_main,
    resample_flights,
    rss_mib,
    run_child,
    save_results,
    summary,
    workdir,
    write_landing_csv,
)

MODULE = "bench.fig1_ingestion"
FULL_ROWS = 1_000_000
QUICK_ROWS = 20_000
BATCH_KEY = "flights_bench"
GOAL_SPEED = 0.8
GOAL_MEMORY = 1.5


def duckdb_read_csv(params: dict[str, object]) -> dict[str, object]:
    """The limit: DuckDB's sniffing CSV reader straight into a table."""
    import duckdb

    before = rss_mib()
    with Timer() as timer:
        con = duckdb.connect(str(params["db"]))
        con.execute("CREATE TABLE raw_flights AS SELECT * FROM read_csv(?)", [str(params["csv"])])
        rows = con.execute("SELECT COUNT(*) FROM raw_flights").fetchone()[0]
        con.close()
    return {"seconds": timer.seconds, "rows": int(rows), "rss_before_mib": before}


def pandas_then_duckdb(params: dict[str, object]) -> dict[str, object]:
    """What many users write: pandas reads the CSV, DuckDB stores the frame."""
    import duckdb
    import pandas as pd

    before = rss_mib()
    with Timer() as timer:
        frame = pd.read_csv(str(params["csv"]))
        con = duckdb.connect(str(params["db"]))
        con.register("frame", frame)
        con.execute("CREATE TABLE raw_flights AS SELECT * FROM frame")
        rows = con.execute("SELECT COUNT(*) FROM raw_flights").fetchone()[0]
        con.close()
    return {"seconds": timer.seconds, "rows": int(rows), "rss_before_mib": before}


def product_load_batch(params: dict[str, object]) -> dict[str, object]:
    """The product's library path: profile, type check, replace-by-partition insert, quality checks."""
    from mlops_assets.ingestion import load_batch
    from mlops_assets.warehouse import Warehouse

    before = rss_mib()
    with Timer() as timer:
        with Warehouse(path=str(params["db"])).connect() as con:
            batch = load_batch(con, Path(str(params["csv"])), BATCH_KEY)
    return {
        "seconds": timer.seconds,
        "rows": batch.row_count,
        "checks_passed": batch.checks_passed,
        "failed_checks": [c.name for c in batch.checks if not c.passed],
        "rss_before_mib": before,
    }


def product_dagster_asset(params: dict[str, object]) -> dict[str, object]:
    """The product through Dagster: the raw_flights asset materialized on a real temp instance."""
    import warnings

    from mlops_assets.definitions import build_definitions
    from mlops_assets.instance import open_instance
    from mlops_assets.landing import partition_key_for
    from mlops_assets.settings import StatePaths

    warnings.filterwarnings("ignore")
    paths = StatePaths(Path(str(params["state"])))
    csv = Path(str(params["csv"]))
    key = partition_key_for(csv)
    defs = build_definitions(paths)
    instance = open_instance(paths)
    instance.add_dynamic_partitions("landing_batches", [key])
    before = rss_mib()
    with Timer() as timer:
        result = defs.resolve_job_def("ingest_batch").execute_in_process(
            partition_key=key, instance=instance, op_selection=["raw_flights"]
        )
    checks = result.get_asset_check_evaluations()
    return {
        "seconds": timer.seconds,
        "success": result.success,
        "checks_passed": all(c.passed for c in checks),
        "rss_before_mib": before,
    }


VARIANTS = {
    "duckdb_read_csv": duckdb_read_csv,
    "pandas_then_duckdb": pandas_then_duckdb,
    "product_load_batch": product_load_batch,
    "product_dagster_asset": product_dagster_asset,
}
LIMIT = "duckdb_read_csv"


def main(argv: list[str]) -> int:
    if "--child" in argv:
        child_main(VARIANTS, argv)
        return 0
    args = base_parser(__doc__).parse_args(argv)
    rows = QUICK_ROWS if args.quick else FULL_ROWS
    runs = args.runs or (1 if args.quick else 5)
    scratch = workdir(args)
    root = Path(scratch.name) if scratch else args.workdir
    from mlops_assets.landing_writer import read_package_flights

    # The state layout the Dagster variant expects: landing/<file>.csv under a state folder.
    csv = write_landing_csv(resample_flights(read_package_flights(), rows), root / "landing" / f"{BATCH_KEY}.csv")
    measured: dict[str, list[dict[str, object]]] = {name: [] for name in VARIANTS}
    for run in range(runs):
        names = list(VARIANTS)
        # Rotate the order each run so no variant always runs first (cold caches, turbo).
        names = names[run % len(names) :] + names[: run % len(names)]
        for name in names:
            state = root / f"state-{name}-{run}"
            (state / "landing").mkdir(parents=True)
            (state / "landing" / csv.name).symlink_to(csv)
            params = {"csv": str(csv), "db": str(state / "warehouse.duckdb"), "state": str(state)}
            result = run_child(MODULE, name, params)
            print(f"run {run + 1}/{runs} {name}: {result['seconds']:.2f} s, peak {result['peak_rss_mib']:.0f} MiB")
            measured[name].append(result)
    variants = {}
    for name, results in measured.items():
        variants[name] = {
            "seconds": summary([r["seconds"] for r in results]),
            "rows_per_second": summary([rows / r["seconds"] for r in results]),
            "peak_rss_mib": summary([r["peak_rss_mib"] for r in results]),
            "rss_before_mib": summary([r["rss_before_mib"] for r in results]),
            "last": {k: v for k, v in results[-1].items() if k not in ("seconds", "peak_rss_mib", "rss_before_mib")},
        }
    limit = variants[LIMIT]
    ratios = {}
    for name in VARIANTS:
        if name == LIMIT:
            continue
        speed = [measured[LIMIT][i]["seconds"] / measured[name][i]["seconds"] for i in range(runs)]
        memory = [measured[name][i]["peak_rss_mib"] / measured[LIMIT][i]["peak_rss_mib"] for i in range(runs)]
        ratios[name] = {
            "speed_vs_limit": limit["seconds"]["median"] / variants[name]["seconds"]["median"],
            "speed_vs_limit_per_run": summary(speed),
            "peak_memory_vs_limit": variants[name]["peak_rss_mib"]["median"] / limit["peak_rss_mib"]["median"],
            "peak_memory_vs_limit_per_run": summary(memory),
        }
    product = ratios["product_load_batch"]
    figure = {
        "rows": rows,
        "runs": runs,
        "csv_mib": csv.stat().st_size / 1024**2,
        "variants": variants,
        "ratios": ratios,
        "goals": {
            "speed_vs_limit_at_least": GOAL_SPEED,
            "peak_memory_vs_limit_at_most": GOAL_MEMORY,
            "speed_met": product["speed_vs_limit"] >= GOAL_SPEED,
            "memory_met": product["peak_memory_vs_limit"] <= GOAL_MEMORY,
        },
    }
    save_results(args, "fig1_ingestion", figure)
    if scratch:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
