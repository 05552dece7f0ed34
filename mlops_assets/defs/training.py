"""Training: the window of accepted batches, the candidate model, and its evaluation."""

import json
import math

import dagster as dg
import numpy as np
from dagster_mlflow.resources import MlFlow
from pydantic import Field

from mlops_assets.contracts import LABEL
from mlops_assets.defs.ingestion import flight_features
from mlops_assets.features import coerce_model_input
from mlops_assets.modeling import (
    TrainingParams,
    base_rate_metrics,
    classification_metrics,
    predict_probability,
    train_model,
)
from mlops_assets.promotion import Evaluation
from mlops_assets.registry import ModelVersion, champion_version, load_model, log_and_register_model
from mlops_assets.resources import ModelRegistry
from mlops_assets.training_data import TrainingSet, TrainingSetMinimums, check_training_set, select_training_set
from mlops_assets.warehouse import Warehouse


class TrainingSetConfig(dg.Config):
    """The rolling window, its holdout, and the minimums a window must meet."""

    window_days: int = Field(default=60, description="Most recent flight days used, holdout included.")
    holdout_days: int = Field(default=7, description="Latest flight days held out for evaluation.")
    min_train_rows: int = Field(default=500, description="Fewest training rows that may be trained on.")
    min_rows_per_class: int = Field(default=50, description="Fewest training rows of each class.")
    min_holdout_rows: int = Field(default=100, description="Fewest holdout rows to judge a model on.")


TRAINING_SET_CHECKS = {
    "training_set_has_two_classes": "Both disrupted and on-time flights are present in training.",
    "training_set_has_enough_rows": "Training and holdout row counts meet their minimums.",
    "training_set_has_enough_rows_per_class": "Each class has its minimum of training rows.",
}


def _training_set_checks(
    context: dg.AssetExecutionContext, data: TrainingSet, config: TrainingSetConfig
) -> list[dg.AssetCheckResult]:
    minimums = TrainingSetMinimums(
        min_train_rows=config.min_train_rows,
        min_rows_per_class=config.min_rows_per_class,
        min_holdout_rows=config.min_holdout_rows,
    )
    outcomes = check_training_set(data, minimums)
    for outcome in outcomes:
        if not outcome.passed:
            context.log.error(f"{outcome.name} failed: {outcome.description}")
    return [
        dg.AssetCheckResult(
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"reason": outcome.description, **outcome.metadata},
        )
        for outcome in outcomes
    ]


@dg.asset(
    deps=[flight_features],
    group_name="training",
    kinds={"duckdb", "pandas"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="training_set", description=text, blocking=True)
        for name, text in TRAINING_SET_CHECKS.items()
    ],
)
def training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig, warehouse: Warehouse):
    """The recent accepted flights to learn from, and the latest days held out to judge by."""
    with warehouse.connect(read_only=True) as con:
        data = select_training_set(con, config.window_days, config.holdout_days)
    checks = _training_set_checks(context, data, config)
    yield dg.Output(
        data,
        metadata={
            "train_rows": len(data.train),
            "holdout_rows": len(data.holdout),
            "batches": len(data.batches),
            "train_dates": str(data.train_dates),
            "holdout_dates": str(data.holdout_dates),
            "train_disrupted_share": float(data.train[LABEL].mean()) if len(data.train) else 0.0,
        },
    )
    yield from checks


class CandidateModelConfig(dg.Config):
    """Hyperparameters of the gradient-boosting pipeline."""

    max_iter: int = Field(default=200, description="Boosting iterations.")
    learning_rate: float = Field(default=0.08, description="Shrinkage per iteration.")
    max_leaf_nodes: int = Field(default=31, description="Leaves per tree.")
    l2_regularization: float = Field(default=1.0, description="L2 penalty on leaf values.")
    seed: int = Field(default=13, description="Random seed; the same data and seed give the same model.")


@dg.asset(group_name="training", kinds={"mlflow", "scikitlearn"})
def candidate_model(
    context: dg.AssetExecutionContext,
    config: CandidateModelConfig,
    training_set: TrainingSet,
    mlflow: dg.ResourceParam[MlFlow],
    registry: ModelRegistry,
) -> dg.Output[ModelVersion]:
    """A newly trained model version, registered in MLflow with its data lineage."""
    registry.client()
    params = TrainingParams(**config.model_dump())
    try:
        mlflow.log_params(
            {
                **config.model_dump(),
                "train_rows": len(training_set.train),
                "train_start": str(training_set.train_dates[0]),
                "train_end": str(training_set.train_dates[1]),
            }
        )
        mlflow.set_tags({"dagster_asset": "candidate_model", "batch_count": len(training_set.batches)})
        mlflow.log_dict(
            {
                "batches": [{"batch_key": k, "content_sha256": h} for k, h in training_set.batches],
                "train_dates": [str(d) for d in training_set.train_dates],
                "holdout_dates": [str(d) for d in training_set.holdout_dates],
            },
            "lineage.json",
        )
        model = train_model(training_set.train, params)
        train_x = coerce_model_input(training_set.train)
        version = log_and_register_model(model, train_x.head(5), registry.model_name)
        train_auc = classification_metrics(
            training_set.train[LABEL].astype(int).to_numpy(), predict_probability(model, training_set.train), 0.5
        )["roc_auc"]
        mlflow.log_metric("train_roc_auc", train_auc)
        mlflow.end_run()
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    return dg.Output(
        version,
        metadata={
            "model_version": int(version.version),
            "mlflow_run_id": version.run_id,
            "model_uri": version.uri,
            "train_rows": len(training_set.train),
            "train_roc_auc": float(train_auc),
        },
    )


class EvaluationConfig(dg.Config):
    """How a model's probabilities become decisions."""

    decision_threshold: float = Field(
        default=0.35, description="A flight is predicted disrupted at or above this probability (0-1)."
    )


def _numeric(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


@dg.asset(group_name="evaluation", kinds={"mlflow", "scikitlearn"})
def candidate_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    candidate_model: ModelVersion,
    training_set: TrainingSet,
    registry: ModelRegistry,
) -> dg.Output[Evaluation]:
    """Candidate and current champion scored on the same holdout, beside the base-rate model."""
    client = registry.client()
    holdout_y = training_set.holdout[LABEL].astype(int).to_numpy()
    train_y = training_set.train[LABEL].astype(int).to_numpy()
    candidate_metrics = classification_metrics(
        holdout_y, predict_probability(load_model(candidate_model), training_set.holdout), config.decision_threshold
    )
    champion = champion_version(client, registry.model_name)
    champion_metrics = None
    if champion is not None:
        champion_metrics = classification_metrics(
            holdout_y, predict_probability(load_model(champion), training_set.holdout), config.decision_threshold
        )
    baseline = base_rate_metrics(train_y, holdout_y, config.decision_threshold)
    for name, value in _numeric(candidate_metrics, "holdout_").items():
        client.log_metric(candidate_model.run_id, name, value)
    for name, value in _numeric(baseline, "base_rate_").items():
        client.log_metric(candidate_model.run_id, name, value)
    client.log_param(candidate_model.run_id, "decision_threshold", config.decision_threshold)
    evaluation = Evaluation(
        candidate=candidate_model,
        candidate_metrics=candidate_metrics,
        base_rate_metrics=baseline,
        champion=champion,
        champion_metrics=champion_metrics,
        holdout_rows=len(holdout_y),
        threshold=config.decision_threshold,
    )
    metadata = {
        **_numeric(candidate_metrics, "candidate_"),
        **_numeric(baseline, "base_rate_"),
        **(_numeric(champion_metrics, "champion_") if champion_metrics else {}),
        "candidate_version": int(candidate_model.version),
        "champion_version": int(champion.version) if champion else 0,
        "mlflow_run_id": candidate_model.run_id,
        "holdout_disrupted_share": float(np.mean(holdout_y)) if len(holdout_y) else 0.0,
        "metrics_json": json.dumps(candidate_metrics),
    }
    return dg.Output(evaluation, metadata=metadata)


defs = dg.Definitions(assets=[training_set, candidate_model, candidate_evaluation])
