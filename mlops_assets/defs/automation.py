"""Automation: the landing sensor, retraining on new data, on drift and on a schedule.

Sensors keep their state in the Dagster instance (runs, their tags, materializations, check
evaluations) and in the quarantine file; their cursors only save work. None of them opens the
DuckDB warehouse, so no sensor ever competes with a run for its single write lock.
"""

import json
import os
import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets import quarantine
from mlops_assets.defs.ingestion import ingest_batch, landing_batches
from mlops_assets.landing import (
    LANDING_SUFFIXES,
    LandingFileError,
    content_sha256,
    partition_key_for,
    profile_landing_file,
)
from mlops_assets.resources import StateFolder

SOURCE_FILE_TAG = "mlops/source_file"
CONTENT_SHA_TAG = "mlops/content_sha256"
TRIGGER_TAG = "mlops/trigger"
PARTITION_TAG = "dagster/partition"

WEATHER_KEY = dg.AssetKey("weather")
FEATURES_KEY = dg.AssetKey("flight_features")
DRIFT_CHECK = dg.AssetCheckKey(asset_key=dg.AssetKey("drift_report"), name="drift_below_threshold")
RETRAIN_JOB = "retrain"

# Read once when the definitions load (the daemon's process): these shape the definitions themselves.
SENSOR_INTERVAL_SECONDS = int(os.environ.get("MLOPS_SENSOR_INTERVAL_SECONDS", "30"))
RETRAIN_CRON = os.environ.get("MLOPS_RETRAIN_CRON", "0 4 * * 1")

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


class AutomationPolicy(dg.ConfigurableResource):
    """How eagerly the model retrains: cooldowns and the least new data worth a training."""

    retrain_cooldown_minutes: float = Field(
        default=10.0, description="Least time between two retrains started by new data."
    )
    retrain_min_new_rows: int = Field(
        default=1000, description="Fewest new accepted rows (checks passed, features built) that start a retrain."
    )
    drift_cooldown_minutes: float = Field(
        default=60.0, description="Least time between a retrain and a retrain started by drift."
    )

    @classmethod
    def from_env(cls) -> "AutomationPolicy":
        """The defaults, each overridable by an environment variable (MLOPS_RETRAIN_COOLDOWN_MINUTES, ...)."""
        return cls(
            retrain_cooldown_minutes=float(os.environ.get("MLOPS_RETRAIN_COOLDOWN_MINUTES", "10")),
            retrain_min_new_rows=int(os.environ.get("MLOPS_RETRAIN_MIN_NEW_ROWS", "1000")),
            drift_cooldown_minutes=float(os.environ.get("MLOPS_DRIFT_COOLDOWN_MINUTES", "60")),
        )


load_weather = dg.define_asset_job(
    "load_weather", selection=dg.AssetSelection.assets("weather"), description="Load the weather reference table."
)


def landing_files(landing_dir: Path) -> list[Path]:
    """Candidate batch files, by name: CSV and Parquet only; hidden, temporary (.part) names skipped."""
    if not landing_dir.is_dir():
        return []
    return sorted(
        p
        for p in landing_dir.iterdir()
        if p.is_file() and p.suffix.lower() in LANDING_SUFFIXES and not p.name.startswith((".", "~"))
    )


def _in_flight(instance: dg.DagsterInstance, job_name: str) -> int:
    return instance.get_runs_count(filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT))


def _latest_run(instance: dg.DagsterInstance, job_name: str, tags: dict[str, str] | None = None) -> dg.RunRecord | None:
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, tags=tags or {}), limit=1)
    return records[0] if records else None


@dg.sensor(
    name="landing_sensor",
    jobs=[ingest_batch, load_weather],
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Each new or changed landing file becomes a landing_batches partition and an ingest run.",
)
def landing_sensor(context: dg.SensorEvaluationContext, state: StateFolder) -> dg.SensorResult:
    """List the landing folder; request an ingest per new content, quarantine what cannot be read."""
    instance = context.instance
    if instance.get_latest_materialization_event(WEATHER_KEY) is None:
        # flight_features joins the weather table: load it before any batch.
        if _in_flight(instance, load_weather.name):
            return dg.SensorResult(skip_reason="waiting for the weather table to load")
        attempts = instance.get_runs_count(filters=dg.RunsFilter(job_name=load_weather.name))
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"weather:{attempts}", job_name=load_weather.name, tags={TRIGGER_TAG: "landing"})
            ]
        )

    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    db = state.paths.quarantine_db
    files = landing_files(state.landing_dir)
    owners: dict[str, str] = {}
    requests: list[dg.RunRequest] = []
    quarantined = 0
    for path in files:
        try:
            sha = content_sha256(path)
        except OSError as error:
            context.log.warning(f"{path.name}: cannot be read ({error}); trying again next tick")
            continue
        if seen.get(path.name) == sha:
            continue
        seen[path.name] = sha
        if quarantine.is_quarantined(db, path, sha):
            continue
        try:
            key = partition_key_for(path)
            if owners.setdefault(key, path.name) != path.name:
                raise LandingFileError(path, f"partition key {key!r} already belongs to {owners[key]}")
            profile_landing_file(path)
        except LandingFileError as error:
            quarantined += 1
            quarantine.record(db, path, sha, error.problem, source=context.sensor_name or "landing_sensor")
            context.log.warning(f"quarantined {error}")
            continue
        latest = _latest_run(instance, ingest_batch.name, {PARTITION_TAG: key})
        if latest is not None and latest.dagster_run.tags.get(CONTENT_SHA_TAG) == sha:
            continue
        # The previous run's id makes a re-landed earlier content (A, B, then A again) a new request.
        previous = latest.dagster_run.run_id[:8] if latest else "first"
        requests.append(
            dg.RunRequest(
                run_key=f"{key}:{sha[:16]}:{previous}",
                job_name=ingest_batch.name,
                partition_key=key,
                tags={SOURCE_FILE_TAG: path.name, CONTENT_SHA_TAG: sha, TRIGGER_TAG: "landing"},
            )
        )
    # Files that left the folder drop out of the cursor; their partitions and rows stay.
    cursor = json.dumps({name: sha for name, sha in seen.items() if name in {p.name for p in files}}, sort_keys=True)
    known = set(instance.get_dynamic_partitions(landing_batches.name))
    new_keys = sorted({r.partition_key for r in requests if r.partition_key not in known})
    if requests or quarantined:
        context.log.info(f"{len(requests)} ingest run(s) requested, {quarantined} file(s) quarantined")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[landing_batches.build_add_request(new_keys)] if new_keys else [],
        cursor=cursor,
        skip_reason=None if requests else f"no new landing content ({len(files)} files, {quarantined} quarantined)",
    )


def failed_ingest_reason(instance: dg.DagsterInstance, run_id: str) -> tuple[str, str] | None:
    """(file name, problem) when the run's raw_flights step refused its landing file, else None."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is None or event.step_key != "raw_flights":
            continue
        user_failure = event.step_failure_data.user_failure_data
        if user_failure is None or "problem" not in user_failure.metadata:
            continue
        file_name = user_failure.metadata["file"].value if "file" in user_failure.metadata else ""
        return str(file_name), str(user_failure.metadata["problem"].value)
    return None


@dg.sensor(
    name="quarantine_failed_ingests",
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingest runs that refused their file (e.g. values of the wrong type) land in the quarantine table.",
)
def quarantine_failed_ingests(context: dg.SensorEvaluationContext, state: StateFolder) -> dg.SensorResult:
    """Record the reason of every failed ingest whose file broke the contract past its header."""
    after = float(context.cursor) if context.cursor else 0.0
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=ingest_batch.name, statuses=[dg.DagsterRunStatus.FAILURE]),
        limit=500,
    )
    db = state.paths.quarantine_db
    done = quarantine.recorded_run_ids(db)
    newest = after
    recorded = 0
    for record in records:
        updated = record.update_timestamp.timestamp()
        newest = max(newest, updated)
        run = record.dagster_run
        if updated <= after or run.run_id in done:
            continue
        found = failed_ingest_reason(context.instance, run.run_id)
        if found is None:
            continue
        file_name, problem = found
        name = run.tags.get(SOURCE_FILE_TAG) or file_name
        path = state.landing_dir / name
        sha = run.tags.get(CONTENT_SHA_TAG) or (content_sha256(path) if path.is_file() else "")
        quarantine.record(db, path, sha, problem, source=ingest_batch.name, run_id=run.run_id)
        context.log.warning(f"quarantined {name} (run {run.run_id[:8]}): {problem}")
        recorded += 1
    return dg.SensorResult(cursor=str(newest), skip_reason=f"{recorded} failed ingest(s) quarantined")


def new_accepted_batches(instance: dg.DagsterInstance, after_timestamp: float) -> tuple[dict[str, int], int]:
    """Batches whose features were built after a time (their checks passed), their rows, newest storage id."""
    rows: dict[str, int] = {}
    newest = 0
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=FEATURES_KEY, after_timestamp=after_timestamp),
            limit=1000,
            cursor=cursor,
            ascending=True,
        )
        for record in result.records:
            materialization = record.asset_materialization
            if materialization is None or materialization.partition is None:
                continue
            count = materialization.metadata.get("row_count")
            rows[materialization.partition] = int(count.value) if count is not None else 0
            newest = max(newest, record.storage_id)
        if not result.has_more:
            return rows, newest
        cursor = result.cursor


def _last_retrain_time(instance: dg.DagsterInstance) -> float | None:
    latest = _latest_run(instance, RETRAIN_JOB)
    return latest.create_timestamp.timestamp() if latest else None


@dg.sensor(
    name="retrain_on_new_data",
    job_name=RETRAIN_JOB,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrain once accepted batches (checks passed, features built) add enough rows; with a cooldown.",
)
def retrain_on_new_data(context: dg.SensorEvaluationContext, automation_policy: AutomationPolicy) -> dg.SensorResult:
    """One retrain for many landed files: wait for ingestion to settle, the cooldown, and enough new rows."""
    instance = context.instance
    if _in_flight(instance, RETRAIN_JOB):
        return dg.SensorResult(skip_reason="a retrain is already queued or running")
    pending = _in_flight(instance, ingest_batch.name)
    if pending:
        return dg.SensorResult(skip_reason=f"waiting for {pending} ingest run(s) to finish")
    last = _last_retrain_time(instance)
    if last is not None and time.time() - last < automation_policy.retrain_cooldown_minutes * 60:
        return dg.SensorResult(skip_reason=f"cooldown: last retrain {(time.time() - last) / 60:.1f} min ago")
    batches, newest = new_accepted_batches(instance, last or 0.0)
    new_rows = sum(batches.values())
    if not batches:
        return dg.SensorResult(skip_reason="no accepted batch since the last retrain")
    minimum = automation_policy.retrain_min_new_rows
    if new_rows < minimum:
        return dg.SensorResult(skip_reason=f"{new_rows} new rows in {len(batches)} batch(es), below {minimum}")
    context.log.info(f"retrain requested: {len(batches)} new batch(es), {new_rows} rows")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"new-data:{newest}",
                tags={TRIGGER_TAG: "new_data", "mlops/new_batches": str(len(batches)), "mlops/new_rows": str(new_rows)},
            )
        ]
    )


@dg.sensor(
    name="retrain_on_drift",
    job_name=RETRAIN_JOB,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrain when drift_below_threshold failed after the last retrain and new batches landed; cooldown.",
)
def retrain_on_drift(context: dg.SensorEvaluationContext, automation_policy: AutomationPolicy) -> dg.SensorResult:
    """Ask for a retrain when drift_report's WARN check failed since the model was last trained."""
    instance = context.instance
    evaluation = instance.get_latest_asset_check_evaluation_record(DRIFT_CHECK)
    if evaluation is None:
        return dg.SensorResult(skip_reason="the drift check has not been evaluated yet")
    if evaluation.status.value != "FAILED":
        return dg.SensorResult(skip_reason=f"latest drift check: {evaluation.status.value.lower()}")
    last = _last_retrain_time(instance)
    if last is not None and last >= evaluation.create_timestamp:
        return dg.SensorResult(skip_reason="drift found before the last retrain: already handled")
    if _in_flight(instance, RETRAIN_JOB):
        return dg.SensorResult(skip_reason="a retrain is already queued or running")
    if last is not None and time.time() - last < automation_policy.drift_cooldown_minutes * 60:
        return dg.SensorResult(skip_reason=f"cooldown: last retrain {(time.time() - last) / 60:.1f} min ago")
    # Retraining on the window the champion already saw cannot fix drift; it would only add versions.
    if last is not None and not new_accepted_batches(instance, last)[0]:
        return dg.SensorResult(skip_reason="drift found, but no accepted batch landed since the last retrain")
    context.log.info(f"retrain requested: drift check failed in run {evaluation.run_id[:8]}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"drift:{evaluation.id}", tags={TRIGGER_TAG: "drift", "mlops/drift_run": evaluation.run_id}
            )
        ]
    )


periodic_retrain = dg.ScheduleDefinition(
    name="periodic_retrain",
    job_name=RETRAIN_JOB,
    cron_schedule=RETRAIN_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags={TRIGGER_TAG: "schedule"},
    description="Retrain on the current window on a cron (MLOPS_RETRAIN_CRON, default Mondays 04:00 UTC).",
)

defs = dg.Definitions(
    jobs=[load_weather],
    sensors=[landing_sensor, quarantine_failed_ingests, retrain_on_new_data, retrain_on_drift],
    schedules=[periodic_retrain],
    resources={"automation_policy": AutomationPolicy.from_env()},
    # Steps of a run execute in the run's own process: a subprocess per step would import the whole
    # code location again (seconds each on two cores), and DuckDB writes are serialized by the pool anyway.
    executor=dg.in_process_executor,
)
