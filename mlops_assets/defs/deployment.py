"""Deployment and live traffic: the champion's bento, and what the service answered."""

import dagster as dg

from mlops_assets.registry import ModelVersion, champion_version
from mlops_assets.resources import ModelRegistry, StateFolder
from mlops_assets.serving import PublishedBento, ingest_inference_logs, publish_bento
from mlops_assets.warehouse import Warehouse


@dg.asset(group_name="deployment", kinds={"bentoml"})
def flight_delay_bento(
    context: dg.AssetExecutionContext,
    champion_model: ModelVersion,
    registry: ModelRegistry,
    state: StateFolder,
) -> dg.Output[PublishedBento]:
    """The champion packaged as a BentoML service: the model in the BentoML store and the bento built around it."""
    # An operator rollback moves the alias outside the graph: package whichever version holds it now.
    current = champion_version(registry.client(), registry.model_name)
    if current is None:
        raise dg.Failure(f"no version of {registry.model_name} holds the champion alias")
    if current.version != champion_model.version:
        context.log.warning(
            f"the champion alias points at v{current.version}, not at v{champion_model.version} "
            "(moved outside the graph, e.g. a rollback): packaging the alias' version"
        )
    published = publish_bento(current, registry.tracking_uri, state.paths.bentoml_home)
    context.log.info(f"built {published.bento_tag} with model {published.model_tag}")
    return dg.Output(
        published,
        metadata={
            "bento_tag": published.bento_tag,
            "model_tag": published.model_tag,
            "mlflow_version": int(published.mlflow_version),
            "upstream_champion_version": int(champion_model.version),
            "mlflow_run_id": published.run_id,
            "decision_threshold": published.threshold,
            "bentoml_home": published.bentoml_home,
        },
    )


@dg.asset(group_name="monitoring", kinds={"duckdb"})
def inference_log(warehouse: Warehouse, state: StateFolder) -> dg.MaterializeResult:
    """Every flight the service answered (inputs, probability, decision, model version), from its log files."""
    with warehouse.connect() as con:
        ingest = ingest_inference_logs(con, state.paths.inference_logs)
    return dg.MaterializeResult(
        metadata={
            "new_rows": ingest.new_rows,
            "new_requests": ingest.new_requests,
            "total_rows": ingest.total_rows,
            "log_files": ingest.files,
            "model_versions": ", ".join(ingest.model_versions),
            "log_folder": str(state.paths.inference_logs),
        }
    )


ingest_inference_log = dg.define_asset_job(
    "ingest_inference_log",
    selection=[inference_log],
    description="Append the service's new inference log lines to the warehouse table inference_log.",
)
inference_log_schedule = dg.ScheduleDefinition(
    name="inference_log_every_15_minutes",
    job=ingest_inference_log,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Keep inference_log close to live traffic for the drift report.",
)

defs = dg.Definitions(
    assets=[flight_delay_bento, inference_log],
    jobs=[ingest_inference_log],
    schedules=[inference_log_schedule],
)
