"""The real Dagster instance of a state folder, configured by the repo's dagster.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from mlops_assets.settings import StatePaths

REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def prepare_dagster_home(paths: StatePaths, dagster_yaml: Path = REPO_DAGSTER_YAML) -> Path:
    """Create DAGSTER_HOME under the state folder holding the repo's dagster.yaml."""
    home = paths.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if dagster_yaml.exists():
        shutil.copyfile(dagster_yaml, home / "dagster.yaml")
    return home


def open_instance(paths: StatePaths) -> dg.DagsterInstance:
    """The persistent instance (SQLite storage) under the state folder."""
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(paths)))
