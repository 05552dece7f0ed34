"""Starting the champion's bento on loopback and sending it real held-out flights (the demo's traffic)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pandas as pd

from mlops_assets.contracts import MODEL_INPUT_COLUMNS, MODEL_INPUT_NAMES
from mlops_assets.serving import bentoml_env, serve_command
from mlops_assets.settings import StatePaths
from mlops_assets.warehouse import FEATURES_TABLE

READY_TIMEOUT_SECONDS = 180.0


@dataclass(frozen=True)
class RunningService:
    """A `bentoml serve` child process and where it answers."""

    process: subprocess.Popen
    url: str
    log_file: Path


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_service(paths: StatePaths, bento_tag: str, port: int | None = None) -> Iterator[RunningService]:
    """Serve a built bento on 127.0.0.1 until the block ends; fails with the server's log if it never gets ready."""
    port = port or free_loopback_port()
    log_file = paths.reports / "demo_service.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = bentoml_env(paths.bentoml_home, paths.root)
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            serve_command(bento_tag, port=port), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = RunningService(process, f"http://127.0.0.1:{port}", log_file)
    try:
        _wait_ready(service)
        yield service
    finally:
        _stop(process)


def _wait_ready(service: RunningService) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            tail = service.log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the service exited with code {service.process.returncode}:\n{tail}")
        try:
            if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the service was not ready after {READY_TIMEOUT_SECONDS:.0f} s; log: {service.log_file}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def request_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Model-input rows as a /predict body carries them: ints, floats, codes, null where missing."""
    rows = []
    for record in frame.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for column in MODEL_INPUT_COLUMNS:
            value = record[column.name]
            if value is None or pd.isna(value):
                row[column.name] = None
            elif column.sql_type == "INTEGER":
                row[column.name] = int(value)
            elif column.sql_type == "DOUBLE":
                row[column.name] = float(value)
            else:
                row[column.name] = str(value)
        rows.append(row)
    return rows


def latest_day_rows(con: duckdb.DuckDBPyConnection, limit: int) -> list[dict[str, Any]]:
    """Request rows of the newest flight day, spread over the day by a hash (deterministic), weather null if missing."""
    columns = ", ".join(MODEL_INPUT_NAMES)
    frame = con.execute(
        f"""SELECT {columns} FROM {FEATURES_TABLE}
            WHERE flight_date = (SELECT MAX(flight_date) FROM {FEATURES_TABLE})
            ORDER BY md5(concat_ws('|', carrier, flight, origin, sched_dep_time)) LIMIT ?""",
        [limit],
    ).df()
    return request_rows(frame)


@dataclass(frozen=True)
class TrafficResult:
    """What the demo's requests got back."""

    requests: int
    rows: int
    statuses: dict[int, int]
    model_versions: list[str]
    example: dict[str, Any]


def send_traffic(service: RunningService, rows: list[dict[str, Any]], single_requests: int) -> TrafficResult:
    """Send the first rows one request each, the rest as one batch; tally statuses and versions."""
    statuses: dict[int, int] = {}
    versions: set[str] = set()
    example: dict[str, Any] = {}
    with httpx.Client(base_url=service.url, timeout=60) as client:
        bodies = [{"rows": row} for row in rows[:single_requests]]
        if rows[single_requests:]:
            bodies.append({"rows": rows[single_requests:]})
        for body in bodies:
            response = client.post("/predict", json=body)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                answer = response.json()
                versions.add(str(answer["model_version"]))
                example = example or answer
    return TrafficResult(len(bodies), len(rows), statuses, sorted(versions), example)
