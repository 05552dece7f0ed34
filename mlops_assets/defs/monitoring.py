"""Monitoring: drift of recent inputs against the training reference, and the candidate's report."""

import datetime as dt
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from mlops_assets.contracts import MODEL_INPUT_NAMES
from mlops_assets.defs.ingestion import flight_features
from mlops_assets.drift import (
    DEFAULT_MAX_ROWS,
    DEFAULT_SEED,
    classification_report,
    drift_exceeds,
    recent_batch_rows,
    recent_traffic_rows,
    run_drift,
    write_summary,
)
from mlops_assets.features import coerce_model_input
from mlops_assets.modeling import predict_probability
from mlops_assets.registry import ModelVersion, load_model
from mlops_assets.resources import StateFolder
from mlops_assets.training_data import TrainingSet
from mlops_assets.warehouse import Warehouse

DRIFT_CHECK = "drift_below_threshold"


class DriftReportConfig(dg.Config):
    """Which recent rows are compared with the training reference, and how large frames are sampled."""

    current_source: Literal["batches", "live_traffic"] = Field(
        default="batches",
        description="'batches': newest accepted flight batches; 'live_traffic': the inference_log table.",
    )
    recent_days: int = Field(
        default=7, description="Days compared: last flight days of batches, or last days of logged traffic."
    )
    max_rows: int = Field(
        default=DEFAULT_MAX_ROWS,
        description="Rows per side Evidently sees; larger frames are sampled with an exact verdict bound.",
    )
    seed: int = Field(default=DEFAULT_SEED, description="Seed of the row sample.")
    ignore_columns: list[str] = Field(
        default=["year", "day"],
        description="Contract columns left out: year and day of month move by construction and only "
        "feed the derived day of week, so their drift says nothing.",
    )


def _timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@dg.asset(deps=[flight_features, "inference_log"], group_name="monitoring", kinds={"evidently", "duckdb"})
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftReportConfig,
    training_set: TrainingSet,
    warehouse: Warehouse,
    state: StateFolder,
) -> dg.Output[dict[str, Any]]:
    """How far recent model inputs have moved from what the model was trained on (Evidently HTML)."""
    if training_set.train.empty:
        raise dg.Failure("the training set has no training rows: there is no drift reference")
    with warehouse.connect(read_only=True) as con:
        if config.current_source == "batches":
            current = recent_batch_rows(con, config.recent_days)
        else:
            try:
                current = recent_traffic_rows(con, config.recent_days)
            except LookupError as error:
                raise dg.Failure(description=str(error)) from None
    reference = coerce_model_input(training_set.train)
    current = coerce_model_input(current) if len(current) else current.reindex(columns=list(MODEL_INPUT_NAMES))
    columns = [c for c in MODEL_INPUT_NAMES if c not in config.ignore_columns]
    result = run_drift(
        reference, current, columns=columns, max_rows=config.max_rows, seed=config.seed, with_presets=True
    )
    summary = {**result.summary, "current_source": config.current_source}
    metadata: dict[str, Any] = {
        "share_of_drifted_columns": dg.MetadataValue.float(summary["share_of_drifted_columns"]),
        "number_of_drifted_columns": summary["number_of_drifted_columns"],
        "drifted_columns": ", ".join(summary["drifted_columns"]) or "none",
        "current_rows": summary["current_rows"],
        "reference_rows": summary["reference_rows"],
        "current_source": config.current_source,
        "rescored_columns": ", ".join(summary["rescored_columns"]) or "none",
        **{f"drift_score_{c}": dg.MetadataValue.float(v) for c, v in summary["column_scores"].items()},
    }
    if summary["notes"]:
        metadata["notes"] = "; ".join(summary["notes"])
        for note in summary["notes"]:
            context.log.warning(note)
    if result.snapshot is not None:
        html = result.save_html(state.reports_dir / f"drift_{config.current_source}_{_timestamp()}.html")
        summary["report_html"] = str(html)
        metadata["report"] = dg.MetadataValue.path(str(html))
    metadata["summary_json"] = dg.MetadataValue.path(str(write_summary(summary, state.reports_dir)))
    return dg.Output(summary, metadata=metadata)


class DriftCheckConfig(dg.Config):
    """When drift is worth a warning (and a retraining request by the drift sensor)."""

    max_drift_share: float = Field(
        default=0.5, description="Largest share of drifted model-input columns (0-1) that still passes."
    )


@dg.asset_check(
    name=DRIFT_CHECK,
    asset=drift_report,
    blocking=False,
    description="The share of drifted model-input columns is at most the configured threshold.",
)
def drift_below_threshold(config: DriftCheckConfig, drift_report: dict[str, Any]) -> dg.AssetCheckResult:
    """Warns (never blocks) when too many input columns drifted from the training reference."""
    share = float(drift_report["share_of_drifted_columns"])
    return dg.AssetCheckResult(
        passed=not drift_exceeds(drift_report, config.max_drift_share),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "share_of_drifted_columns": dg.MetadataValue.float(share),
            "max_drift_share": dg.MetadataValue.float(config.max_drift_share),
            "drifted_columns": ", ".join(drift_report["drifted_columns"]) or "none",
            "current_rows": int(drift_report["current_rows"]),
            "reason": (
                f"{drift_report['number_of_drifted_columns']} of {len(drift_report['columns'])} columns drifted "
                f"(share {share:.3f}, threshold {config.max_drift_share:.3f})"
            ),
        },
    )


class CandidateReportConfig(dg.Config):
    """How the candidate's probabilities become decisions in its report."""

    decision_threshold: float = Field(
        default=0.35, description="A flight is predicted disrupted at or above this probability (0-1)."
    )


@dg.asset(group_name="evaluation", kinds={"evidently", "scikitlearn"})
def candidate_report(
    config: CandidateReportConfig, candidate_model: ModelVersion, training_set: TrainingSet, state: StateFolder
) -> dg.MaterializeResult:
    """Evidently's classification report of the candidate on the holdout (HTML)."""
    if training_set.holdout.empty:
        raise dg.Failure("the training set has no holdout rows to report on")
    probability = predict_probability(load_model(candidate_model), training_set.holdout)
    html = state.reports_dir / f"candidate_v{candidate_model.version}_{_timestamp()}.html"
    metrics = classification_report(training_set.holdout, probability, config.decision_threshold, html)
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(html)),
            "model_version": int(candidate_model.version),
            "holdout_rows": len(training_set.holdout),
            **{name: dg.MetadataValue.float(value) for name, value in metrics.items()},
        }
    )


monitor_drift = dg.define_asset_job(
    "monitor_drift",
    selection=[drift_report],
    description="Compare the newest inputs with the champion's training reference; a failed check asks for a retrain.",
)
daily_drift_report = dg.ScheduleDefinition(
    name="daily_drift_report",
    job=monitor_drift,
    cron_schedule="0 6 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Drift of the newest accepted batches against the training reference, every morning (UTC).",
)

defs = dg.Definitions(
    assets=[drift_report, candidate_report],
    asset_checks=[drift_below_threshold],
    jobs=[monitor_drift],
    schedules=[daily_drift_report],
)
