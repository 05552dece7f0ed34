"""The MLflow model registry: versions, the `champion` alias, and loading models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

from mlops_assets.modeling import SKOPS_TRUSTED_TYPES

CHAMPION_ALIAS = "champion"
GATE_TAG = "gate"
GATE_REASON_TAG = "gate_reason"
GATE_PASSED = "passed"
GATE_REFUSED = "refused"
# MLflow caps tag values; a gate reason is a sentence, the cap only guards against surprises.
_MAX_TAG_CHARS = 5000


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


def find_model_version(client: MlflowClient, name: str, version: str) -> ModelVersion | None:
    """A registered version by number, or None if the model or the version does not exist."""
    if not version.isdigit():
        return None
    try:
        return model_version(client, name, version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def move_champion_alias(client: MlflowClient, version: ModelVersion) -> None:
    """Point `champion` at this version (an alias names exactly one version at a time)."""
    client.set_registered_model_alias(version.name, CHAMPION_ALIAS, version.version)
    holders = champion_holders(client, version.name)
    if holders != [version.version]:
        raise RuntimeError(f"after moving `{CHAMPION_ALIAS}` to v{version.version}, it is held by {holders}")


def champion_holders(client: MlflowClient, name: str) -> list[str]:
    """Every version whose aliases include `champion` (exactly one once a model was promoted)."""
    # search_model_versions leaves `aliases` empty in MLflow 3; each version is read on its own.
    versions = [str(v.version) for v in client.search_model_versions(f"name = '{name}'")]
    return sorted((v for v in versions if CHAMPION_ALIAS in client.get_model_version(name, v).aliases), key=int)


def tag_gate_result(client: MlflowClient, version: ModelVersion, passed: bool, reason: str) -> None:
    """Record the promotion gate's verdict on the version itself, for `status` and the MLflow UI."""
    client.set_model_version_tag(version.name, version.version, GATE_TAG, GATE_PASSED if passed else GATE_REFUSED)
    client.set_model_version_tag(version.name, version.version, GATE_REASON_TAG, reason[:_MAX_TAG_CHARS])


@dataclass(frozen=True)
class VersionSummary:
    """What an operator sees of one version: when it was made, its gate verdict and holdout metrics."""

    version: str
    run_id: str
    created_at: datetime
    gate: str | None
    gate_reason: str | None
    is_champion: bool
    holdout_metrics: dict[str, float]


def holdout_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    """The holdout metrics candidate_evaluation logged on a version's run (prefix stripped)."""
    metrics = client.get_run(run_id).data.metrics
    return {k.removeprefix("holdout_"): float(v) for k, v in sorted(metrics.items()) if k.startswith("holdout_")}


def version_summary(client: MlflowClient, name: str, version: str) -> VersionSummary:
    """One version as an operator sees it."""
    found = client.get_model_version(name, version)
    return _summary(client, found)


def recent_versions(client: MlflowClient, name: str, limit: int) -> list[VersionSummary]:
    """The newest `limit` versions, newest first."""
    found = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version), reverse=True)
    return [_summary(client, client.get_model_version(name, str(v.version))) for v in found[:limit]]


def _summary(client: MlflowClient, found: MlflowModelVersion) -> VersionSummary:
    return VersionSummary(
        version=str(found.version),
        run_id=found.run_id,
        created_at=datetime.fromtimestamp(found.creation_timestamp / 1000, tz=timezone.utc),
        gate=found.tags.get(GATE_TAG),
        gate_reason=found.tags.get(GATE_REASON_TAG),
        is_champion=CHAMPION_ALIAS in found.aliases,
        holdout_metrics=holdout_metrics(client, found.run_id) if found.run_id else {},
    )
