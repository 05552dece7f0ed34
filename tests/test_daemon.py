"""The real daemon with the repo's dagster.yaml: landed files are picked up and materialized, ten at once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from mlops_assets.instance import prepare_dagster_home
from mlops_assets.landing import partition_key_for
from mlops_assets.settings import StatePaths
from tests.conftest import land_days

REPO_ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 420


def _stop(process: subprocess.Popen) -> None:
    """Stop the daemon and the run workers it started (its whole process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_daemon_materializes_ten_files_landed_at_once(
    state_paths: StatePaths, package_flights: pd.DataFrame, tmp_path: Path
) -> None:
    files = land_days(state_paths, package_flights, dt.date(2013, 4, 1), dt.date(2013, 4, 10))
    keys = sorted(partition_key_for(f) for f in files)
    home = prepare_dagster_home(state_paths)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MLOPS_STATE_DIR": str(state_paths.root),
        "MLOPS_SENSOR_INTERVAL_SECONDS": "3",
        # Ingestion only: the retrain sensor would start a training once the batches are in.
        "MLOPS_RETRAIN_MIN_NEW_ROWS": str(10**9),
        "PYTHONPATH": str(REPO_ROOT),
    }
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "mlops_assets.definitions"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + WAIT_SECONDS
            done: set[str] = set()
            while time.monotonic() < deadline and daemon.poll() is None:
                done = set(instance.get_materialized_partitions(dg.AssetKey("flight_features")))
                in_flight = instance.get_runs_count(
                    filters=dg.RunsFilter(
                        statuses=[
                            dg.DagsterRunStatus.QUEUED,
                            dg.DagsterRunStatus.STARTING,
                            dg.DagsterRunStatus.STARTED,
                        ]
                    )
                )
                if done >= set(keys) and not in_flight:
                    break
                time.sleep(3)
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            assert done == set(keys), (
                f"materialized {sorted(done)}; log: {(tmp_path / 'daemon.log').read_text()[-3000:]}"
            )
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="ingest_batch"))
            assert len(runs) == 10
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
            assert set(instance.get_dynamic_partitions("landing_batches")) == set(keys)
            weather_runs = instance.get_runs(filters=dg.RunsFilter(job_name="load_weather"))
            assert [r.status for r in weather_runs] == [dg.DagsterRunStatus.SUCCESS]
    finally:
        _stop(daemon)
        log.close()
    logged = (tmp_path / "daemon.log").read_text()
    assert "Could not set lock" not in logged
    expected = {partition_key_for(f): len(pd.read_csv(f)) for f in files}
    with duckdb.connect(str(state_paths.warehouse), read_only=True) as con:
        raw = dict(con.execute("SELECT batch_key, COUNT(*) FROM raw_flights GROUP BY ALL").fetchall())
        features = dict(con.execute("SELECT batch_key, COUNT(*) FROM flight_features GROUP BY ALL").fetchall())
    assert raw == features == expected
