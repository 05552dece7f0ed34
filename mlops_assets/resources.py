"""The resources every asset needs, built once from the state folder."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import mlflow
from dagster_mlflow import mlflow_tracking
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

    def client(self) -> MlflowClient:
        """A client bound to this store; also points mlflow's fluent API and models:/ URIs here."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


def mlflow_run_resource(tracking_uri: str) -> dg.ResourceDefinition:
    """dagster-mlflow's resource: one MLflow run per Dagster run, tagged with the Dagster run id."""
    return mlflow_tracking.configured(
        {"experiment_name": EXPERIMENT_NAME, "mlflow_tracking_uri": tracking_uri}
    )


def build_resources(paths: StatePaths, landing_dir: Path | None = None) -> dict[str, object]:
    """The resource map for a state folder: real DuckDB file, real MLflow store, real folders."""
    paths.root.mkdir(parents=True, exist_ok=True)
    return {
        "warehouse": Warehouse(path=str(paths.warehouse)),
        "state": StateFolder(root=str(paths.root), landing=str(landing_dir or paths.landing)),
        "registry": ModelRegistry(tracking_uri=paths.mlflow_tracking_uri),
        "mlflow": mlflow_run_resource(paths.mlflow_tracking_uri),
        "io_manager": dg.FilesystemIOManager(base_dir=str(paths.io_manager)),
    }
