"""A week of flipped labels makes a worse candidate: the gate refuses it and the champion stays."""

from __future__ import annotations

import datetime as dt
import io

import dagster as dg
import duckdb
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlops_assets import cli
from mlops_assets.landing import partition_key_for
from mlops_assets.promotion import read_ledger
from mlops_assets.registry import GATE_REFUSED, GATE_TAG, champion_holders, champion_version
from mlops_assets.settings import REGISTERED_MODEL_NAME, StatePaths
from tests.conftest import land_days

# Two windows of 7 days, the last 3 held out. The second window trains on the flipped days only,
# and is judged on the real days after them, the holdout the old champion is scored on as well.
FIRST_REAL = (dt.date(2013, 1, 1), dt.date(2013, 1, 7))
FLIPPED = (dt.date(2013, 1, 8), dt.date(2013, 1, 11))
SECOND_REAL = (dt.date(2013, 1, 12), dt.date(2013, 1, 14))
RUN_CONFIG = dg.RunConfig(
    ops={
        "training_set": {"config": {"window_days": 7, "holdout_days": 3}},
        "candidate_model": {"config": {"max_iter": 60}},
    }
)


def flip_labels(flights: pd.DataFrame) -> pd.DataFrame:
    """The same flights with the answer reversed: disrupted ones arrive on time and on-time ones 60 min late."""
    flipped = flights.copy()
    delay = pd.to_numeric(flipped["arr_delay"], errors="coerce")
    disrupted = delay.isna() | (delay > 15)
    flipped["arr_delay"] = disrupted.map({True: "0", False: "60"})
    return flipped


def real_disrupted_share(flights: pd.DataFrame, first: dt.date, last: dt.date) -> float:
    dates = pd.to_datetime(flights[["year", "month", "day"]].astype(int)).dt.date
    rows = flights[(dates >= first) & (dates <= last)]
    delay = pd.to_numeric(rows["arr_delay"], errors="coerce")
    return float((delay.isna() | (delay > 15)).mean())


def _ingest(defs: dg.Definitions, instance: dg.DagsterInstance, files: list) -> None:
    keys = [partition_key_for(f) for f in files]
    instance.add_dynamic_partitions("landing_batches", keys)
    job = defs.resolve_job_def("ingest_batch")
    for key in keys:
        assert job.execute_in_process(partition_key=key, instance=instance).success


# Only the gate's own path: assets other parts add downstream (the bento) are not under test here.
RETRAIN_ASSETS = [dg.AssetKey(k) for k in ("training_set", "candidate_model", "candidate_evaluation", "champion_model")]


def _retrain(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("retrain").execute_in_process(
        run_config=RUN_CONFIG, instance=instance, raise_on_error=False, asset_selection=RETRAIN_ASSETS
    )


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_a_week_of_flipped_labels_is_refused_and_the_champion_stays(
    defs: dg.Definitions, state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([defs.resolve_assets_def("weather")], instance=instance).success
    _ingest(defs, instance, land_days(state_paths, package_flights, *FIRST_REAL))
    first = _retrain(defs, instance)
    assert first.success
    old = first.output_for_node("champion_model")

    flipped_files = land_days(state_paths, flip_labels(package_flights), *FLIPPED)
    _ingest(defs, instance, flipped_files + land_days(state_paths, package_flights, *SECOND_REAL))
    second = _retrain(defs, instance)

    evaluation = second.output_for_node("candidate_evaluation")
    training = second.output_for_node("training_set")
    # The candidate learned from the flipped week; both models are judged on the real week after it.
    assert training.train_dates == FLIPPED and training.holdout_dates == SECOND_REAL
    assert training.train["disrupted"].mean() == pytest.approx(1 - real_disrupted_share(package_flights, *FLIPPED))
    assert training.holdout["disrupted"].mean() == pytest.approx(real_disrupted_share(package_flights, *SECOND_REAL))
    assert evaluation.champion == old
    candidate_auc = evaluation.candidate_metrics["roc_auc"]
    champion_auc = evaluation.champion_metrics["roc_auc"]
    assert candidate_auc < 0.5 < 0.55 < champion_auc
    assert evaluation.candidate_metrics["log_loss"] > evaluation.champion_metrics["log_loss"]
    print(f"candidate roc_auc {candidate_auc:.4f}, champion v{old.version} roc_auc {champion_auc:.4f}")

    [gate] = [e for e in second.get_asset_check_evaluations() if e.check_name == "candidate_beats_champion"]
    assert not gate.passed
    assert second.asset_materializations_for_node("champion_model") == []

    client = MlflowClient(tracking_uri=state_paths.mlflow_tracking_uri)
    assert champion_version(client, REGISTERED_MODEL_NAME) == old
    assert champion_holders(client, REGISTERED_MODEL_NAME) == [old.version]
    tags = client.get_model_version(REGISTERED_MODEL_NAME, evaluation.candidate.version).tags
    assert tags[GATE_TAG] == GATE_REFUSED

    with duckdb.connect(str(state_paths.warehouse), read_only=True) as con:
        ledger = read_ledger(con, REGISTERED_MODEL_NAME)
    assert [(r.action, r.new_version, r.previous_version) for r in ledger] == [
        ("promoted", old.version, None),
        ("refused", evaluation.candidate.version, old.version),
    ]
    refusal = ledger[-1]
    assert refusal.candidate_metrics["roc_auc"] == pytest.approx(candidate_auc)
    assert refusal.champion_metrics["roc_auc"] == pytest.approx(champion_auc)
    assert "worse than champion" in refusal.reason or "misses the floor" in refusal.reason

    code, out, _ = _cli("status")
    assert code == cli.EXIT_OK
    assert f"champion: v{old.version}," in out
    assert f"v{evaluation.candidate.version}  registered" in out and "gate refused" in out

    code, _, err = _cli("promote", evaluation.candidate.version)
    assert code == cli.EXIT_GATE_NOT_PASSED and "refused" in err
    assert champion_version(client, REGISTERED_MODEL_NAME) == old

    # The operator overrides the gate, then rolls back: the ledger names who was champion when.
    before_force = dt.datetime.now(dt.timezone.utc)
    code, out, err = _cli("promote", evaluation.candidate.version, "--force", "--reason", "test the override")
    assert code == cli.EXIT_OK, err
    assert champion_holders(client, REGISTERED_MODEL_NAME) == [evaluation.candidate.version]
    code, out, err = _cli("rollback", "--reason", "the override was worse")
    assert code == cli.EXIT_OK, err
    assert champion_holders(client, REGISTERED_MODEL_NAME) == [old.version]
    code, out, _ = _cli("history", "--at", before_force.isoformat())
    assert code == cli.EXIT_OK and f"the champion was v{old.version} " in out
