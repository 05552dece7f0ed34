"""Serving: export a registered MLflow version into the BentoML store, build the bento, read inference logs.

BentoML fixes its store location (BENTOML_HOME) for the life of a process at first use, so every
store operation runs in a child process (`python -m mlops_assets.serving ...`) with BENTOML_HOME set:
a Dagster run or a test session can then work with several state folders.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from pydantic import BaseModel

from mlops_assets.contracts import MODEL_INPUT_COLUMNS, MODEL_INPUT_NAMES
from mlops_assets.registry import ModelVersion
from mlops_assets.settings import REGISTERED_MODEL_NAME, StatePaths
from mlops_assets.warehouse import INFERENCE_TABLE, transaction

BENTO_MODEL_NAME = "flight_delay"
BENTO_NAME = "flight_delay_service"
DEFAULT_THRESHOLD = 0.35
PINNED_MODEL_FILE = "serving_model.json"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
SERVICE_DIR = REPO_ROOT / "bentos" / "flight_delay"
INFERENCE_FILES_TABLE = "inference_log_files"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3001


@dataclass(frozen=True)
class PublishedBento:
    """A registered version exported into the BentoML store and the bento built around it."""

    model_tag: str
    bento_tag: str
    mlflow_model: str
    mlflow_version: str
    run_id: str
    threshold: float
    bentoml_home: str


def bento_version(version: ModelVersion) -> str:
    """The BentoML version of a registered version: its MLflow number and run id (deterministic)."""
    return f"v{version.version}-{version.run_id[:12]}"


def model_tag_for(version: ModelVersion) -> str:
    return f"{BENTO_MODEL_NAME}:{bento_version(version)}"


def bento_tag_for(version: ModelVersion) -> str:
    return f"{BENTO_NAME}:{bento_version(version)}"


def bentoml_env(bentoml_home: Path, state_dir: Path | None = None) -> dict[str, str]:
    """The environment of a BentoML child process: its store, the state folder, no usage tracking."""
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    if state_dir is not None:
        env["MLOPS_STATE_DIR"] = str(state_dir)
    return env


# --- export and build (run inside the child process) -------------------------------------------


def export_metadata(tracking_uri: str, version: ModelVersion) -> tuple[dict[str, str], dict[str, Any]]:
    """Labels (MLflow identity) and metadata (threshold, holdout metrics, lineage) of a version."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = client.get_run(version.run_id)
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    lineage: dict[str, Any] = {}
    if "lineage.json" in artifacts:
        with tempfile.TemporaryDirectory() as folder:
            lineage = json.loads(Path(client.download_artifacts(version.run_id, "lineage.json", folder)).read_text())
    signature = mlflow.models.get_model_info(version.uri).signature
    labels = {
        "mlflow_model": version.name,
        "mlflow_version": version.version,
        "mlflow_run_id": version.run_id,
        "project": "mlops-assets",
    }
    metadata = {
        "decision_threshold": float(run.data.params.get("decision_threshold", DEFAULT_THRESHOLD)),
        "holdout_metrics": {
            k.removeprefix("holdout_"): float(v) for k, v in run.data.metrics.items() if k.startswith("holdout_")
        },
        "train_dates": lineage.get("train_dates", []),
        "holdout_dates": lineage.get("holdout_dates", []),
        "batch_count": len(lineage.get("batches", [])),
        "batches": [b["batch_key"] for b in lineage.get("batches", [])],
        "input_names": signature.inputs.input_names() if signature else [],
        "mlflow_uri": version.uri,
        "tracking_uri": tracking_uri,
        "exported_at": datetime.now(timezone.utc).isoformat(),
    }
    return labels, metadata


def export_model(tracking_uri: str, version: ModelVersion) -> str:
    """Save a registered version into the current BentoML store (skipped when already there)."""
    import bentoml
    import mlflow

    from mlops_assets.registry import load_model

    tag = model_tag_for(version)
    try:
        existing = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        existing = None
    if existing is not None and existing.info.labels.get("mlflow_run_id") == version.run_id:
        return tag
    if existing is not None:
        bentoml.models.delete(tag)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    labels, metadata = export_metadata(tracking_uri, version)
    bentoml.sklearn.save_model(
        tag,
        load_model(version),
        labels=labels,
        metadata=metadata,
        signatures={"predict_proba": {"batchable": True}},
    )
    return tag


def build_bento(version: ModelVersion, model_tag: str) -> str:
    """Build the bento that serves `model_tag` (rebuilt if it exists: code may have changed)."""
    import bentoml

    tag = bento_tag_for(version)
    try:
        bentoml.bentos.delete(tag)
    except bentoml.exceptions.NotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="flight_delay_bento_") as folder:
        staging = Path(folder)
        for name in ("service.py", "bentofile.yaml"):
            shutil.copy2(SERVICE_DIR / name, staging / name)
        shutil.copytree(PACKAGE_DIR, staging / "mlops_assets", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (staging / PINNED_MODEL_FILE).write_text(json.dumps({"model_tag": model_tag}))
        bento = bentoml.bentos.build_bentofile(
            str(staging / "bentofile.yaml"),
            build_ctx=str(staging),
            version=bento_version(version),
            labels={"mlflow_model": version.name, "mlflow_version": version.version, "mlflow_run_id": version.run_id},
        )
    return str(bento.tag)


# --- the parent-side API -------------------------------------------------------------------------


def _run_child(args: list[str], bentoml_home: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "mlops_assets.serving", *args],
        cwd=REPO_ROOT,
        env=bentoml_env(bentoml_home),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"`mlops_assets.serving {' '.join(args)}` failed ({completed.returncode}):\n{completed.stderr[-4000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def publish_bento(version: ModelVersion, tracking_uri: str, bentoml_home: Path) -> PublishedBento:
    """Export a registered version into the BentoML store at `bentoml_home` and build its bento."""
    result = _run_child(
        ["publish", "--tracking-uri", tracking_uri, "--model-name", version.name, "--version", version.version],
        bentoml_home,
    )
    return PublishedBento(**result)


def serve_command(bento_tag: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    """The `bentoml serve` command line of a built bento."""
    return [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)]


# --- the feature contract across serving, the registry and training -----------------------------

_PYTHON_TYPES = {"INTEGER": int, "DOUBLE": float, "VARCHAR": str}
_SIGNATURE_TYPES = {"INTEGER": {"long", "integer", "double"}, "DOUBLE": {"double", "float"}, "VARCHAR": {"string"}}


def contract_mismatches(
    request_model: type[BaseModel], signature_inputs: list[dict[str, Any]], training_names: Sequence[str]
) -> list[str]:
    """Where the serving request model, an MLflow signature and the training features leave the contract."""
    problems = []
    expected = list(MODEL_INPUT_NAMES)
    for what, names in (
        ("request model", list(request_model.model_fields)),
        ("MLflow signature", [column.get("name") for column in signature_inputs]),
        ("training features", list(training_names)),
    ):
        if names != expected:
            missing = [n for n in expected if n not in names]
            extra = [n for n in names if n not in expected]
            problems.append(f"{what} columns differ from the contract: missing {missing}, extra {extra}, order {names}")
    fields = request_model.model_fields
    signature = {column.get("name"): column for column in signature_inputs}
    for column in MODEL_INPUT_COLUMNS:
        field = fields.get(column.name)
        if field is not None:
            allowed = _PYTHON_TYPES[column.sql_type]
            annotation = field.annotation
            types = set(getattr(annotation, "__args__", (annotation,))) - {type(None)}
            if types != {allowed}:
                problems.append(f"request field {column.name} is {annotation}, the contract says {allowed.__name__}")
            if field.is_required() != column.required:
                problems.append(
                    f"request field {column.name} required={field.is_required()}, contract {column.required}"
                )
        entry = signature.get(column.name)
        if entry is not None and entry.get("type") not in _SIGNATURE_TYPES[column.sql_type]:
            problems.append(
                f"signature column {column.name} is {entry.get('type')}, the contract says {column.sql_type}"
            )
    return problems


# --- inference log ingestion ---------------------------------------------------------------------

INFERENCE_TABLE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {INFERENCE_TABLE} (request_id VARCHAR NOT NULL, row_index INTEGER NOT NULL, "
    "logged_at TIMESTAMP NOT NULL, model_version VARCHAR NOT NULL, model_tag VARCHAR NOT NULL, "
    + ", ".join(f"{c.name} {c.sql_type}" for c in MODEL_INPUT_COLUMNS)
    + ", probability DOUBLE NOT NULL, decision BOOLEAN NOT NULL, unknown_categories VARCHAR[] NOT NULL, "
    "latency_ms DOUBLE NOT NULL, source_file VARCHAR NOT NULL, PRIMARY KEY (request_id, row_index))"
)
INFERENCE_FILES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {INFERENCE_FILES_TABLE} (file VARCHAR PRIMARY KEY, bytes_ingested BIGINT NOT NULL, "
    "ingested_at TIMESTAMP NOT NULL)"
)
INFERENCE_COLUMNS: tuple[str, ...] = (
    "request_id",
    "row_index",
    "logged_at",
    "model_version",
    "model_tag",
    *MODEL_INPUT_NAMES,
    "probability",
    "decision",
    "unknown_categories",
    "latency_ms",
    "source_file",
)


@dataclass(frozen=True)
class InferenceIngest:
    """What one ingestion of the inference log files added."""

    files: int
    new_requests: int
    new_rows: int
    total_rows: int
    model_versions: list[str]


def read_new_lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines of a log file after `offset`; returns them and the offset after the last one."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as error:
            raise ValueError(f"{path}: line {number} after byte {offset} is not JSON: {error}") from error
    return records, offset + end


def inference_rows(records: list[dict[str, Any]], source_file: str) -> pd.DataFrame:
    """One row per predicted flight: request identity, the inputs, the answer, the request latency."""
    rows = []
    for record in records:
        logged_at = datetime.fromisoformat(record["logged_at"]).astimezone(timezone.utc).replace(tzinfo=None)
        for index, (inputs, outputs) in enumerate(zip(record["inputs"], record["outputs"], strict=True)):
            rows.append(
                {
                    "request_id": record["request_id"],
                    "row_index": index,
                    "logged_at": logged_at,
                    "model_version": str(record["model_version"]),
                    "model_tag": record["model_tag"],
                    **{name: inputs.get(name) for name in MODEL_INPUT_NAMES},
                    "probability": float(outputs["probability"]),
                    "decision": bool(outputs["decision"]),
                    "unknown_categories": list(outputs.get("unknown_categories", [])),
                    "latency_ms": float(record["latency_ms"]),
                    "source_file": source_file,
                }
            )
    frame = pd.DataFrame(rows, columns=list(INFERENCE_COLUMNS))
    for column in MODEL_INPUT_COLUMNS:
        if column.sql_type != "VARCHAR":
            frame[column.name] = pd.to_numeric(frame[column.name]).astype("float64")
    return frame


def ingest_inference_logs(con: duckdb.DuckDBPyConnection, folder: Path) -> InferenceIngest:
    """Append the new lines of every log file to `inference_log` (idempotent: offsets and a primary key)."""
    con.execute(INFERENCE_TABLE_DDL)
    con.execute(INFERENCE_FILES_DDL)
    done = dict(con.execute(f"SELECT file, bytes_ingested FROM {INFERENCE_FILES_TABLE}").fetchall())
    files = sorted(folder.glob("*.jsonl")) if folder.exists() else []
    new_requests = new_rows = 0
    for path in files:
        offset = int(done.get(path.name, 0))
        if path.stat().st_size < offset:
            offset = 0  # the file was replaced: read it again, the primary key drops what is known
        records, end = read_new_lines(path, offset)
        if end == offset:
            continue
        frame = inference_rows(records, path.name)
        with transaction(con):
            before = con.execute(f"SELECT COUNT(*) FROM {INFERENCE_TABLE}").fetchall()[0][0]
            if len(frame):
                con.register("new_inference_rows", frame)
                columns = ", ".join(INFERENCE_COLUMNS)
                con.execute(
                    f"INSERT OR IGNORE INTO {INFERENCE_TABLE} ({columns}) SELECT {columns} FROM new_inference_rows"
                )
                con.unregister("new_inference_rows")
            con.execute(
                f"INSERT OR REPLACE INTO {INFERENCE_FILES_TABLE} VALUES (?, ?, ?)",
                [path.name, end, datetime.now(timezone.utc).replace(tzinfo=None)],
            )
            new_rows += con.execute(f"SELECT COUNT(*) FROM {INFERENCE_TABLE}").fetchall()[0][0] - before
        new_requests += len(records)
    total = con.execute(f"SELECT COUNT(*) FROM {INFERENCE_TABLE}").fetchall()[0][0]
    found = con.execute(f"SELECT DISTINCT model_version FROM {INFERENCE_TABLE} ORDER BY 1").fetchall()
    versions = [v for (v,) in found]
    return InferenceIngest(len(files), new_requests, int(new_rows), int(total), versions)


# --- command line (also the child-process entry point) ------------------------------------------


def _champion(paths: StatePaths, model_name: str) -> ModelVersion:
    from mlflow import MlflowClient

    from mlops_assets.registry import champion_version

    client = MlflowClient(tracking_uri=paths.mlflow_tracking_uri, registry_uri=paths.mlflow_tracking_uri)
    champion = champion_version(client, model_name)
    if champion is None:
        raise SystemExit(f"no version of {model_name} holds the champion alias yet: run `make demo` first")
    return champion


def main(argv: list[str] | None = None) -> int:
    """`publish`: export a version and build its bento; `serve`: serve the current champion's bento."""
    parser = argparse.ArgumentParser(prog="python -m mlops_assets.serving", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    publish = commands.add_parser("publish", help="export a registered version and build its bento (JSON out)")
    publish.add_argument("--tracking-uri", required=True)
    publish.add_argument("--model-name", default=REGISTERED_MODEL_NAME)
    publish.add_argument("--version", required=True)
    serve = commands.add_parser("serve", help="publish the current champion and serve its bento")
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--model-name", default=REGISTERED_MODEL_NAME)
    args = parser.parse_args(argv)

    if args.command == "publish":
        from mlflow import MlflowClient

        from mlops_assets.registry import model_version

        client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
        version = model_version(client, args.model_name, args.version)
        model_tag = export_model(args.tracking_uri, version)
        bento_tag = build_bento(version, model_tag)
        import bentoml

        threshold = float(bentoml.models.get(model_tag).info.metadata["decision_threshold"])
        published = PublishedBento(
            model_tag=model_tag,
            bento_tag=bento_tag,
            mlflow_model=version.name,
            mlflow_version=version.version,
            run_id=version.run_id,
            threshold=threshold,
            bentoml_home=os.environ["BENTOML_HOME"],
        )
        print(json.dumps(asdict(published)))
        return 0

    paths = StatePaths.from_env()
    champion = _champion(paths, args.model_name)
    published = publish_bento(champion, paths.mlflow_tracking_uri, paths.bentoml_home)
    print(
        f"serving {published.bento_tag} (MLflow {champion.name} v{champion.version}) on http://{args.host}:{args.port}"
    )
    env = bentoml_env(paths.bentoml_home, paths.root)
    command = serve_command(published.bento_tag, args.host, args.port)
    os.execvpe(command[0], command, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
