"""The MLflow model registry: versions, the `champion` alias, and loading models."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

from mlops_assets.modeling import SKOPS_TRUSTED_TYPES

CHAMPION_ALIAS = "champion"


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version and the MLflow run that produced it."""

    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def log_and_register_model(model: Pipeline, input_example: pd.DataFrame, registered_model_name: str) -> ModelVersion:
    """Log the pipeline to the active run with its signature, and register it as a new version."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_and_register_model needs an active MLflow run")
    signature = infer_signature(input_example, model.predict_proba(input_example)[:, 1])
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_model_name,
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        pyfunc_predict_fn="predict_proba",
    )
    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"MLflow did not register a version of {registered_model_name}")
    return ModelVersion(name=registered_model_name, version=str(version), run_id=run.info.run_id)


def load_model(version: ModelVersion) -> Pipeline:
    """The sklearn pipeline of a registered version."""
    return mlflow.sklearn.load_model(version.uri)


def champion_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding the `champion` alias, or None before the first promotion."""
    try:
        found = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return ModelVersion(name=name, version=str(found.version), run_id=found.run_id)


def model_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    """A registered version by number; raises if it does not exist."""
    found = client.get_model_version(name, version)
    return ModelVersion(name=name, version=str(found.version), run_id=found.run_id)


def move_champion_alias(client: MlflowClient, version: ModelVersion) -> None:
    """Point `champion` at this version (an alias names exactly one version at a time)."""
    client.set_registered_model_alias(version.name, CHAMPION_ALIAS, version.version)
