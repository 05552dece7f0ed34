"""The resources every asset needs, built once from the state folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import mlflow
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow
from mlflow import MlflowClient
from pydantic import Field

from mlops_assets.settings import EXPERIMENT_NAME, REGISTERED_MODEL_NAME, StatePaths
from mlops_assets.warehouse import Warehouse


class StateFolder(dg.ConfigurableResource):
    """Folders outside the warehouse: landing files, reports, inference logs, BentoML store."""

    root: str = Field(description="The state folder; every path below is derived from it.")
    landing: str = Field(description="Where landing files arrive (never modified or deleted).")

    @property
    def paths(self) -> StatePaths:
        return StatePaths(Path(self.root))

    @property
    def landing_dir(self) -> Path:
        return Path(self.landing)

    @property
    def reports_dir(self) -> Path:
        path = self.paths.reports
        path.mkdir(parents=True, exist_ok=True)
        return path


class ModelRegistry(dg.ConfigurableResource):
    """The MLflow tracking store and the registered model that versions go into."""

    tracking_uri: str = Field(description="MLflow tracking URI (MLFLOW_TRACKING_URI wins if set).")
    model_name: str = Field(default=REGISTERED_MODEL_NAME, description="Registered model name.")

    artifact_root: str = Field(description="Folder for artifacts of experiments created here.")

    def client(self) -> MlflowClient:
        """A client bound to this store; also points mlflow's fluent API and models:/ URIs here."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        ensure_experiment(client, EXPERIMENT_NAME, self.artifact_root)
        return client


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str) -> None:
    """Create the experiment with its artifacts under the state folder (not ./mlruns) if missing."""
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=Path(artifact_root).resolve().as_uri())


def mlflow_run_resource(tracking_uri: str, artifact_root: str) -> dg.ResourceDefinition:
    """dagster-mlflow's MlFlow: one MLflow run per Dagster run, tagged with the Dagster run id."""

    @dg.resource(config_schema=CONFIG_SCHEMA, description="dagster-mlflow run for this Dagster run.")
    def mlflow_run(context: dg.InitResourceContext) -> Iterator[MlFlow]:
        ensure_experiment(MlflowClient(tracking_uri=tracking_uri), EXPERIMENT_NAME, artifact_root)
        run = MlFlow(context)
        try:
            yield run
        finally:
            # A run whose training was refused (blocking check) or failed never reached end_run():
            # close it as FAILED rather than leave it RUNNING and active in this process.
            if mlflow.active_run() is not None:
                mlflow.end_run(status="FAILED")

    return mlflow_run.configured({"experiment_name": EXPERIMENT_NAME, "mlflow_tracking_uri": tracking_uri})


def build_resources(paths: StatePaths, landing_dir: Path | None = None) -> dict[str, object]:
    """The resource map for a state folder: real DuckDB file, real MLflow store, real folders."""
    artifacts = str(paths.mlflow_artifacts)
    return {
        "warehouse": Warehouse(path=str(paths.warehouse)),
        "state": StateFolder(root=str(paths.root), landing=str(landing_dir or paths.landing)),
        "registry": ModelRegistry(tracking_uri=paths.mlflow_tracking_uri, artifact_root=artifacts),
        "mlflow": mlflow_run_resource(paths.mlflow_tracking_uri, artifacts),
        "io_manager": dg.FilesystemIOManager(base_dir=str(paths.io_manager)),
    }
