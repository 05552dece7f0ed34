"""The promotion gate and the champion: only a candidate that passes moves the alias."""

import dagster as dg
from pydantic import Field

from mlops_assets.defs.training import candidate_evaluation
from mlops_assets.promotion import PROMOTED, REFUSED, Evaluation, gate_decision, move_champion, record_ledger_row
from mlops_assets.registry import GATE_PASSED, GATE_REASON_TAG, GATE_TAG, ModelVersion, tag_gate_result
from mlops_assets.resources import ModelRegistry
from mlops_assets.warehouse import Warehouse


class PromotionGateConfig(dg.Config):
    """What the candidate must reach: an absolute floor, and the champion within a tolerance."""

    metric: str = Field(default="roc_auc", description="Holdout metric the gate compares (log_loss: lower is better).")
    floor: float = Field(default=0.55, description="Absolute minimum of the metric (maximum for log_loss), 0-1.")
    tolerance: float = Field(default=0.005, description="How much worse than the champion the candidate may be (0-1).")


@dg.asset_check(
    asset=candidate_evaluation,
    blocking=True,
    description="Candidate meets the floor and is not worse than the champion on the same holdout.",
)
def candidate_beats_champion(
    context: dg.AssetCheckExecutionContext,
    config: PromotionGateConfig,
    candidate_evaluation: Evaluation,
    registry: ModelRegistry,
    warehouse: Warehouse,
) -> dg.AssetCheckResult:
    """The promotion gate; its verdict tags the version, and a refusal is a ledger row with both metrics."""
    decision = gate_decision(candidate_evaluation, config.metric, config.floor, config.tolerance)
    candidate = candidate_evaluation.candidate
    tag_gate_result(registry.client(), candidate, decision.passed, decision.reason)
    if not decision.passed:
        with warehouse.connect() as con:
            record_ledger_row(
                con,
                action=REFUSED,
                model_name=candidate.name,
                new_version=candidate.version,
                previous_version=candidate_evaluation.champion.version if candidate_evaluation.champion else None,
                candidate_metrics=candidate_evaluation.candidate_metrics,
                champion_metrics=candidate_evaluation.champion_metrics,
                reason=decision.reason,
                actor="promotion_gate",
            )
        context.log.warning(f"promotion refused: {decision.reason}")
    metadata: dict[str, float | int | str] = {
        "reason": decision.reason,
        "metric": decision.metric,
        "candidate_value": float(decision.candidate_value),
        "floor": config.floor,
        "tolerance": config.tolerance,
        "candidate_version": int(candidate.version),
    }
    if decision.champion_value is not None:
        metadata["champion_value"] = float(decision.champion_value)
        metadata["champion_version"] = int(candidate_evaluation.champion.version)
    return dg.AssetCheckResult(passed=decision.passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)


@dg.asset(group_name="deployment", kinds={"mlflow", "duckdb"})
def champion_model(
    context: dg.AssetExecutionContext,
    candidate_evaluation: Evaluation,
    registry: ModelRegistry,
    warehouse: Warehouse,
) -> dg.Output[ModelVersion]:
    """The version serving production: the MLflow alias `champion`, moved only past the gate."""
    client = registry.client()
    candidate = candidate_evaluation.candidate
    tags = client.get_model_version(candidate.name, candidate.version).tags
    if tags.get(GATE_TAG) != GATE_PASSED:
        raise dg.Failure(
            f"v{candidate.version} has gate={tags.get(GATE_TAG)!r}: only a passed gate moves the champion "
            "(an operator may force it with `mlops-assets promote VERSION --force --reason TEXT`)"
        )
    move = move_champion(
        client,
        warehouse,
        candidate,
        action=PROMOTED,
        reason=f"passed the promotion gate: {tags.get(GATE_REASON_TAG, '')}",
        actor="promotion_gate",
        candidate_metrics=candidate_evaluation.candidate_metrics,
        champion_metrics=candidate_evaluation.champion_metrics,
    )
    previous = move.previous
    context.log.info(f"champion is now v{candidate.version} (was {f'v{previous.version}' if previous else 'none'})")
    return dg.Output(
        candidate,
        metadata={
            "champion_version": int(candidate.version),
            "previous_version": int(previous.version) if previous else 0,
            "mlflow_run_id": candidate.run_id,
            "roc_auc": float(candidate_evaluation.candidate_metrics["roc_auc"]),
            "reason": move.row.reason,
        },
    )


# Named, not `.downstream()`: drift_report also hangs below training_set, and a drift report made
# inside the retrain would let the drift sensor ask for the next retrain forever.
retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets(
        "training_set",
        "candidate_model",
        "candidate_evaluation",
        "candidate_report",
        "champion_model",
        "flight_delay_bento",
    ),
    description="Train a candidate on the current window, evaluate it against the champion, gate, promote, package.",
)

defs = dg.Definitions(assets=[champion_model], asset_checks=[candidate_beats_champion], jobs=[retrain])
