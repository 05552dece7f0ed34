"""Figure 2, incremental cost: ingesting and checking one new batch (a real day) into a warehouse
that already holds 10 batches, against one that holds 300; each run in a fresh process."""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
import sys
from pathlib import Path

from bench.common import Timer, base_parser, child_main, run_child, save_results, summary, workdir

MODULE = "bench.fig2_incremental"
FULL_HISTORY = (10, 300)
QUICK_HISTORY = (3, 10)
FIRST_DAY = dt.date(2013, 1, 1)
NEW_DAY = dt.date(2013, 12, 15)
GOAL = 1.2
# A load of one day takes tens of milliseconds: several loads per process, each on a fresh copy.
REPEATS = 5


def load_new_batch(params: dict[str, object]) -> dict[str, object]:
    """On fresh copies of a prepared warehouse, time load_batch of the new day's file, `repeats` times."""
    from mlops_assets.ingestion import load_batch
    from mlops_assets.landing import partition_key_for
    from mlops_assets.warehouse import RAW_TABLE, Warehouse

    db = Path(str(params["db"]))
    csv = Path(str(params["csv"]))
    seconds = []
    for _ in range(int(params["repeats"])):
        shutil.copyfile(str(params["template"]), db)
        with Warehouse(path=str(db)).connect() as con:
            history_rows = con.execute(f"SELECT COUNT(*) FROM {RAW_TABLE}").fetchone()[0]
            with Timer() as timer:
                batch = load_batch(con, csv, partition_key_for(csv))
        seconds.append(timer.seconds)
        db.unlink()
    return {
        "seconds": seconds,
        "rows": batch.row_count,
        "history_rows": int(history_rows),
        "checks_passed": batch.checks_passed,
    }


VARIANTS = {"load_new_batch": load_new_batch}


def prepare_history(root: Path, days: int, flights: object) -> Path:
    """A warehouse holding `days` real day batches loaded by the product, from 2013-01-01 on."""
    from mlops_assets.ingestion import load_batch
    from mlops_assets.landing import partition_key_for
    from mlops_assets.landing_writer import write_landing_days
    from mlops_assets.warehouse import Warehouse

    landing = root / f"history-{days}"
    files = write_landing_days(landing, FIRST_DAY, FIRST_DAY + dt.timedelta(days=days - 1), flights)
    db = root / f"history-{days}.duckdb"
    with Warehouse(path=str(db)).connect() as con:
        for path in files:
            load_batch(con, path, partition_key_for(path))
        con.execute("CHECKPOINT")
    return db


def main(argv: list[str]) -> int:
    if "--child" in argv:
        child_main(VARIANTS, argv)
        return 0
    args = base_parser(__doc__).parse_args(argv)
    small, large = QUICK_HISTORY if args.quick else FULL_HISTORY
    runs = args.runs or (1 if args.quick else 5)
    scratch = workdir(args)
    root = Path(scratch.name) if scratch else args.workdir
    from mlops_assets.landing_writer import read_package_flights, write_landing_days

    flights = read_package_flights()
    templates = {small: prepare_history(root, small, flights), large: prepare_history(root, large, flights)}
    [new_csv] = write_landing_days(root / "new", NEW_DAY, NEW_DAY, flights)
    measured: dict[int, list[dict[str, object]]] = {small: [], large: []}
    for run in range(runs):
        order = (small, large) if run % 2 == 0 else (large, small)
        for history in order:
            params = {"template": str(templates[history]), "db": str(root / f"run-{history}-{run}.duckdb")}
            params.update(csv=str(new_csv), repeats=1 if args.quick else REPEATS)
            result = run_child(MODULE, "load_new_batch", params)
            shown = ", ".join(f"{s * 1000:.1f}" for s in result["seconds"])
            print(f"run {run + 1}/{runs} history {history}: {shown} ms")
            measured[history].append(result)
    variants = {
        f"history_{history}_batches": {
            "batches_before": history,
            "history_rows": results[0]["history_rows"],
            "seconds": summary([s for r in results for s in r["seconds"]]),
            "peak_rss_mib": summary([r["peak_rss_mib"] for r in results]),
            "new_batch_rows": results[0]["rows"],
            "checks_passed": all(r["checks_passed"] for r in results),
        }
        for history, results in measured.items()
    }
    ratio = (
        variants[f"history_{large}_batches"]["seconds"]["median"]
        / (variants[f"history_{small}_batches"]["seconds"]["median"])
    )
    per_run = [
        statistics.median(measured[large][i]["seconds"]) / statistics.median(measured[small][i]["seconds"])
        for i in range(runs)
    ]
    figure = {
        "new_batch": new_csv.name,
        "runs": runs,
        "loads_per_run": REPEATS if not args.quick else 1,
        "variants": variants,
        "ratios": {"large_vs_small_history": ratio, "large_vs_small_history_per_run": summary(per_run)},
        "goals": {"ratio_at_most": GOAL, "met": ratio <= GOAL},
    }
    save_results(args, "fig2_incremental", figure)
    if scratch:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
