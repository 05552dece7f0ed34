"""Figure 3, orchestration overhead: the whole pipeline (weather, every batch through raw_flights
and its checks and flight_features, then training_set, candidate_model, candidate_evaluation, the
gate and champion_model) through Dagster on a real temp instance, against the same library
functions called from a plain script; each run in a fresh process on a fresh state folder."""

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

MODULE = "bench.fig3_orchestration"
FULL_ROWS = 1_000_000
QUICK_ROWS = 20_000
# Smoke mode trains a few trees only and lets MLflow skip its pip-requirements inference (a
# subprocess that re-imports the model, ~10 s here); full runs keep the product's defaults.
QUICK_MAX_ITER = 10
QUICK_ENV = {"MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1"}
GOAL = 1.3
PIPELINE_ASSETS = ("training_set", "candidate_model", "candidate_evaluation", "champion_model")


def _state(params: dict[str, object]):  # noqa: ANN202 - StatePaths, imported late
    from mlops_assets.settings import StatePaths

    root = Path(str(params["state"]))
    (root / "landing").mkdir(parents=True)
    for csv in sorted(Path(str(params["landing"])).glob("*.csv")):
        (root / "landing" / csv.name).symlink_to(csv)
    return StatePaths(root)


def through_dagster(params: dict[str, object]) -> dict[str, object]:
    """Weather, one ingest_batch run per landed file, then one run of the training-to-champion assets."""
    import os
    import warnings

    import dagster as dg

    from mlops_assets.definitions import build_definitions
    from mlops_assets.instance import open_instance
    from mlops_assets.landing import partition_key_for

    warnings.filterwarnings("ignore")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    paths = _state(params)
    before = rss_mib()
    with Timer() as timer:
        instance = open_instance(paths)
        # A fixed selection, so assets added downstream later do not change what is measured.
        train_job = dg.define_asset_job("bench_train_and_promote", selection=dg.AssetSelection.assets(*PIPELINE_ASSETS))
        defs = dg.Definitions.merge(build_definitions(paths), dg.Definitions(jobs=[train_job]))
        assert dg.materialize([defs.resolve_assets_def("weather")], instance=instance).success
        keys = [partition_key_for(p) for p in sorted(paths.landing.glob("*.csv"))]
        instance.add_dynamic_partitions("landing_batches", keys)
        ingest = defs.resolve_job_def("ingest_batch")
        for key in keys:
            assert ingest.execute_in_process(partition_key=key, instance=instance).success
        run_config = {"ops": {"candidate_model": {"config": {"max_iter": int(params["max_iter"])}}}}
        result = defs.resolve_job_def("bench_train_and_promote").execute_in_process(
            instance=instance, run_config=run_config
        )
        assert result.success
        evaluation = result.output_for_node("candidate_evaluation")
    return {
        "seconds": timer.seconds,
        "batches": len(keys),
        "roc_auc": evaluation.candidate_metrics["roc_auc"],
        "holdout_rows": evaluation.holdout_rows,
        "rss_before_mib": before,
    }


def plain_script(params: dict[str, object]) -> dict[str, object]:
    """The same library functions, called in order from a script: no Dagster run, no IO manager."""
    import os
    import warnings

    import mlflow

    from mlops_assets.contracts import LABEL
    from mlops_assets.defs.ingestion import WeatherConfig, weather
    from mlops_assets.features import coerce_model_input, write_feature_partition
    from mlops_assets.ingestion import load_batch
    from mlops_assets.landing import partition_key_for
    from mlops_assets.modeling import (
        TrainingParams,
        base_rate_metrics,
        classification_metrics,
        predict_probability,
        train_model,
    )
    from mlops_assets.promotion import Evaluation, gate_decision, record_ledger_row
    from mlops_assets.quality import DEFAULT_MAX_NULL_SHARE, resolve_null_limits
    from mlops_assets.registry import champion_version, load_model, log_and_register_model, move_champion_alias
    from mlops_assets.resources import ModelRegistry
    from mlops_assets.settings import EXPERIMENT_NAME
    from mlops_assets.training_data import TrainingSetMinimums, check_training_set, select_training_set
    from mlops_assets.warehouse import Warehouse

    warnings.filterwarnings("ignore")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    paths = _state(params)
    before = rss_mib()
    with Timer() as timer:
        warehouse = Warehouse(path=str(paths.warehouse))
        # The weather asset's body is its SQL: invoking the asset directly runs just that.
        weather(config=WeatherConfig(), warehouse=warehouse)
        keys = []
        for path in sorted(paths.landing.glob("*.csv")):
            key = partition_key_for(path)
            with warehouse.connect() as con:
                batch = load_batch(con, path, key, resolve_null_limits(DEFAULT_MAX_NULL_SHARE))
                assert batch.checks_passed, [c.description for c in batch.checks if not c.passed]
                write_feature_partition(con, key)
            keys.append(key)
        with warehouse.connect(read_only=True) as con:
            data = select_training_set(con, window_days=60, holdout_days=7)
        refused = [c.description for c in check_training_set(data, TrainingSetMinimums()) if not c.passed]
        assert not refused, refused
        registry = ModelRegistry(tracking_uri=paths.mlflow_tracking_uri, artifact_root=str(paths.mlflow_artifacts))
        client = registry.client()
        mlflow.set_experiment(EXPERIMENT_NAME)
        params_ = TrainingParams(max_iter=int(params["max_iter"]))
        with mlflow.start_run():
            mlflow.log_params({**params_.__dict__, "train_rows": len(data.train)})
            mlflow.set_tags({"dagster_asset": "candidate_model", "batch_count": len(data.batches)})
            mlflow.log_dict(
                {"batches": [{"batch_key": k, "content_sha256": h} for k, h in data.batches]}, "lineage.json"
            )
            model = train_model(data.train, params_)
            version = log_and_register_model(model, coerce_model_input(data.train).head(5), registry.model_name)
            train_y = data.train[LABEL].astype(int).to_numpy()
            mlflow.log_metric(
                "train_roc_auc", classification_metrics(train_y, predict_probability(model, data.train), 0.5)["roc_auc"]
            )
        holdout_y = data.holdout[LABEL].astype(int).to_numpy()
        metrics = classification_metrics(holdout_y, predict_probability(load_model(version), data.holdout), 0.35)
        champion = champion_version(client, registry.model_name)
        assert champion is None
        baseline = base_rate_metrics(train_y, holdout_y, 0.35)
        for name, value in metrics.items():
            client.log_metric(version.run_id, f"holdout_{name}", value)
        for name, value in baseline.items():
            client.log_metric(version.run_id, f"base_rate_{name}", value)
        evaluation = Evaluation(version, metrics, baseline, None, None, len(holdout_y), 0.35)
        decision = gate_decision(evaluation, "roc_auc", 0.55, 0.005)
        assert decision.passed, decision.reason
        move_champion_alias(client, version)
        with warehouse.connect() as con:
            record_ledger_row(
                con, "promoted", version.name, version.version, None, metrics, None, decision.reason, "bench"
            )
    return {
        "seconds": timer.seconds,
        "batches": len(keys),
        "roc_auc": metrics["roc_auc"],
        "holdout_rows": len(holdout_y),
        "rss_before_mib": before,
    }


VARIANTS = {"plain_script": plain_script, "through_dagster": through_dagster}
BASELINE = "plain_script"


def write_monthly_files(flights: object, rows: int, landing: Path, first_month: int = 1) -> list[Path]:
    """The resampled rows as one landing file per month from `first_month` (12 batches from January)."""
    sample = resample_flights(flights, rows)
    sample = sample[sample["month"].astype(int) >= first_month]
    return [
        write_landing_csv(part, landing / f"flights_2013-{int(month):02d}.csv")
        for month, part in sample.groupby(sample["month"].astype(int), sort=True)
    ]


def main(argv: list[str]) -> int:
    if "--child" in argv:
        child_main(VARIANTS, argv)
        return 0
    args = base_parser(__doc__).parse_args(argv)
    rows = QUICK_ROWS if args.quick else FULL_ROWS
    runs = args.runs or (1 if args.quick else 3)
    scratch = workdir(args)
    root = Path(scratch.name) if scratch else args.workdir
    from mlops_assets.landing_writer import read_package_flights

    # Smoke mode lands November and December only: two batches, still a full training window.
    files = write_monthly_files(read_package_flights(), rows, root / "landing", 11 if args.quick else 1)
    measured: dict[str, list[dict[str, object]]] = {name: [] for name in VARIANTS}
    for run in range(runs):
        names = list(VARIANTS) if run % 2 == 0 else list(reversed(VARIANTS))
        for name in names:
            params = {
                "landing": str(root / "landing"),
                "state": str(root / f"state-{name}-{run}"),
                "max_iter": QUICK_MAX_ITER if args.quick else 200,
            }
            result = run_child(MODULE, name, params, env=QUICK_ENV if args.quick else None)
            print(f"run {run + 1}/{runs} {name}: {result['seconds']:.1f} s, peak {result['peak_rss_mib']:.0f} MiB")
            measured[name].append(result)
    variants = {
        name: {
            "seconds": summary([r["seconds"] for r in results]),
            "peak_rss_mib": summary([r["peak_rss_mib"] for r in results]),
            "rss_before_mib": summary([r["rss_before_mib"] for r in results]),
            "roc_auc": results[-1]["roc_auc"],
            "holdout_rows": results[-1]["holdout_rows"],
            "batches": results[-1]["batches"],
        }
        for name, results in measured.items()
    }
    ratio = variants["through_dagster"]["seconds"]["median"] / variants[BASELINE]["seconds"]["median"]
    per_run = [measured["through_dagster"][i]["seconds"] / measured[BASELINE][i]["seconds"] for i in range(runs)]
    figure = {
        "rows": rows if not args.quick else sum(1 for f in files for _ in f.open()) - len(files),
        "batches": len(files),
        "runs": runs,
        "variants": variants,
        "ratios": {"dagster_vs_plain": ratio, "dagster_vs_plain_per_run": summary(per_run)},
        "goals": {"ratio_at_most": GOAL, "met": ratio <= GOAL},
    }
    save_results(args, "fig3_orchestration", figure)
    if scratch:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
