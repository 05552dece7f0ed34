"""DuckDB has one writer: the instance's pool serializes writing steps, connect() waits out the rest."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from mlops_assets.instance import open_instance
from mlops_assets.landing import partition_key_for
from mlops_assets.settings import StatePaths
from mlops_assets.warehouse import Warehouse
from tests.conftest import land_days

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_instance_admits_one_warehouse_writer_at_a_time(defs: dg.Definitions, state_paths: StatePaths) -> None:
    with open_instance(state_paths) as instance:
        config = instance.get_concurrency_config()
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert config.pool_config.default_pool_limit == 1
    assert config.pool_config.pool_granularity.value == "op"
    graph = defs.resolve_asset_graph()
    for writer in ("raw_flights", "weather", "flight_features"):
        assert graph.get(dg.AssetKey(writer)).pools == {"warehouse_writes"}, writer


def test_connect_waits_for_a_writer_in_another_process(tmp_path: Path) -> None:
    path, ready = tmp_path / "warehouse.duckdb", tmp_path / "ready"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, pathlib, sys, time\n"
            "con = duckdb.connect(sys.argv[1]); con.execute('CREATE TABLE t (a INT)')\n"
            "pathlib.Path(sys.argv[2]).touch(); time.sleep(2)\n"
            "con.execute('INSERT INTO t VALUES (1)'); con.close()\n",
            str(path),
            str(ready),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(path), read_only=True)
        started = time.monotonic()
        with Warehouse(path=str(path)).connect(read_only=True) as con:
            waited = time.monotonic() - started
            assert con.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1
        assert waited > 0.5
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == 0


_RUN_ONE_PARTITION = """
import sys, warnings
warnings.filterwarnings("ignore")
import dagster as dg
from mlops_assets.definitions import build_definitions
from mlops_assets.settings import StatePaths
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    job = build_definitions(StatePaths.from_env()).resolve_job_def("ingest_batch")
    result = job.execute_in_process(partition_key=sys.argv[2], instance=instance, raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


@pytest.mark.slow
def test_ten_files_ingested_by_ten_processes_at_once(
    defs: dg.Definitions, state_paths: StatePaths, package_flights: pd.DataFrame, tmp_path: Path
) -> None:
    files = land_days(state_paths, package_flights, dt.date(2013, 5, 1), dt.date(2013, 5, 10))
    keys = [partition_key_for(f) for f in files]
    with open_instance(state_paths) as instance:
        assert dg.materialize([defs.resolve_assets_def("weather")], instance=instance).success
        instance.add_dynamic_partitions("landing_batches", keys)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    logs = [(tmp_path / f"{key}.log").open("w") for key in keys]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN_ONE_PARTITION, str(state_paths.dagster_home), key],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for key, log in zip(keys, logs, strict=True)
    ]
    try:
        codes = [p.wait(timeout=600) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        for log in logs:
            log.close()
    output = "".join((tmp_path / f"{key}.log").read_text() for key in keys)
    assert codes == [0] * 10, output[-3000:]
    assert "Could not set lock" not in output
    with open_instance(state_paths) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="ingest_batch"))
    assert len(runs) == 10 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    expected = {partition_key_for(f): len(pd.read_csv(f)) for f in files}
    with duckdb.connect(str(state_paths.warehouse), read_only=True) as con:
        raw = dict(con.execute("SELECT batch_key, COUNT(*) FROM raw_flights GROUP BY ALL").fetchall())
        features = dict(con.execute("SELECT batch_key, COUNT(*) FROM flight_features GROUP BY ALL").fetchall())
        batches = con.execute("SELECT COUNT(*) FROM landing_batches WHERE checks_passed").fetchone()[0]
    assert raw == features == expected and batches == 10
