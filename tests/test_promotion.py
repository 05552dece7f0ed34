"""The promotion gate as a plain function, the ledger's reading, and moving the alias in a real MLflow store."""

from __future__ import annotations

import datetime as dt
import math

import dagster as dg
import duckdb
import pytest
from mlflow import MlflowClient

from mlops_assets.promotion import (
    PROMOTED,
    REFUSED,
    ROLLBACK,
    Evaluation,
    LedgerRow,
    champion_at,
    gate_decision,
    move_champion,
    read_ledger,
    record_ledger_row,
    rollback_target,
)
from mlops_assets.registry import (
    ModelVersion,
    champion_holders,
    champion_version,
    find_model_version,
    tag_gate_result,
    version_summary,
)
from mlops_assets.settings import EXPERIMENT_NAME, StatePaths
from mlops_assets.warehouse import Warehouse

NAME = "flight_delay"


def _evaluation(candidate: dict[str, float], champion: dict[str, float] | None) -> Evaluation:
    return Evaluation(
        candidate=ModelVersion(NAME, "2", "run-2"),
        candidate_metrics=candidate,
        base_rate_metrics={"roc_auc": 0.5, "log_loss": 0.5},
        champion=ModelVersion(NAME, "1", "run-1") if champion is not None else None,
        champion_metrics=champion,
    )


@pytest.mark.parametrize(
    ("candidate", "champion", "metric", "floor", "passed", "reason_part"),
    [
        pytest.param({"roc_auc": 0.60}, None, "roc_auc", 0.55, True, "first model", id="first-model-floor-only"),
        pytest.param({"roc_auc": 0.54}, None, "roc_auc", 0.55, False, "misses the floor", id="first-model-floor-miss"),
        pytest.param(
            {"roc_auc": 0.54}, {"roc_auc": 0.50}, "roc_auc", 0.55, False, "misses the floor", id="floor-miss-vs-worse"
        ),
        pytest.param({"roc_auc": 0.697}, {"roc_auc": 0.70}, "roc_auc", 0.55, True, "not worse", id="within-tolerance"),
        pytest.param({"roc_auc": 0.75}, {"roc_auc": 0.70}, "roc_auc", 0.55, True, "not worse", id="better"),
        pytest.param(
            {"roc_auc": 0.69},
            {"roc_auc": 0.70},
            "roc_auc",
            0.55,
            False,
            "beyond tolerance",
            id="worse-beyond-tolerance",
        ),
        pytest.param(
            {"log_loss": 0.44}, {"log_loss": 0.46}, "log_loss", 0.60, True, "not worse", id="log-loss-lower-is-better"
        ),
        pytest.param(
            {"log_loss": 0.47}, {"log_loss": 0.46}, "log_loss", 0.60, False, "beyond tolerance", id="log-loss-higher"
        ),
        pytest.param({"log_loss": 0.65}, None, "log_loss", 0.60, False, "at most 0.6000", id="log-loss-over-ceiling"),
        pytest.param({"roc_auc": math.nan}, None, "roc_auc", 0.55, False, "not a number", id="nan-candidate"),
        pytest.param(
            {"roc_auc": 0.70}, {"roc_auc": math.nan}, "roc_auc", 0.55, False, "cannot be compared", id="nan-champion"
        ),
    ],
)
def test_gate_decision(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    metric: str,
    floor: float,
    passed: bool,
    reason_part: str,
) -> None:
    decision = gate_decision(_evaluation(candidate, champion), metric, floor, tolerance=0.005)
    assert decision.passed is passed
    assert reason_part in decision.reason
    assert decision.metric == metric
    assert decision.champion_value == (champion or {}).get(metric) or math.isnan(decision.champion_value)


def test_gate_decision_rejects_an_unknown_metric() -> None:
    with pytest.raises(ValueError, match="'accuracy' is not among"):
        gate_decision(_evaluation({"roc_auc": 0.7}, None), "accuracy", 0.5, 0.0)


T0 = dt.datetime(2024, 5, 1, 12, 0, 0)


def _row(minutes: int, action: str, new: str, previous: str | None) -> LedgerRow:
    return LedgerRow(T0 + dt.timedelta(minutes=minutes), action, NAME, new, previous, None, None, "r", "t")


LEDGER = [
    _row(0, PROMOTED, "1", None),
    _row(10, PROMOTED, "2", "1"),
    _row(15, REFUSED, "3", "2"),
    _row(20, PROMOTED, "4", "2"),
    _row(30, ROLLBACK, "2", "4"),
]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (T0 - dt.timedelta(seconds=1), None),
        (T0, "1"),
        (T0 + dt.timedelta(minutes=12), "2"),
        (T0 + dt.timedelta(minutes=16), "2"),  # a refusal moves nothing
        (T0 + dt.timedelta(minutes=25), "4"),
        (T0 + dt.timedelta(minutes=30), "2"),
        (dt.datetime(2024, 5, 1, 14, 25, tzinfo=dt.timezone(dt.timedelta(hours=2))), "4"),  # 12:25 UTC
    ],
)
def test_champion_at(at: dt.datetime, expected: str | None) -> None:
    row = champion_at(LEDGER, at)
    assert (row.new_version if row else None) == expected


def test_rollback_walks_back_promotions_instead_of_toggling() -> None:
    assert rollback_target(LEDGER, "4") == "2"
    # v2 is champion again by a rollback: the next rollback follows v2's own promotion, back to v1.
    assert rollback_target(LEDGER, "2") == "1"
    assert rollback_target(LEDGER, "1") is None
    assert rollback_target(LEDGER, "9") is None


def test_rollback_after_a_version_was_promoted_twice_walks_back_and_then_stops() -> None:
    ledger = [_row(0, PROMOTED, "1", None), _row(10, PROMOTED, "2", "1"), _row(20, PROMOTED, "1", "2")]
    assert rollback_target(ledger, "1") == "2"
    ledger.append(_row(30, ROLLBACK, "2", "1"))
    assert rollback_target(ledger, "2") == "1"
    ledger.append(_row(40, ROLLBACK, "1", "2"))
    assert rollback_target(ledger, "1") is None


def test_ledger_rows_round_trip_through_duckdb(state_paths: StatePaths) -> None:
    warehouse = Warehouse(path=str(state_paths.warehouse))
    with warehouse.connect() as con:
        record_ledger_row(
            con, REFUSED, NAME, "2", "1", {"roc_auc": 0.4, "log_loss": math.inf}, {"roc_auc": 0.6}, "why", "g"
        )
    with duckdb.connect(str(state_paths.warehouse), read_only=True) as con:
        [row] = read_ledger(con, NAME)
        assert read_ledger(con, "another_model") == []
    assert (row.action, row.new_version, row.previous_version, row.reason, row.actor) == (REFUSED, "2", "1", "why", "g")
    assert row.candidate_metrics == {"roc_auc": 0.4, "log_loss": None}
    assert row.champion_metrics == {"roc_auc": 0.6}
    assert row.recorded_at.tzinfo is None
    assert abs(row.recorded_at - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)) < dt.timedelta(minutes=1)


def register_versions(client: MlflowClient, paths: StatePaths, aucs: list[float]) -> list[ModelVersion]:
    """Registered versions of NAME, each on a finished run carrying the holdout metrics evaluation logs."""
    if client.get_experiment_by_name(EXPERIMENT_NAME) is None:
        client.create_experiment(EXPERIMENT_NAME, artifact_location=paths.mlflow_artifacts.as_uri())
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME).experiment_id
    if not client.search_registered_models(f"name = '{NAME}'"):
        client.create_registered_model(NAME)
    versions = []
    for auc in aucs:
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "holdout_roc_auc", auc)
        client.log_metric(run.info.run_id, "holdout_log_loss", 0.9 - auc)
        client.set_terminated(run.info.run_id)
        found = client.create_model_version(NAME, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        versions.append(ModelVersion(NAME, str(found.version), run.info.run_id))
    return versions


def test_move_champion_moves_the_alias_and_writes_the_ledger(mlflow_store: StatePaths) -> None:
    client = MlflowClient(tracking_uri=mlflow_store.mlflow_tracking_uri, registry_uri=mlflow_store.mlflow_tracking_uri)
    warehouse = Warehouse(path=str(mlflow_store.warehouse))
    v1, v2 = register_versions(client, mlflow_store, [0.61, 0.63])
    assert champion_version(client, NAME) is None and champion_holders(client, NAME) == []

    first = move_champion(client, warehouse, v1, PROMOTED, "first", "promotion_gate")
    second = move_champion(client, warehouse, v2, PROMOTED, "second", "promotion_gate")
    assert first.previous is None and second.previous == v1
    assert champion_version(client, NAME) == v2
    assert champion_holders(client, NAME) == ["2"]

    with warehouse.connect(read_only=True) as con:
        rows = read_ledger(con, NAME)
    assert [(r.action, r.new_version, r.previous_version) for r in rows] == [
        (PROMOTED, "1", None),
        (PROMOTED, "2", "1"),
    ]
    # Metrics default to what each version's run recorded at evaluation.
    assert rows[1].candidate_metrics == {"log_loss": pytest.approx(0.27), "roc_auc": 0.63}
    assert rows[1].champion_metrics == {"log_loss": pytest.approx(0.29), "roc_auc": 0.61}
    assert rows[1].recorded_at == second.row.recorded_at

    with pytest.raises(ValueError, match="does not move the champion"):
        move_champion(client, warehouse, v1, REFUSED, "no", "t")


def test_gate_result_tags_and_unknown_versions(mlflow_store: StatePaths) -> None:
    client = MlflowClient(tracking_uri=mlflow_store.mlflow_tracking_uri, registry_uri=mlflow_store.mlflow_tracking_uri)
    assert find_model_version(client, NAME, "1") is None  # no registered model yet
    [v1] = register_versions(client, mlflow_store, [0.6])
    tag_gate_result(client, v1, False, "worse than champion")
    summary = version_summary(client, NAME, "1")
    assert (summary.gate, summary.gate_reason, summary.is_champion) == ("refused", "worse than champion", False)
    assert summary.holdout_metrics == {"log_loss": pytest.approx(0.3), "roc_auc": 0.6}
    assert find_model_version(client, NAME, "1") == v1
    assert find_model_version(client, NAME, "7") is None
    assert find_model_version(client, NAME, "abc") is None


def test_gate_check_and_champion_model_called_directly(mlflow_store: StatePaths) -> None:
    from mlops_assets.defs.promotion import PromotionGateConfig, candidate_beats_champion, champion_model
    from mlops_assets.resources import ModelRegistry

    registry = ModelRegistry(
        tracking_uri=mlflow_store.mlflow_tracking_uri, artifact_root=str(mlflow_store.mlflow_artifacts)
    )
    warehouse = Warehouse(path=str(mlflow_store.warehouse))
    client = registry.client()
    v1, v2 = register_versions(client, mlflow_store, [0.61, 0.58])
    first = Evaluation(candidate=v1, candidate_metrics={"roc_auc": 0.61}, base_rate_metrics={"roc_auc": 0.5})
    worse = Evaluation(
        candidate=v2,
        candidate_metrics={"roc_auc": 0.58},
        base_rate_metrics={"roc_auc": 0.5},
        champion=v1,
        champion_metrics={"roc_auc": 0.61},
    )
    # Before any gate ran, champion_model refuses to move the alias.
    with pytest.raises(dg.Failure, match="only a passed gate moves the champion"):
        champion_model(dg.build_asset_context(), candidate_evaluation=first, registry=registry, warehouse=warehouse)

    gate = PromotionGateConfig()
    passed = candidate_beats_champion(
        dg.build_asset_check_context(), config=gate, candidate_evaluation=first, registry=registry, warehouse=warehouse
    )
    assert passed.passed and passed.metadata["reason"].value.startswith("first model")
    output = champion_model(
        dg.build_asset_context(), candidate_evaluation=first, registry=registry, warehouse=warehouse
    )
    assert output.value == v1 and champion_holders(client, NAME) == ["1"]

    refused = candidate_beats_champion(
        dg.build_asset_check_context(), config=gate, candidate_evaluation=worse, registry=registry, warehouse=warehouse
    )
    assert not refused.passed and refused.severity == dg.AssetCheckSeverity.ERROR
    assert refused.metadata["champion_value"].value == 0.61
    assert client.get_model_version(NAME, "2").tags["gate"] == "refused"
    with pytest.raises(dg.Failure, match="gate='refused'"):
        champion_model(dg.build_asset_context(), candidate_evaluation=worse, registry=registry, warehouse=warehouse)
    assert champion_holders(client, NAME) == ["1"]
    with warehouse.connect(read_only=True) as con:
        rows = read_ledger(con, NAME)
    assert [(r.action, r.new_version, r.previous_version) for r in rows] == [(PROMOTED, "1", None), (REFUSED, "2", "1")]
    assert rows[1].candidate_metrics == {"roc_auc": 0.58} and rows[1].champion_metrics == {"roc_auc": 0.61}
    assert "worse than champion v1" in rows[1].reason
