"""The flight-delay service: the champion model behind /predict, with probes, metrics and an inference log.

Environment (all optional):
  MLOPS_STATE_DIR              state folder; the inference log goes to its inference_logs/ (default ./.mlops)
  MLOPS_SERVING_MODEL          BentoML model tag (default: the tag pinned in the bento, else flight_delay:latest)
  MLOPS_SERVING_TOKEN          when set, every request except the probes needs `Authorization: Bearer <token>`
  MLOPS_SERVING_MAX_BODY_BYTES largest request body accepted (default 8 MiB); larger bodies get 413
  MLOPS_SERVING_MAX_ROWS       most rows in one /predict request (default 10,000)
  MLOPS_SERVING_THREADS        OpenMP threads the model may use (default: the cores of this process)
"""

import asyncio
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import bentoml
import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mlops_assets.contracts import CATEGORICAL_FEATURES, MODEL_INPUT_NAMES
from mlops_assets.modeling import predict_probability
from mlops_assets.settings import StatePaths

DEFAULT_MODEL_TAG = "flight_delay:latest"
PINNED_MODEL_FILE = "serving_model.json"
DEFAULT_THRESHOLD = 0.35
MAX_ROWS = int(os.environ.get("MLOPS_SERVING_MAX_ROWS", "10000"))
MAX_BODY_BYTES = int(os.environ.get("MLOPS_SERVING_MAX_BODY_BYTES", str(8 * 1024 * 1024)))
# One worker (@bentoml.service(workers=1)): its model may use every core it is allowed on.
MODEL_THREADS = int(os.environ.get("MLOPS_SERVING_THREADS", str(len(os.sched_getaffinity(0)))))
TOKEN = os.environ.get("MLOPS_SERVING_TOKEN") or None
# One model call costs several ms for one row and ~20-60 ms for 1,000 rows here: rows of requests
# that wait while the model is busy are scored together, up to this many rows per call.
MAX_BATCH_ROWS = max(MAX_ROWS, 10000)
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})


def serving_model_tag() -> str:
    """The model to serve: MLOPS_SERVING_MODEL, else the tag pinned into the bento at build, else latest."""
    if tag := os.environ.get("MLOPS_SERVING_MODEL"):
        return tag
    pinned = Path(__file__).with_name(PINNED_MODEL_FILE)
    if pinned.exists():
        return str(json.loads(pinned.read_text())["model_tag"])
    return DEFAULT_MODEL_TAG


def _finite(**bounds: float) -> Any:
    return Field(default=None, allow_inf_nan=False, **bounds)


class FlightRow(BaseModel):
    """One scheduled flight and its origin's weather at the scheduled hour (weather may be null)."""

    model_config = ConfigDict(extra="forbid")

    year: int = Field(ge=1900, le=2100)
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    sched_dep_time: int = Field(ge=0, le=2359, description="Scheduled departure, local time as HHMM.")
    sched_arr_time: int = Field(ge=0, le=2359, description="Scheduled arrival, local time as HHMM.")
    carrier: str = Field(min_length=1, max_length=8, description="Two-letter carrier code, e.g. UA.")
    origin: str = Field(min_length=3, max_length=4, description="Origin airport code, e.g. EWR.")
    dest: str = Field(min_length=3, max_length=4, description="Destination airport code, e.g. ORD.")
    distance: float = Field(gt=0, le=12000, allow_inf_nan=False, description="Great-circle distance in miles.")
    temp: float | None = _finite(ge=-80, le=150)
    dewp: float | None = _finite(ge=-100, le=120)
    humid: float | None = _finite(ge=0, le=100)
    wind_dir: float | None = _finite(ge=0, le=360)
    wind_speed: float | None = _finite(ge=0, le=2000)
    wind_gust: float | None = _finite(ge=0, le=2000)
    precip: float | None = _finite(ge=0, le=50)
    pressure: float | None = _finite(ge=800, le=1200)
    visib: float | None = _finite(ge=0, le=100)


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


Rows = Annotated[
    list[FlightRow],
    BeforeValidator(_one_or_many),
    Field(max_length=MAX_ROWS, description=f"One flight, or a list of up to {MAX_ROWS} flights."),
]


class RowPrediction(BaseModel):
    """The answer for one flight."""

    probability: float = Field(ge=0, le=1, allow_inf_nan=False, description="Probability of disruption.")
    decision: bool = Field(description="Predicted disrupted: probability at or above the model's threshold.")
    unknown_categories: list[str] = Field(description="Fields whose value the model never saw in training.")


class PredictResponse(BaseModel):
    """The answer to one /predict request."""

    request_id: str
    model_version: str = Field(description="MLflow registered-model version that answered.")
    model_tag: str = Field(description="BentoML model tag that answered.")
    threshold: float
    predictions: list[RowPrediction]


UNKNOWN_VALUES = bentoml.metrics.Counter(
    name="flight_delay_unknown_category_values",
    documentation="Request values of a categorical field that the model never saw in training.",
    labelnames=["field"],
)
PREDICTED_ROWS = bentoml.metrics.Counter(
    name="flight_delay_predicted_rows",
    documentation="Rows answered by /predict.",
    labelnames=["model_version"],
)


BATCH_ROWS = bentoml.metrics.Histogram(
    name="flight_delay_batch_rows",
    documentation="Rows per model call after adaptive batching of concurrent requests.",
    buckets=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
)


class RowBatcher:
    """Adaptive batching: the rows of requests that arrive while the model is busy go into its next call.

    Idle, a request is scored at once (no timer to wait out); under load, batches grow with the queue,
    bounded by `max_rows`. Nothing is shed: every request waits its turn within the server's timeout.
    """

    def __init__(self, score: Callable[[list[dict[str, Any]]], list[float]], max_rows: int) -> None:
        self._score = score
        self._max_rows = max_rows
        self._pending: list[tuple[list[dict[str, Any]], asyncio.Future]] = []
        self._running = False

    async def score(self, records: list[dict[str, Any]]) -> list[float]:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((records, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, rows = [], 0
                while self._pending and (not batch or rows + len(self._pending[0][0]) <= self._max_rows):
                    batch.append(self._pending.pop(0))
                    rows += len(batch[-1][0])
                BATCH_ROWS.observe(rows)
                try:
                    scores = await anyio.to_thread.run_sync(self._score, [r for records, _ in batch for r in records])
                except Exception as error:  # every waiting request fails with the model's error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                start = 0
                for records, future in batch:
                    if not future.done():
                        future.set_result(scores[start : start + len(records)])
                    start += len(records)
        finally:
            self._running = False


class InferenceLog:
    """Appends one JSON line per request to a file per process and day under the state folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
        path = self.folder / f"inference-{record['logged_at'][:10]}-{os.getpid()}.jsonl"
        with self._lock, path.open("a", encoding="utf-8") as handle:
            handle.write(line)


async def _json_response(send: Any, status: int, payload: dict[str, Any], headers: list | None = None) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


def _describe_validation(body: bytes) -> tuple[int, bytes] | None:
    """BentoML answers invalid input with 400 and pydantic errors: make it 422 naming the fields."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    errors = payload.get("detail") if isinstance(payload, dict) else None
    if not isinstance(errors, list) or not all(isinstance(e, dict) and "loc" in e for e in errors):
        return None
    if errors and all(e.get("type") == "json_invalid" for e in errors):
        message = f"request body is not valid JSON: {errors[0].get('msg', '')}"
        return 400, json.dumps({"error": message, "detail": errors}).encode()
    fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e.get('msg', '')}" for e in errors)
    return 422, json.dumps({"error": f"invalid request: {fields}", "detail": errors}).encode()


class RequestGuard:
    """Bearer-token check, request-body size limit, and 422 for invalid input (pure ASGI)."""

    def __init__(self, app: Any, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes

    def _authorized(self, scope: dict[str, Any]) -> bool:
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:].strip(), self.token or b"")
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token and scope["path"] not in OPEN_PATHS and not self._authorized(scope):
            await _json_response(
                send, 401, {"error": "missing or wrong bearer token"}, [(b"www-authenticate", b"Bearer")]
            )
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size <= self.max_body_bytes:
                chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if size > self.max_body_bytes:
            limit = f"the limit is {self.max_body_bytes} bytes (MLOPS_SERVING_MAX_BODY_BYTES)"
            await _json_response(send, 413, {"error": f"request body is {size} bytes; {limit}"})
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        held: dict[str, Any] | None = None
        held_body: list[bytes] = []

        async def reshape(message: dict[str, Any]) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] == 400:
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            held_body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            content = b"".join(held_body)
            status, content = _describe_validation(content) or (400, content)
            headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(content)).encode()))
            await send({**held, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, replay, reshape)


async def model_info(request: Request) -> JSONResponse:
    """The served model's version, threshold, holdout metrics and training lineage."""
    return JSONResponse(bentoml.get_current_service().model_info())


ops_app = Starlette(routes=[Route("/model_info", model_info, methods=["GET"])])


@bentoml.service(
    name="flight_delay",
    workers=1,
    threads=1,
    traffic={"timeout": 60},
    http={"host": "127.0.0.1", "port": 3001},
)
@bentoml.asgi_app(ops_app, path="/")
class FlightDelay:
    """Predicts whether a scheduled flight will be disrupted, with the champion model."""

    model_ref = bentoml.models.BentoModel(serving_model_tag())

    def __init__(self) -> None:
        from threadpoolctl import threadpool_limits

        reference = type(self).model_ref
        stored = reference.stored
        if stored is None:
            home = os.environ.get("BENTOML_HOME", "~/bentoml")
            raise RuntimeError(
                f"model {reference.tag} is not in the BentoML model store ({home}/models): export a registered "
                "version first (`python -m mlops_assets.serving publish` or `make serve`)"
            )
        # Gradient boosting runs OpenMP threads; bounded so that workers do not oversubscribe the cores.
        threadpool_limits(limits=MODEL_THREADS)
        self.stored = stored
        self.model = bentoml.sklearn.load_model(stored)
        encoder = self.model.named_steps["columns"].named_transformers_["codes"]
        self.known = {
            name: {str(v) for v in values}
            for name, values in zip(CATEGORICAL_FEATURES, encoder.categories_, strict=True)
        }
        metadata = stored.info.metadata
        self.threshold = float(metadata.get("decision_threshold", DEFAULT_THRESHOLD))
        self.version = str(stored.info.labels.get("mlflow_version", stored.tag.version))
        self.tag = str(stored.tag)
        self.log = InferenceLog(StatePaths.from_env().inference_logs)
        self.batcher = RowBatcher(self.score_records, MAX_BATCH_ROWS)

    def __is_ready__(self) -> bool:
        return self.model is not None

    def model_info(self) -> dict[str, Any]:
        """What answers: MLflow version and run, BentoML tag, threshold, holdout metrics, lineage."""
        return {
            "model_tag": self.tag,
            "model_version": self.version,
            "labels": dict(self.stored.info.labels),
            "threshold": self.threshold,
            "metadata": dict(self.stored.info.metadata),
            "created_at": self.stored.info.creation_time.isoformat(),
        }

    @bentoml.api(route="/predict")
    async def predict(self, rows: Rows, ctx: bentoml.Context) -> PredictResponse:
        """Probability of disruption and the decision for one flight or many."""
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        records = [row.model_dump() for row in rows]
        probabilities = await self.batcher.score(records) if records else []
        predictions = []
        for row, probability in zip(rows, probabilities, strict=True):
            if not np.isfinite(probability):
                raise RuntimeError(f"the model returned a non-finite probability for request {request_id}")
            unknown = [name for name in CATEGORICAL_FEATURES if getattr(row, name) not in self.known[name]]
            for name in unknown:
                UNKNOWN_VALUES.labels(field=name).inc()
            predictions.append(
                RowPrediction(
                    probability=float(probability),
                    decision=bool(probability >= self.threshold),
                    unknown_categories=unknown,
                )
            )
        PREDICTED_ROWS.labels(model_version=self.version).inc(len(predictions))
        latency_ms = (time.perf_counter() - started) * 1000
        record = {
            "request_id": request_id,
            "logged_at": datetime.now(timezone.utc).isoformat(),
            "model_version": self.version,
            "model_tag": self.tag,
            "latency_ms": latency_ms,
            "inputs": records,
            "outputs": [p.model_dump() for p in predictions],
        }
        await anyio.to_thread.run_sync(self.log.write, record)
        ctx.response.headers["X-Request-ID"] = request_id
        return PredictResponse(
            request_id=request_id,
            model_version=self.version,
            model_tag=self.tag,
            threshold=self.threshold,
            predictions=predictions,
        )

    def score_records(self, records: list[dict[str, Any]]) -> list[float]:
        """Probabilities for validated request rows, in order (one model call)."""
        frame = pd.DataFrame(records, columns=list(MODEL_INPUT_NAMES))
        return predict_probability(self.model, frame).tolist()


FlightDelay.add_asgi_middleware(RequestGuard, token=TOKEN, max_body_bytes=MAX_BODY_BYTES)
