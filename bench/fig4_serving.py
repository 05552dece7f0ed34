"""Figure 4, serving: single-row /predict requests from a load generator in its own process at
concurrency 1, 8 and 32 against the BentoML service (the product) and `mlflow models serve
--env-manager local` of the same registered version, with in-process predict as the limit; then
the batch endpoint (1,000 rows a request) against in-process batches. Loopback only, bounded runs."""

from __future__ import annotations

import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    REPO_ROOT,
    Timer,
    base_parser,
    child_main,
    peak_rss_mib,
    run_child,
    save_results,
    summary,
    workdir,
)

MODULE = "bench.fig4_serving"
CONCURRENCY = (1, 8, 32)
BATCH_ROWS = 1000
TRAIN_DAYS = ("2013-01-01", "2013-02-21")
REQUEST_DAYS = ("2013-02-22", "2013-02-28")
READY_TIMEOUT_S = 180
GOAL_THROUGHPUT_VS_MLFLOW = 20.0
GOAL_P99_MS = 100.0
GOAL_P50_VS_INPROCESS = 1.5
GOAL_BATCH_VS_INPROCESS = 0.5


def request_rows(frame) -> list[dict[str, object]]:  # noqa: ANN001 - model-input DataFrame
    """Model-input rows as a request carries them: ints, floats, codes, null weather when missing."""
    from mlops_assets.live_traffic import request_rows as contract_rows

    return contract_rows(frame)


# --- children --------------------------------------------------------------------------------------


def load_generator(params: dict[str, object]) -> dict[str, object]:
    """Closed-loop load: `concurrency` clients, each sending its next request when answered, until
    `max_requests` are answered or `duration_s` has passed."""
    import asyncio
    import json

    import httpx

    url = str(params["url"])
    bodies = [json.dumps(b).encode() for b in json.loads(Path(str(params["bodies"])).read_text())]
    concurrency, duration, cap = int(params["concurrency"]), float(params["duration_s"]), int(params["max_requests"])
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def client(http: httpx.AsyncClient, worker: int, deadline: float) -> None:
        sent = worker
        while time.perf_counter() < deadline and len(latencies) < cap:
            body = bodies[sent % len(bodies)]
            sent += concurrency
            started = time.perf_counter()
            try:
                answer = await http.post(url, content=body, headers={"content-type": "application/json"})
                status = str(answer.status_code)
            except httpx.HTTPError as error:
                status = type(error).__name__
            if status == "200":
                latencies.append(time.perf_counter() - started)
            else:
                errors[status] = errors.get(status, 0) + 1

    async def run() -> float:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            # Warm-up: connections opened, first-request costs paid before the clock.
            headers = {"content-type": "application/json"}
            await asyncio.gather(*(http.post(url, content=bodies[0], headers=headers) for _ in range(concurrency)))
            started = time.perf_counter()
            deadline = started + duration
            await asyncio.gather(*(client(http, w, deadline) for w in range(concurrency)))
            return time.perf_counter() - started

    elapsed = asyncio.run(run())
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else math.nan

    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
    }


def in_process(params: dict[str, object]) -> dict[str, object]:
    """The limit: the same model loaded in-process, one thread as the service, single rows and batches."""
    import json

    import mlflow
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from mlops_assets.contracts import MODEL_INPUT_NAMES
    from mlops_assets.modeling import predict_probability

    threadpool_limits(limits=1)
    mlflow.set_tracking_uri(str(params["tracking_uri"]))
    model = mlflow.sklearn.load_model(str(params["model_uri"]))
    rows = json.loads(Path(str(params["rows"])).read_text())
    single: list[float] = []
    for i in range(int(params["single_calls"])):
        # As the service builds its frame: rows as dicts, contract column order.
        with Timer() as timer:
            predict_probability(model, pd.DataFrame([rows[i % len(rows)]], columns=list(MODEL_INPUT_NAMES)))
        single.append(timer.seconds)
    batch_rows = rows[:BATCH_ROWS]
    batches: list[float] = []
    for _ in range(int(params["batch_calls"])):
        with Timer() as timer:
            predict_probability(model, pd.DataFrame(batch_rows, columns=list(MODEL_INPUT_NAMES)))
        batches.append(timer.seconds)
    return {
        "single_row_p50_ms": statistics.median(single[5:] or single) * 1000,
        "single_row_p99_ms": sorted(single)[int(0.99 * (len(single) - 1))] * 1000,
        "batch_rows": len(batch_rows),
        "batch_rows_per_second": len(batch_rows) / statistics.median(batches),
    }


def prepare_model(params: dict[str, object]) -> dict[str, object]:
    """Train one model on real rows, register it in a temp MLflow store, export it and build its bento."""
    import json

    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from bench.fig5_drift import model_inputs
    from mlops_assets.contracts import LABEL
    from mlops_assets.landing_writer import read_package_flights
    from mlops_assets.modeling import TrainingParams, train_model
    from mlops_assets.registry import log_and_register_model, move_champion_alias
    from mlops_assets.resources import ensure_experiment
    from mlops_assets.serving import publish_bento
    from mlops_assets.settings import EXPERIMENT_NAME, REGISTERED_MODEL_NAME, StatePaths

    paths = StatePaths(Path(str(params["state"])))
    flights = read_package_flights()
    dates = pd.to_datetime(flights[["year", "month", "day"]].astype(int)).dt.strftime("%Y-%m-%d")
    train_flights = flights[(dates >= TRAIN_DAYS[0]) & (dates <= TRAIN_DAYS[1])]
    train = model_inputs(train_flights)
    arr_delay = pd.to_numeric(train_flights["arr_delay"].replace("", None), errors="coerce").reset_index(drop=True)
    train[LABEL] = arr_delay.isna() | (arr_delay > 15)
    requests = model_inputs(flights[(dates >= REQUEST_DAYS[0]) & (dates <= REQUEST_DAYS[1])])
    Path(str(params["rows"])).write_text(json.dumps(request_rows(requests)))
    tracking_uri = paths.mlflow_tracking_uri
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    ensure_experiment(client, EXPERIMENT_NAME, str(paths.mlflow_artifacts))
    mlflow.set_experiment(EXPERIMENT_NAME)
    with mlflow.start_run():
        model = train_model(train, TrainingParams(max_iter=int(params["max_iter"])))
        version = log_and_register_model(model, train.drop(columns=[LABEL]).head(5), REGISTERED_MODEL_NAME)
        mlflow.log_param("decision_threshold", 0.35)
    move_champion_alias(client, version)
    published = publish_bento(version, tracking_uri, paths.bentoml_home)
    return {"model_uri": version.uri, "bento_tag": published.bento_tag, "train_rows": len(train)}


VARIANTS = {"load_generator": load_generator, "in_process": in_process, "prepare_model": prepare_model}


# --- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(command: list[str], env: dict[str, str], log: Path, ready_url: str) -> subprocess.Popen:
    """Start a server in its own session and wait until `ready_url` answers 200."""
    import httpx

    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f"server not ready after {READY_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def tree_rss_mib(pid: int) -> dict[str, float]:
    """RSS now and peak (VmHWM) summed over a server process and all its descendants, in MiB."""
    import psutil

    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    now = peak = 0.0
    for process in processes:
        try:
            now += process.memory_info().rss / 1024**2
            peak += peak_rss_mib(process.pid)
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return {"rss_mib": now, "peak_rss_mib": peak, "processes": len(processes)}


def measure_server(name: str, url: str, pid: int, single: list[dict], batch: object, args: object) -> dict:
    """Throughput and latency at each concurrency, then the batch endpoint when given, and memory."""
    import json

    bodies = Path(args.scratch) / f"{name}-single.json"
    bodies.write_text(json.dumps(single))
    batch_bodies = Path(args.scratch) / f"{name}-batch.json"
    batch_bodies.write_text(json.dumps([batch]))
    levels = {}
    for concurrency in CONCURRENCY:
        runs = []
        for _ in range(args.level_runs):
            params = {
                "url": url,
                "bodies": str(bodies),
                "concurrency": concurrency,
                "duration_s": args.duration,
                "max_requests": args.max_requests,
            }
            runs.append(run_child(MODULE, "load_generator", params))
        levels[str(concurrency)] = {
            "requests_per_second": summary([r["requests_per_second"] for r in runs]),
            "p50_ms": summary([r["p50_ms"] for r in runs]),
            "p99_ms": summary([r["p99_ms"] for r in runs]),
            "requests": [r["requests"] for r in runs],
            "errors": [r["errors"] for r in runs],
        }
        print(
            f"{name} c={concurrency}: {levels[str(concurrency)]['requests_per_second']['median']:.1f} req/s, "
            f"p50 {levels[str(concurrency)]['p50_ms']['median']:.1f} ms, "
            f"p99 {levels[str(concurrency)]['p99_ms']['median']:.1f} ms, errors {runs[-1]['errors']}"
        )
    result: dict[str, object] = {"single_row": levels}
    if batch is not None:
        runs = [
            run_child(
                MODULE,
                "load_generator",
                {
                    "url": url,
                    "bodies": str(batch_bodies),
                    "concurrency": 1,
                    "duration_s": args.duration,
                    "max_requests": 200,
                },
            )
            for _ in range(args.level_runs)
        ]
        result["batch"] = {
            "rows_per_request": BATCH_ROWS,
            "rows_per_second": summary([r["requests_per_second"] * BATCH_ROWS for r in runs]),
            "p50_ms": summary([r["p50_ms"] for r in runs]),
            "errors": [r["errors"] for r in runs],
        }
        print(f"{name} batch: {result['batch']['rows_per_second']['median']:.0f} rows/s")
    result["memory_after_load"] = tree_rss_mib(pid)
    return result


def main(argv: list[str]) -> int:
    if "--child" in argv:
        child_main(VARIANTS, argv)
        return 0
    parser = base_parser(__doc__)
    parser.add_argument("--duration", type=float, default=None, help="Seconds per load run (default 10, quick 1).")
    args = parser.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 10.0)
    args.level_runs = args.runs or (1 if args.quick else 3)
    args.max_requests = 200 if args.quick else 20_000
    import json

    from mlops_assets.serving import bentoml_env, serve_command

    scratch = workdir(args)
    root = Path(scratch.name) if scratch else args.workdir
    state = root / "state"
    args.scratch = str(root)
    rows_file = root / "rows.json"
    prepared = run_child(
        MODULE, "prepare_model", {"state": str(state), "rows": str(rows_file), "max_iter": 20 if args.quick else 200}
    )
    rows = json.loads(rows_file.read_text())
    limit = run_child(
        MODULE,
        "in_process",
        {
            "tracking_uri": f"sqlite:///{state / 'mlflow.db'}",
            "model_uri": prepared["model_uri"],
            "rows": str(rows_file),
            "single_calls": 50 if args.quick else 500,
            "batch_calls": 3 if args.quick else 20,
        },
    )
    print(f"in process: p50 {limit['single_row_p50_ms']:.2f} ms, {limit['batch_rows_per_second']:.0f} rows/s")
    single = rows[:500]
    servers = {}
    # BentoML: the built bento of that version, served as `make serve` does.
    port = free_port()
    env = bentoml_env(state / "bentoml", state)
    process = start_server(
        serve_command(prepared["bento_tag"], "127.0.0.1", port),
        env,
        root / "bentoml.log",
        f"http://127.0.0.1:{port}/readyz",
    )
    try:
        servers["bentoml"] = measure_server(
            "bentoml",
            f"http://127.0.0.1:{port}/predict",
            process.pid,
            [{"rows": r} for r in single],
            {"rows": rows[:BATCH_ROWS]},
            args,
        )
    finally:
        stop_server(process)
    # MLflow: the same registered version, the virtual environment's bin on PATH (it starts uvicorn by name).
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        prepared["model_uri"],
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    process = start_server(command, env, root / "mlflow.log", f"http://127.0.0.1:{port}/ping")
    try:
        servers["mlflow"] = measure_server(
            "mlflow",
            f"http://127.0.0.1:{port}/invocations",
            process.pid,
            [{"dataframe_records": [r]} for r in single],
            None,
            args,
        )
    finally:
        stop_server(process)
    bento, mlflow_ = servers["bentoml"]["single_row"], servers["mlflow"]["single_row"]
    top = str(CONCURRENCY[-1])
    ratios = {
        "throughput_vs_mlflow": {
            c: bento[c]["requests_per_second"]["median"] / mlflow_[c]["requests_per_second"]["median"] for c in bento
        },
        "p50_c1_vs_in_process_single_row": bento["1"]["p50_ms"]["median"] / limit["single_row_p50_ms"],
        "batch_vs_in_process": servers["bentoml"]["batch"]["rows_per_second"]["median"]
        / limit["batch_rows_per_second"],
    }
    figure = {
        "train_rows": prepared["train_rows"],
        "duration_s_per_run": args.duration,
        "runs_per_level": args.level_runs,
        "in_process": limit,
        "servers": servers,
        "ratios": ratios,
        "goals": {
            "throughput_c32_vs_mlflow_at_least": GOAL_THROUGHPUT_VS_MLFLOW,
            "p99_c32_ms_below": GOAL_P99_MS,
            "p50_c1_vs_in_process_at_most": GOAL_P50_VS_INPROCESS,
            "batch_vs_in_process_at_least": GOAL_BATCH_VS_INPROCESS,
            "throughput_met": ratios["throughput_vs_mlflow"][top] >= GOAL_THROUGHPUT_VS_MLFLOW,
            "p99_met": bento[top]["p99_ms"]["median"] < GOAL_P99_MS,
            "p50_met": ratios["p50_c1_vs_in_process_single_row"] <= GOAL_P50_VS_INPROCESS,
            "batch_met": ratios["batch_vs_in_process"] >= GOAL_BATCH_VS_INPROCESS,
        },
    }
    save_results(args, "fig4_serving", figure)
    if scratch:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
