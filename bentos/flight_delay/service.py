"""The flight-delay service: the champion model behind /predict, with probes, metrics and an inference log.

Environment (all optional):
  MLOPS_STATE_DIR              state folder; the inference log goes to its inference_logs/ (default ./.mlops)
  MLOPS_SERVING_MODEL          BentoML model tag (default: the tag pinned in the bento, else flight_delay:latest)
  MLOPS_SERVING_TOKEN          when set, every request except the probes needs `Authorization: Bearer <token>`
  MLOPS_SERVING_MAX_BODY_BYTES largest request body accepted (default 8 MiB); larger bodies get 413
  MLOPS_SERVING_MAX_ROWS       most rows in one /predict request (default 10,000)
  MLOPS_SERVING_THREADS        OpenMP threads the model may use for calls of 256 rows or more (default 1)
"""

import asyncio
import gc
import hmac
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import bentoml
import numpy as np
import pandas as pd
import pydantic_core
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mlops_assets.contracts import CATEGORICAL_FEATURES, MODEL_INPUT_NAMES, WEATHER_COLUMN_NAMES
from mlops_assets.features import MODEL_FEATURES, coerce_model_input
from mlops_assets.modeling import predict_probability
from mlops_assets.settings import StatePaths

DEFAULT_MODEL_TAG = "flight_delay:latest"
PINNED_MODEL_FILE = "serving_model.json"
DEFAULT_THRESHOLD = 0.35
MAX_ROWS = int(os.environ.get("MLOPS_SERVING_MAX_ROWS", "10000"))
MAX_BODY_BYTES = int(os.environ.get("MLOPS_SERVING_MAX_BODY_BYTES", str(8 * 1024 * 1024)))
# Default 1: measured on 2 busy cores, a second OpenMP thread did not speed up 1,000-row calls (the
# event loop and the load need the other core); set it to the cores when the machine is the service's.
MODEL_THREADS = int(os.environ.get("MLOPS_SERVING_THREADS", "1"))
TOKEN = os.environ.get("MLOPS_SERVING_TOKEN") or None
# One model call costs several ms for one row and ~20-60 ms for 1,000 rows here: rows of requests
# that wait while the model is busy are scored together, up to this many rows per call.
MAX_BATCH_ROWS = max(MAX_ROWS, 10000)
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
# Model calls with fewer rows than this run on one OpenMP thread: waking a thread team for every one
# of a few hundred trees costs more than it saves on a handful of rows.
SMALL_CALL_ROWS = 256
# Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 20_000
# The inference log is written by a background thread: a request only queues its record.
LOG_FLUSH_SECONDS = 0.05
logger = logging.getLogger("bentoml.flight_delay")


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


_NAN = math.nan


def _minute_of_day(hhmm: float) -> float:
    return (hhmm // 100) * 60 + hhmm % 100


def _day_of_week(year: int, month: int, day: int) -> float:
    try:
        return float(date(year, month, day).weekday())
    except ValueError:  # e.g. 30 February: the pipeline's to_datetime(errors="coerce") gives NaT
        return _NAN


class CompiledModel:
    """The pipeline's predict_proba for request rows without its pandas steps: the same numbers, faster.

    The pipeline (ScheduleFeatures, ColumnTransformer with an OrdinalEncoder, HistGradientBoosting)
    spends ~10 ms on one row, nearly all of it building and checking DataFrames. Here a request row
    becomes the classifier's input matrix directly: the clock and calendar features computed as
    ScheduleFeatures does, each category looked up in the composition of the pipeline's encoder
    and the classifier's own category encoder, then every tree's predictor summed in the
    classifier's order. `check` compares it with the pipeline, bit for bit, on rows covering every
    known category, unknown ones, missing weather and impossible dates; the service uses it only
    when that check passes (else the pipeline itself).
    """

    def __init__(self, pipeline: Any) -> None:
        columns = pipeline.named_steps["columns"]
        classifier = pipeline.named_steps["classifier"]
        names = list(columns.get_feature_names_out())
        expected = list(CATEGORICAL_FEATURES) + [n for n in MODEL_FEATURES if n not in CATEGORICAL_FEATURES]
        if list(pipeline.named_steps) != ["schedule", "columns", "classifier"] or names != expected:
            raise ValueError(f"unexpected pipeline layout: steps {list(pipeline.named_steps)}, columns {names}")
        inner = classifier._preprocessor
        n_cat = len(CATEGORICAL_FEATURES)
        if (
            inner is None
            or list(classifier.is_categorical_) != [True] * n_cat + [False] * (len(names) - n_cat)
            or inner.output_indices_["encoder"] != slice(0, n_cat)
        ):
            raise ValueError("the classifier's categorical features are not the first columns")
        outer_categories = columns.named_transformers_["codes"].categories_
        inner_categories = inner.named_transformers_["encoder"].categories_
        self.codes: list[dict[str, float]] = []
        self.unknown_codes: list[float] = []
        for outer, inner_values in zip(outer_categories, inner_categories, strict=True):
            # pipeline code (index, or -1 unknown/missing) -> the classifier's code (index, or NaN)
            inner_index = {float(v): float(i) for i, v in enumerate(inner_values) if not math.isnan(float(v))}
            self.codes.append({v: inner_index.get(float(i), _NAN) for i, v in enumerate(outer) if isinstance(v, str)})
            self.unknown_codes.append(inner_index.get(-1.0, _NAN))
        self.predictors = [predictor for (predictor,) in classifier._predictors]
        if classifier.n_trees_per_iteration_ != 1:
            raise ValueError("not a binary classifier")
        self.known_bitsets, self.f_idx_map = classifier._bin_mapper.make_known_categories_bitsets()
        self.baseline = classifier._baseline_prediction
        self.loss = classifier._loss
        self.pipeline = pipeline

    def matrix(self, records: list[dict[str, Any]]) -> np.ndarray:
        """The classifier's input for request rows (dicts of the contract's fields)."""
        (carrier, origin, dest), (u_carrier, u_origin, u_dest) = self.codes, self.unknown_codes
        weather = WEATHER_COLUMN_NAMES
        out = []
        for r in records:
            dep_time = float(r["sched_dep_time"])
            dep = _minute_of_day(dep_time)
            arr = _minute_of_day(float(r["sched_arr_time"]))
            out.append(
                (
                    carrier.get(r["carrier"], u_carrier),
                    origin.get(r["origin"], u_origin),
                    dest.get(r["dest"], u_dest),
                    float(r["month"]),
                    float(r["distance"]),
                    _day_of_week(r["year"], r["month"], r["day"]),
                    math.floor(dep_time / 100),
                    dep,
                    arr,
                    1.0 if arr < dep else 0.0,
                    *(_NAN if r[name] is None else float(r[name]) for name in weather),
                )
            )
        return np.array(out, dtype=np.float64).reshape(len(records), len(MODEL_FEATURES))

    def probabilities(self, records: list[dict[str, Any]], threads: int) -> np.ndarray:
        """Probability of the positive class for request rows, as pipeline.predict_proba(...)[:, 1]."""
        x = self.matrix(records)
        raw = np.zeros((len(records), 1), dtype=self.baseline.dtype, order="F")
        raw += self.baseline
        for predictor in self.predictors:
            raw[:, 0] += predictor.predict(x, self.known_bitsets, self.f_idx_map, threads)
        return self.loss.predict_proba(raw)[:, 1]

    def check(self, records: list[dict[str, Any]]) -> str | None:
        """None when the probabilities equal the pipeline's exactly on these rows, else what differs."""
        frame = coerce_model_input(pd.DataFrame(records, columns=list(MODEL_INPUT_NAMES)))
        expected = self.pipeline.predict_proba(frame)[:, 1]
        for threads in (1, MODEL_THREADS):
            got = self.probabilities(records, threads)
            if not np.array_equal(got, expected):
                differ = int(np.sum(got != expected))
                return f"{differ} of {len(records)} probe rows differ from the pipeline ({threads} threads)"
        return None


def probe_records(compiled: CompiledModel, rows: int = 512, seed: int = 13) -> list[dict[str, Any]]:
    """Rows covering every known category, unknown codes, null weather and impossible dates (seeded)."""
    rng = np.random.default_rng(seed)
    choices = [[*codes, "ZZ", "QQQ"] for codes in compiled.codes]
    records = []
    for i in range(rows):
        record: dict[str, Any] = {
            "year": 2013,
            "month": int(rng.integers(1, 13)),
            "day": int(rng.integers(1, 32)),
            "sched_dep_time": int(rng.integers(0, 2360)),
            "sched_arr_time": int(rng.integers(0, 2360)),
            "distance": float(rng.uniform(10, 5000)),
        }
        for name, values in zip(CATEGORICAL_FEATURES, choices, strict=True):
            record[name] = values[i % len(values)] if i < 2 * len(values) else values[int(rng.integers(len(values)))]
        bounds = {"temp": (-10, 100), "dewp": (-20, 80), "humid": (10, 100), "wind_dir": (0, 360)}
        bounds |= {"wind_speed": (0, 40), "wind_gust": (0, 60), "precip": (0, 1), "pressure": (990, 1040)}
        bounds |= {"visib": (0, 10)}
        for name in WEATHER_COLUMN_NAMES:
            low, high = bounds[name]
            record[name] = None if rng.random() < 0.15 else float(rng.uniform(low, high))
        records.append(record)
    return records


def _json_line(record: dict[str, Any]) -> str:
    """One compact JSON line, NaN and infinities refused (pydantic-core's encoder, several times json.dumps)."""
    line = pydantic_core.to_json(record, inf_nan_mode="constants")
    if b"NaN" in line or b"Infinity" in line:  # maybe inside a string: json.dumps decides, and raises if not
        return json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    return line.decode() + "\n"


class InferenceLog:
    """Appends one JSON line per request to a file per process and day under the state folder.

    `write` appends at once; `submit` queues the record for a background thread that encodes and
    appends everything queued every LOG_FLUSH_SECONDS (one open and write per flush, not per request).
    """

    def __init__(self, folder: Path, flush_seconds: float = LOG_FLUSH_SECONDS) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._queued: list[dict[str, Any]] = []
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._flush_seconds = flush_seconds
        self._writer: threading.Thread | None = None

    def _path(self, record: dict[str, Any]) -> Path:
        return self.folder / f"inference-{record['logged_at'][:10]}-{os.getpid()}.jsonl"

    def write(self, record: dict[str, Any]) -> None:
        self._append([record])

    def _append(self, records: list[dict[str, Any]]) -> None:
        by_path: dict[Path, list[str]] = {}
        for record in records:
            line = _json_line(record)
            by_path.setdefault(self._path(record), []).append(line)
        with self._lock:
            for path, lines in by_path.items():
                with path.open("a", encoding="utf-8") as handle:
                    handle.write("".join(lines))

    def submit(self, record: dict[str, Any]) -> None:
        """Queue a record for the background writer (started on first use)."""
        with self._queue_lock:
            self._queued.append(record)
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="inference-log", daemon=True)
                self._writer.start()

    def flush(self) -> None:
        """Write everything queued so far."""
        with self._queue_lock:
            records, self._queued = self._queued, []
        if records:
            self._append(records)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_seconds)
            self.flush()

    def close(self) -> None:
        """Stop the writer after a last flush."""
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=10)
        self.flush()


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
        self.predicted_rows = PREDICTED_ROWS.labels(model_version=self.version)
        self.log = InferenceLog(StatePaths.from_env().inference_logs)
        self.compiled = compile_model(self.model)
        self.batcher = RowBatcher(self.score_records, MAX_BATCH_ROWS)
        # What is loaded now lives as long as the process: keep it out of the collector's scans, whose
        # passes over the model and the frameworks stalled every request in flight, and collect the
        # young generation less often (a request allocates thousands of short-lived objects). Measured
        # at concurrency 32 on 2 busy cores: p99 from 180-460 ms to 75-90 ms.
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)

    @bentoml.on_shutdown
    def close_log(self) -> None:
        """Write the inference-log records still queued."""
        self.log.close()

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
        # The validated fields as a dict (FlightRow holds plain values only: the same as model_dump()).
        records = [dict(row.__dict__) for row in rows]
        probabilities = await self.batcher.score(records) if records else []
        predictions, outputs = [], []
        threshold, known = self.threshold, self.known
        for record, probability in zip(records, probabilities, strict=True):
            if not math.isfinite(probability):
                raise RuntimeError(f"the model returned a non-finite probability for request {request_id}")
            unknown = [name for name in CATEGORICAL_FEATURES if record[name] not in known[name]]
            for name in unknown:
                UNKNOWN_VALUES.labels(field=name).inc()
            output = {"probability": probability, "decision": probability >= threshold, "unknown_categories": unknown}
            outputs.append(output)
            # Built from checked values (a finite probability from the logistic link is in [0, 1]).
            predictions.append(RowPrediction.model_construct(**output))
        self.predicted_rows.inc(len(predictions))
        latency_ms = (time.perf_counter() - started) * 1000
        record = {
            "request_id": request_id,
            "logged_at": datetime.now(timezone.utc).isoformat(),
            "model_version": self.version,
            "model_tag": self.tag,
            "latency_ms": latency_ms,
            "inputs": records,
            "outputs": outputs,
        }
        self.log.submit(record)
        ctx.response.headers["X-Request-ID"] = request_id
        return PredictResponse.model_construct(
            request_id=request_id,
            model_version=self.version,
            model_tag=self.tag,
            threshold=self.threshold,
            predictions=predictions,
        )

    def score_records(self, records: list[dict[str, Any]]) -> list[float]:
        """Probabilities for validated request rows, in order (one model call)."""
        if self.compiled is not None:
            threads = 1 if len(records) < SMALL_CALL_ROWS else MODEL_THREADS
            return self.compiled.probabilities(records, threads).tolist()
        frame = pd.DataFrame(records, columns=list(MODEL_INPUT_NAMES))
        return predict_probability(self.model, frame).tolist()


def compile_model(pipeline: Any) -> CompiledModel | None:
    """The pipeline's compiled predict path when it gives the pipeline's probabilities exactly, else None."""
    try:
        compiled = CompiledModel(pipeline)
    except (AttributeError, KeyError, ValueError, TypeError) as error:
        logger.warning("serving through the sklearn pipeline: its layout cannot be compiled (%s)", error)
        return None
    if problem := compiled.check(probe_records(compiled)):
        logger.warning("serving through the sklearn pipeline: the compiled path disagrees (%s)", problem)
        return None
    return compiled


FlightDelay.add_asgi_middleware(RequestGuard, token=TOKEN, max_body_bytes=MAX_BODY_BYTES)
