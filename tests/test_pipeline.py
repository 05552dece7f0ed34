"""The whole graph on real days, against a temp DuckDB file and a temp MLflow store."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd
from mlflow import MlflowClient

from mlops_assets.landing import partition_key_for
from mlops_assets.registry import champion_version
from mlops_assets.settings import REGISTERED_MODEL_NAME, StatePaths
from tests.conftest import land_days


def _ingest(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[str]) -> None:
    instance.add_dynamic_partitions("landing_batches", keys)
    job = defs.resolve_job_def("ingest_batch")
    for key in keys:
        assert job.execute_in_process(partition_key=key, instance=instance).success


def test_whole_graph_on_real_days_registers_a_model_better_than_base_rate(
    defs: dg.Definitions, state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    files = land_days(state_paths, package_flights, dt.date(2013, 1, 1), dt.date(2013, 1, 21))
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([defs.resolve_assets_def("weather")], instance=instance).success
    _ingest(defs, instance, [partition_key_for(f) for f in files])

    result = defs.resolve_job_def("retrain").execute_in_process(instance=instance)
    assert result.success
    evaluation = result.output_for_node("candidate_evaluation")
    assert evaluation.candidate_metrics["roc_auc"] > 0.55
    assert evaluation.base_rate_metrics["roc_auc"] == 0.5
    assert evaluation.candidate_metrics["log_loss"] < evaluation.base_rate_metrics["log_loss"]

    client = MlflowClient(tracking_uri=state_paths.mlflow_tracking_uri)
    champion = champion_version(client, REGISTERED_MODEL_NAME)
    assert champion is not None and champion.version == evaluation.candidate.version
    run = client.get_run(evaluation.candidate.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["holdout_roc_auc"] == evaluation.candidate_metrics["roc_auc"]
    lineage = client.download_artifacts(run.info.run_id, "lineage.json", str(state_paths.root))
    batches = pd.read_json(lineage, typ="series")["batches"]
    assert len(batches) == 21 and all(len(b["content_sha256"]) == 64 for b in batches)
    assert not (state_paths.root.parent / "mlruns").exists()


def test_materializing_a_partition_twice_keeps_its_row_count(
    defs: dg.Definitions, state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    [path] = land_days(state_paths, package_flights, dt.date(2013, 1, 5), dt.date(2013, 1, 5))
    expected = len(package_flights.query("month == '1' and day == '5'"))
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([defs.resolve_assets_def("weather")], instance=instance).success
    key = partition_key_for(path)
    _ingest(defs, instance, [key])
    _ingest(defs, instance, [key])
    with duckdb.connect(str(state_paths.warehouse), read_only=True) as con:
        raw = con.execute("SELECT COUNT(*) FROM raw_flights WHERE batch_key = ?", [key]).fetchone()[0]
        features = con.execute("SELECT COUNT(*) FROM flight_features WHERE batch_key = ?", [key]).fetchone()[0]
    assert raw == features == expected
