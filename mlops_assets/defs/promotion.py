"""The promotion gate and the champion: only a candidate that passes moves the alias."""

import dagster as dg
from pydantic import Field

from mlops_assets.defs.training import candidate_evaluation
from mlops_assets.promotion import Evaluation, gate_decision, record_ledger_row
from mlops_assets.registry import ModelVersion, champion_version, move_champion_alias
from mlops_assets.resources import ModelRegistry
from mlops_assets.warehouse import Warehouse


class PromotionGateConfig(dg.Config):
    """What the candidate must reach: an absolute floor, and the champion within a tolerance."""

    metric: str = Field(default="roc_auc", description="Holdout metric the gate compares.")
    floor: float = Field(default=0.55, description="Absolute minimum of the metric (0-1).")
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
    warehouse: Warehouse,
) -> dg.AssetCheckResult:
    """The promotion gate; a refusal is written to the ledger with both sets of metrics."""
    decision = gate_decision(candidate_evaluation, config.metric, config.floor, config.tolerance)
    if not decision.passed:
        with warehouse.connect() as con:
            record_ledger_row(
                con,
                action="refused",
                model_name=candidate_evaluation.candidate.name,
                new_version=candidate_evaluation.candidate.version,
                previous_version=candidate_evaluation.champion.version if candidate_evaluation.champion else None,
                candidate_metrics=candidate_evaluation.candidate_metrics,
                champion_metrics=candidate_evaluation.champion_metrics,
                reason=decision.reason,
                actor="promotion_gate",
            )
        context.log.warning(f"promotion refused: {decision.reason}")
    return dg.AssetCheckResult(
        passed=decision.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "reason": decision.reason,
            "metric": decision.metric,
            "candidate_value": float(decision.candidate_value),
            "champion_value": float(decision.champion_value) if decision.champion_value is not None else -1.0,
            "floor": config.floor,
            "tolerance": config.tolerance,
            "candidate_version": int(candidate_evaluation.candidate.version),
        },
    )


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
    previous = champion_version(client, registry.model_name)
    move_champion_alias(client, candidate)
    with warehouse.connect() as con:
        record_ledger_row(
            con,
            action="promoted",
            model_name=candidate.name,
            new_version=candidate.version,
            previous_version=previous.version if previous else None,
            candidate_metrics=candidate_evaluation.candidate_metrics,
            champion_metrics=candidate_evaluation.champion_metrics,
            reason="passed the promotion gate",
            actor="promotion_gate",
        )
    context.log.info(f"champion is now v{candidate.version} (was {previous.version if previous else 'none'})")
    return dg.Output(
        candidate,
        metadata={
            "champion_version": int(candidate.version),
            "previous_version": int(previous.version) if previous else 0,
            "mlflow_run_id": candidate.run_id,
            "roc_auc": float(candidate_evaluation.candidate_metrics["roc_auc"]),
        },
    )


retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets("training_set", "candidate_model", "candidate_evaluation").downstream(),
    description="Train a candidate on the current window, evaluate it against the champion, gate, promote.",
)

defs = dg.Definitions(assets=[champion_model], asset_checks=[candidate_beats_champion], jobs=[retrain])
