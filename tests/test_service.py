"""The flight-delay service over real HTTP: a real model on real days, exported, built and served by BentoML.

One module-scoped server answers the serving cases S01..S09 (see the cases table of the serving
requests); a second one, built after a rollback, serves the previous version behind a bearer token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlops_assets.contracts import LABEL, MODEL_INPUT_NAMES
from mlops_assets.definitions import build_definitions
from mlops_assets.defs.deployment import flight_delay_bento, inference_log
from mlops_assets.features import coerce_model_input
from mlops_assets.landing import partition_key_for
from mlops_assets.landing_writer import write_landing_days
from mlops_assets.live_traffic import request_rows
from mlops_assets.modeling import TrainingParams, classification_metrics, predict_probability, train_model
from mlops_assets.registry import ModelVersion, log_and_register_model, move_champion_alias
from mlops_assets.resources import ModelRegistry, StateFolder, ensure_experiment
from mlops_assets.serving import INFERENCE_TABLE, SERVICE_DIR, PublishedBento, bentoml_env, serve_command
from mlops_assets.settings import EXPERIMENT_NAME, REGISTERED_MODEL_NAME, StatePaths
from mlops_assets.training_data import TrainingSet, select_training_set
from mlops_assets.warehouse import Warehouse

pytestmark = pytest.mark.slow

FIRST_DAY, LAST_DAY = dt.date(2013, 3, 1), dt.date(2013, 3, 8)
READY_TIMEOUT_S = 90


@dataclass
class Platform:
    """A state folder with two registered versions trained on real days, v2 the champion."""

    paths: StatePaths
    tracking_uri: str
    versions: list[ModelVersion]
    holdout: pd.DataFrame

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(tracking_uri=self.tracking_uri, artifact_root=str(self.paths.mlflow_artifacts))

    @property
    def state(self) -> StateFolder:
        return StateFolder(root=str(self.paths.root), landing=str(self.paths.landing))


def _register(data: TrainingSet, params: TrainingParams, tracking_uri: str) -> ModelVersion:
    """Train, log and register one version the way candidate_model and candidate_evaluation record it."""
    with mlflow.start_run():
        model = train_model(data.train, params)
        version = log_and_register_model(model, coerce_model_input(data.train).head(5), REGISTERED_MODEL_NAME)
        holdout_y = data.holdout[LABEL].astype(int).to_numpy()
        metrics = classification_metrics(holdout_y, predict_probability(model, data.holdout), 0.35)
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items() if math.isfinite(v)})
        mlflow.log_param("decision_threshold", 0.35)
        mlflow.log_dict(
            {
                "batches": [{"batch_key": k, "content_sha256": h} for k, h in data.batches],
                "train_dates": [str(d) for d in data.train_dates],
                "holdout_dates": [str(d) for d in data.holdout_dates],
            },
            "lineage.json",
        )
    return version


def build_platform(root: Path, flights: pd.DataFrame) -> Platform:
    """Land and ingest real days through the graph's ingest job, then register two small models."""
    paths = StatePaths(root.resolve())
    paths.landing.mkdir(parents=True)
    defs = build_definitions(paths)
    files = write_landing_days(paths.landing, FIRST_DAY, LAST_DAY, flights)
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([defs.resolve_assets_def("weather")], instance=instance).success
    keys = [partition_key_for(f) for f in files]
    instance.add_dynamic_partitions("landing_batches", keys)
    job = defs.resolve_job_def("ingest_batch")
    for key in keys:
        assert job.execute_in_process(partition_key=key, instance=instance).success
    with Warehouse(path=str(paths.warehouse)).connect(read_only=True) as con:
        data = select_training_set(con, window_days=8, holdout_days=2)
    tracking_uri = f"sqlite:///{paths.mlflow_db}"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    ensure_experiment(client, EXPERIMENT_NAME, str(paths.mlflow_artifacts))
    mlflow.set_experiment(EXPERIMENT_NAME)
    versions = [
        _register(data, TrainingParams(max_iter=30, max_leaf_nodes=15), tracking_uri),
        _register(data, TrainingParams(max_iter=60, max_leaf_nodes=31), tracking_uri),
    ]
    move_champion_alias(client, versions[1])
    return Platform(paths=paths, tracking_uri=tracking_uri, versions=versions, holdout=data.holdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `bentoml serve` child process."""

    process: subprocess.Popen
    url: str
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-6000:]


def start_server(
    command: list[str], env: dict[str, str], cwd: Path, log_file: Path, url: str, timeout_s: float = READY_TIMEOUT_S
) -> Server:
    """Start a server and wait until /readyz answers 200 (fails with the server's log if it exits)."""
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, url, log_file)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise AssertionError(f"server not ready after {timeout_s} s:\n{server.log()}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def serve_bento(platform: Platform, published: PublishedBento, name: str, extra_env: dict[str, str]) -> Server:
    port = free_port()
    env = {**bentoml_env(platform.paths.bentoml_home, platform.paths.root), **extra_env}
    env.pop("MLFLOW_TRACKING_URI", None)
    folder = platform.paths.root.parent / name
    folder.mkdir(exist_ok=True)
    # A fresh shell: started outside the repository, with nothing but the bento to import from.
    env.pop("PYTHONPATH", None)
    return start_server(
        serve_command(published.bento_tag, port=port), env, folder, folder / "server.log", f"http://127.0.0.1:{port}"
    )


def publish(platform: Platform, upstream: ModelVersion) -> PublishedBento:
    """Materialize flight_delay_bento by direct invocation, as the graph does after champion_model."""
    output = flight_delay_bento(
        dg.build_asset_context(), champion_model=upstream, registry=platform.registry, state=platform.state
    )
    return output.value


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, package_flights: pd.DataFrame) -> Platform:
    return build_platform(tmp_path_factory.mktemp("serving") / "state", package_flights)


@pytest.fixture(scope="module")
def champion_bento(platform: Platform) -> PublishedBento:
    return publish(platform, platform.versions[1])


@pytest.fixture(scope="module")
def server(platform: Platform, champion_bento: PublishedBento) -> Iterator[Server]:
    running = serve_bento(platform, champion_bento, "champion", {"MLOPS_SERVING_MAX_BODY_BYTES": str(6 * 1024 * 1024)})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def rows(platform: Platform) -> list[dict[str, object]]:
    """Real flights of the held-out days, as request rows."""
    return request_rows(platform.holdout.head(200))


def strict_json(response: httpx.Response) -> object:
    """The body parsed with NaN and Infinity refused: an answer never carries them."""

    def refuse(token: str) -> None:
        raise AssertionError(f"answer contains {token}: {response.text[:300]}")

    return json.loads(response.text, parse_constant=refuse)


def post(server: Server, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json=body, timeout=60, **kwargs)


def test_curl_like_request_with_a_held_out_flight_answers_probability_and_champion_version(
    server: Server, rows: list[dict[str, object]], champion_bento: PublishedBento
) -> None:
    response = post(server, {"rows": rows[0]})
    assert response.status_code == 200, response.text
    answer = strict_json(response)
    assert answer["model_version"] == champion_bento.mlflow_version == "2"
    assert answer["model_tag"] == champion_bento.model_tag
    assert len(answer["request_id"]) == 32 and response.headers["x-request-id"] == answer["request_id"]
    [prediction] = answer["predictions"]
    assert 0.0 <= prediction["probability"] <= 1.0
    assert prediction["decision"] == (prediction["probability"] >= answer["threshold"])
    assert answer["threshold"] == 0.35


def test_batch_answers_every_row_in_order_with_the_probabilities_of_the_exported_model(
    server: Server, rows: list[dict[str, object]], platform: Platform
) -> None:
    from mlops_assets.registry import load_model

    response = post(server, {"rows": rows})
    assert response.status_code == 200, response.text
    served = [p["probability"] for p in strict_json(response)["predictions"]]
    mlflow.set_tracking_uri(platform.tracking_uri)
    expected = predict_probability(
        load_model(platform.versions[1]), pd.DataFrame(rows, columns=list(MODEL_INPUT_NAMES))
    )
    assert served == pytest.approx(list(expected), abs=1e-12)


def _metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_concurrent_single_row_requests_are_answered_in_shared_model_calls(
    server: Server, rows: list[dict[str, object]]
) -> None:
    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            answers = await asyncio.gather(*(client.post("/predict", json={"rows": [row]}) for row in rows[:64]))
        return [a.status_code for a in answers]

    calls, batched_rows = (
        _metric(server, "flight_delay_batch_rows_count"),
        _metric(server, "flight_delay_batch_rows_sum"),
    )
    assert asyncio.run(burst()) == [200] * 64
    assert _metric(server, "flight_delay_batch_rows_sum") - batched_rows == 64
    assert _metric(server, "flight_delay_batch_rows_count") - calls < 64


def test_S01_weather_fields_null_gets_a_probability(server: Server, rows: list[dict[str, object]]) -> None:
    row = dict(rows[0], **{name: None for name in ("temp", "dewp", "humid", "wind_dir", "wind_speed")})
    row.update(wind_gust=None, precip=None, pressure=None, visib=None)
    response = post(server, {"rows": [row]})
    assert response.status_code == 200, response.text
    assert 0.0 <= strict_json(response)["predictions"][0]["probability"] <= 1.0


def test_S02_unknown_carrier_and_destination_are_answered_and_counted(
    server: Server, rows: list[dict[str, object]]
) -> None:
    def counted(field: str) -> float:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        prefix = f'flight_delay_unknown_category_values_total{{field="{field}"}} '
        return sum(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))

    before = counted("carrier"), counted("dest")
    response = post(server, {"rows": [dict(rows[0], carrier="ZZ", dest="XXX")]})
    assert response.status_code == 200, response.text
    assert strict_json(response)["predictions"][0]["unknown_categories"] == ["carrier", "dest"]
    assert (counted("carrier"), counted("dest")) == (before[0] + 1, before[1] + 1)


def test_S03_bare_NaN_token_is_refused_with_a_clear_message(server: Server, rows: list[dict[str, object]]) -> None:
    body = json.dumps({"rows": [dict(rows[0], temp=12.5)]}).replace('"temp": 12.5', '"temp": NaN')
    assert "NaN" in body
    response = httpx.post(f"{server.url}/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "temp" in response.json()["error"] and "finite" in response.json()["error"]


def test_S04_row_without_origin_is_422_naming_origin(server: Server, rows: list[dict[str, object]]) -> None:
    row = {k: v for k, v in rows[0].items() if k != "origin"}
    response = post(server, {"rows": [row]})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid request: rows.0.origin: Field required"


def test_S05_distance_as_text_is_422_naming_distance(server: Server, rows: list[dict[str, object]]) -> None:
    response = post(server, {"rows": [dict(rows[0], distance="far")]})
    assert response.status_code == 422, response.text
    assert "rows.0.distance" in response.json()["error"]


@pytest.mark.parametrize("distance", [1e300, -50.0])
def test_S06_absurd_distance_is_422_naming_distance(
    server: Server, rows: list[dict[str, object]], distance: float
) -> None:
    response = post(server, {"rows": [dict(rows[0], distance=distance)]})
    assert response.status_code == 422, response.text
    assert "rows.0.distance" in response.json()["error"]
    strict_json(response)


def test_S06_infinity_token_is_refused(server: Server, rows: list[dict[str, object]]) -> None:
    body = json.dumps({"rows": [dict(rows[0], distance=200.0)]}).replace('"distance": 200.0', '"distance": Infinity')
    response = httpx.post(f"{server.url}/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "rows.0.distance" in response.json()["error"]


def test_S07_empty_batch_is_200_with_no_predictions(server: Server) -> None:
    response = post(server, {"rows": []})
    assert response.status_code == 200, response.text
    assert strict_json(response)["predictions"] == []


def test_S08_batch_of_100000_rows_is_413_with_the_limit_and_the_server_stays_up(
    server: Server, rows: list[dict[str, object]]
) -> None:
    body = json.dumps({"rows": [rows[0]] * 100_000}).encode()
    response = httpx.post(
        f"{server.url}/predict", content=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 413, response.text
    assert f"request body is {len(body)} bytes; the limit is {6 * 1024 * 1024} bytes" in response.json()["error"]
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert post(server, {"rows": rows[:3]}).status_code == 200


def test_S08_more_rows_than_the_row_limit_is_422_stating_it(server: Server, rows: list[dict[str, object]]) -> None:
    response = post(server, {"rows": [rows[0]] * 10_001})
    assert response.status_code == 422, response.text
    assert "at most 10000 items" in response.json()["error"]


def test_S09_body_that_is_not_json_is_4xx(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/predict", content=b"\x00\xffnot json at all", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "not valid JSON" in response.json()["error"]
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200


def test_probes_metrics_and_model_info(server: Server, platform: Platform, champion_bento: PublishedBento) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "bentoml_service_request_total" in metrics and "flight_delay_predicted_rows_total" in metrics
    info = httpx.get(f"{server.url}/model_info").json()
    assert info["model_version"] == "2" and info["labels"]["mlflow_run_id"] == platform.versions[1].run_id
    assert info["metadata"]["train_dates"] == [str(FIRST_DAY), str(LAST_DAY - dt.timedelta(days=2))]
    assert info["metadata"]["batch_count"] == 8
    assert 0.5 < info["metadata"]["holdout_metrics"]["roc_auc"] <= 1.0
    assert info["metadata"]["input_names"] == list(MODEL_INPUT_NAMES)


def test_inference_log_lines_are_ingested_once_per_predicted_row(
    server: Server, platform: Platform, rows: list[dict[str, object]]
) -> None:
    answer = post(server, {"rows": rows[:5]}).json()
    time.sleep(0.2)
    lines = [
        json.loads(line) for f in platform.paths.inference_logs.glob("*.jsonl") for line in f.read_text().splitlines()
    ]
    [logged] = [line for line in lines if line["request_id"] == answer["request_id"]]
    assert logged["inputs"] == rows[:5] and logged["model_version"] == "2" and logged["latency_ms"] > 0
    assert [o["probability"] for o in logged["outputs"]] == [p["probability"] for p in answer["predictions"]]

    warehouse = Warehouse(path=str(platform.paths.warehouse))
    first = inference_log(warehouse=warehouse, state=platform.state)
    second = inference_log(warehouse=warehouse, state=platform.state)
    assert second.metadata["new_rows"] == 0
    assert second.metadata["total_rows"] == first.metadata["total_rows"] == sum(len(x["inputs"]) for x in lines)
    with duckdb.connect(str(platform.paths.warehouse), read_only=True) as con:
        frame = con.execute(
            f"SELECT * FROM {INFERENCE_TABLE} WHERE request_id = ? ORDER BY row_index", [answer["request_id"]]
        ).df()
    assert frame["model_version"].tolist() == ["2"] * 5
    assert frame["probability"].tolist() == [p["probability"] for p in answer["predictions"]]
    assert frame["origin"].tolist() == [r["origin"] for r in rows[:5]]
    assert set(MODEL_INPUT_NAMES) | {"request_id", "logged_at", "decision", "latency_ms"} <= set(frame.columns)


def test_after_a_rollback_the_rebuilt_bento_serves_the_previous_version_behind_a_token(
    platform: Platform, server: Server
) -> None:
    client = MlflowClient(tracking_uri=platform.tracking_uri, registry_uri=platform.tracking_uri)
    move_champion_alias(client, platform.versions[0])
    try:
        rebuilt = publish(platform, platform.versions[1])
        assert rebuilt.mlflow_version == "1" and rebuilt.bento_tag.startswith("flight_delay_service:v1-")
        rolled_back = serve_bento(platform, rebuilt, "rollback", {"MLOPS_SERVING_TOKEN": "s3cret"})
        try:
            [row] = request_rows(platform.holdout.iloc[:1])
            assert post(rolled_back, {"rows": [row]}).status_code == 401
            assert post(rolled_back, {"rows": [row]}, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert httpx.get(f"{rolled_back.url}/readyz").status_code == 200
            response = post(rolled_back, {"rows": [row]}, headers={"Authorization": "Bearer s3cret"})
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == "1"
        finally:
            stop_server(rolled_back)
    finally:
        move_champion_alias(client, platform.versions[1])


def test_service_started_with_an_empty_model_store_fails_fast_naming_the_missing_model(tmp_path: Path) -> None:
    env = bentoml_env(tmp_path / "bentoml", tmp_path / "state")
    env["PYTHONPATH"] = str(SERVICE_DIR.parents[1])
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", "service:FlightDelay", "--port", str(free_port())],
        cwd=SERVICE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert completed.returncode != 0
    assert "flight_delay:latest" in completed.stdout + completed.stderr
    assert time.monotonic() - started < 60
