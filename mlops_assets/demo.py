"""`make demo`: land real flight days and let the sensors drive every run, then print what happened.

The sensors are the ones the daemon runs (`make dev`); here their ticks are evaluated in this process
against the real instance of the state folder, and the runs they request are executed in process,
tagged like the daemon tags them, so the same run keys deduplicate in both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import warnings
from dataclasses import dataclass, field

import dagster as dg
from mlflow import MlflowClient

from mlops_assets import quarantine
from mlops_assets.definitions import build_definitions
from mlops_assets.defs.automation import AutomationPolicy
from mlops_assets.instance import open_instance
from mlops_assets.landing_writer import write_landing_days
from mlops_assets.live_traffic import latest_day_rows, running_service, send_traffic
from mlops_assets.registry import champion_version
from mlops_assets.serving import bento_tag_for, publish_bento
from mlops_assets.settings import REGISTERED_MODEL_NAME, StatePaths
from mlops_assets.warehouse import BATCHES_TABLE, Warehouse

RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
DEMO_SENSORS = ("landing_sensor", "quarantine_failed_ingests", "retrain_on_new_data", "retrain_on_drift")


@dataclass
class DriveResult:
    """The runs the sensors asked for and that were executed here, by job."""

    runs: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)

    def add(self, job_name: str, run_id: str, success: bool) -> None:
        self.runs.setdefault(job_name, []).append((run_id, success))

    def count(self, job_name: str) -> int:
        return len(self.runs.get(job_name, []))


def evaluate_tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    sensor_name: str,
    cursor: str | None = None,
    resources: dict[str, object] | None = None,
) -> dg.SensorResult:
    """One tick of a sensor against the instance (what the daemon does), returning its result."""
    sensor = defs.resolve_sensor_def(sensor_name)
    # Resources given here replace the definitions' own: bind the ones this sensor needs.
    available = {**(defs.resources or {}), **(resources or {})}
    bound = {key: available[key] for key in sensor.required_resource_keys}
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, sensor_name=sensor_name, definitions=defs, resources=bound
    )
    return sensor(context)


def execute_request(
    defs: dg.Definitions, instance: dg.DagsterInstance, sensor_name: str, request: dg.RunRequest
) -> dg.ExecuteInProcessResult | None:
    """Run a sensor's request in process, unless a run with its run key exists (the daemon's dedupe)."""
    if request.run_key and instance.get_runs_count(
        filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: sensor_name})
    ):
        return None
    job_name = request.job_name or defs.resolve_sensor_def(sensor_name).job_name
    tags = {**request.tags, SENSOR_NAME_TAG: sensor_name}
    if request.run_key:
        tags[RUN_KEY_TAG] = request.run_key
    tags.pop("dagster/partition", None)
    # The summary tells the story; the full event log is in the Dagster UI.
    run_config = {**(request.run_config or {}), "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_config=run_config,
        tags=tags,
        raise_on_error=False,
    )


def drive_sensors(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    resources: dict[str, object] | None = None,
    sensors: tuple[str, ...] = DEMO_SENSORS,
    max_rounds: int = 10,
) -> DriveResult:
    """Tick every sensor and run what it asks for, round after round, until no sensor asks for more."""
    cursors: dict[str, str | None] = {}
    outcome = DriveResult()
    for _ in range(max_rounds):
        executed = 0
        for name in sensors:
            data = evaluate_tick(defs, instance, name, cursors.get(name), resources)
            cursors[name] = data.cursor
            for request in data.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            for request in data.run_requests or []:
                result = execute_request(defs, instance, name, request)
                if result is not None:
                    executed += 1
                    outcome.add(result.job_def.name, result.run_id, result.success)
        if not executed:
            return outcome
    return outcome


def _parse_day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _run_metadata(instance: dg.DagsterInstance, run_id: str) -> tuple[dict[str, dict], dict[str, object]]:
    """Materialization metadata by asset, and check evaluations by check name, of one run."""
    materialized: dict[str, dict] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        event = entry.asset_materialization
        if event is not None:
            materialized[event.asset_key.to_user_string()] = {k: v.value for k, v in event.metadata.items()}
    checks: dict[str, object] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.asset_check_evaluation_data
        checks[evaluation.check_name] = evaluation
    return materialized, checks


def describe_retrain(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The summary lines of one retrain run: model version, holdout metrics, the gate's decision."""
    materialized, checks = _run_metadata(instance, run_id)
    run = instance.get_run_by_id(run_id)
    trigger = run.tags.get("mlops/trigger", "manual") if run else "?"
    lines = [f"retrain run {run_id[:8]} (trigger: {trigger}, {run.status.value.lower() if run else '?'})"]
    evaluation = materialized.get("candidate_evaluation")
    if evaluation is None:
        failed = [name for name, check in checks.items() if not check.passed]
        lines.append(f"  no candidate evaluated; failed checks: {', '.join(failed) or 'none (see the run log)'}")
        return lines
    lines.append(f"  candidate model version v{evaluation.get('candidate_version')}")

    def figures(prefix: str) -> str:
        return ", ".join(
            f"{name} {evaluation[prefix + name]:.3f}"
            for name in ("roc_auc", "log_loss", "precision", "recall", "f1")
            if prefix + name in evaluation
        )

    lines.append(f"  holdout, candidate:  {figures('candidate_')}")
    lines.append(f"  holdout, base rate:  {figures('base_rate_')}")
    if evaluation.get("champion_version"):
        lines.append(f"  holdout, champion v{evaluation['champion_version']}: {figures('champion_')}")
    gate = checks.get("candidate_beats_champion")
    if gate is None:
        lines.append("  gate: not evaluated")
    else:
        verdict = "PROMOTED" if gate.passed and "champion_model" in materialized else "REFUSED"
        reason = gate.metadata.get("reason")
        lines.append(f"  gate: {verdict} ({reason.value if reason is not None else 'no reason recorded'})")
    return lines


def print_summary(paths: StatePaths, instance: dg.DagsterInstance, drives: list[DriveResult]) -> None:
    """Batches, rows, quarantine, model versions, metrics beside the base rate, the gate, where to look."""
    with Warehouse(path=str(paths.warehouse)).connect(read_only=True) as con:
        batches, passed, rows, accepted_rows = con.execute(
            f"SELECT COUNT(*), COUNT(*) FILTER (WHERE checks_passed), COALESCE(SUM(row_count), 0), "
            f"COALESCE(SUM(row_count) FILTER (WHERE checks_passed), 0) FROM {BATCHES_TABLE}"
        ).fetchone()
        refused = con.execute(
            f"SELECT source_file, failed_checks FROM {BATCHES_TABLE} WHERE NOT checks_passed ORDER BY source_file"
        ).fetchall()
    print("\n=== summary ===")
    print(f"batches loaded: {batches} ({passed} passed their checks), rows: {rows} ({accepted_rows} accepted)")
    for source_file, failed_checks in refused:
        print(f"  refused by its blocking checks, kept in raw_flights only: {source_file} ({', '.join(failed_checks)})")
    entries = quarantine.list_entries(paths.quarantine_db)
    print(f"quarantined files: {len(entries)}")
    for entry in entries:
        print(f"  {entry.file_name}: {entry.reason} (by {entry.source})")
    retrains = [run_id for drive in drives for run_id, _ in drive.runs.get("retrain", [])]
    if not retrains:
        print("no retrain in this demo run: no new accepted batch")
        latest = instance.get_run_records(filters=dg.RunsFilter(job_name="retrain"), limit=1)
        retrains = [latest[0].dagster_run.run_id] if latest else []
        if retrains:
            print("latest retrain:")
    for run_id in retrains:
        print("\n".join(describe_retrain(instance, run_id)))
    client = MlflowClient(tracking_uri=paths.mlflow_tracking_uri, registry_uri=paths.mlflow_tracking_uri)
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{REGISTERED_MODEL_NAME}'"))
    champion = champion_version(client, REGISTERED_MODEL_NAME)
    print(f"model versions: {', '.join(f'v{v}' for v in versions) or 'none'}; champion: ", end="")
    print(f"v{champion.version}" if champion else "none")
    print("Dagster UI: `make dev` -> http://127.0.0.1:3000 (same instance)")
    print(f"MLflow UI: `make mlflow-ui` -> http://127.0.0.1:5000 (store {paths.mlflow_tracking_uri})")
    print(f"reports: {paths.reports}")


def serve_live_traffic(
    paths: StatePaths, instance: dg.DagsterInstance, defs: dg.Definitions, rows: int, single_requests: int
) -> list[str]:
    """Serve the champion's bento, send it real flights of the newest day, ingest the log, measure drift on it."""
    client = MlflowClient(tracking_uri=paths.mlflow_tracking_uri, registry_uri=paths.mlflow_tracking_uri)
    champion = champion_version(client, REGISTERED_MODEL_NAME)
    if champion is None:
        return ["serving: no champion yet, nothing to serve"]
    bento_tag = bento_tag_for(champion)
    built = instance.get_latest_materialization_event(dg.AssetKey("flight_delay_bento"))
    built_tag = built.asset_materialization.metadata.get("bento_tag") if built and built.asset_materialization else None
    if built_tag is None or built_tag.value != bento_tag:
        bento_tag = publish_bento(champion, paths.mlflow_tracking_uri, paths.bentoml_home).bento_tag
    with Warehouse(path=str(paths.warehouse)).connect(read_only=True) as con:
        request_rows = latest_day_rows(con, rows)
    with running_service(paths, bento_tag) as service:
        traffic = send_traffic(service, request_rows, single_requests)
    lines = [
        f"serving: {bento_tag} on {service.url} answered {traffic.requests} requests ({traffic.rows} flights of the "
        f"newest day): statuses {traffic.statuses}, model version(s) {', '.join(traffic.model_versions) or 'none'}",
    ]
    if traffic.example:
        first = traffic.example["predictions"][0]
        lines.append(
            f"  e.g. request {traffic.example['request_id']}: probability {first['probability']:.3f}, "
            f"decision {first['decision']}, model v{traffic.example['model_version']}"
        )
    ingest = execute_job(defs, instance, "ingest_inference_log")
    logged = _run_metadata(instance, ingest.run_id)[0].get("inference_log", {})
    lines.append(
        f"inference_log: {logged.get('new_rows', 0)} new rows ({logged.get('total_rows', 0)} in all), "
        f"model versions {logged.get('model_versions', 'none')}"
    )
    drift = execute_job(
        defs, instance, "monitor_drift", {"ops": {"drift_report": {"config": {"current_source": "live_traffic"}}}}
    )
    materialized, checks = _run_metadata(instance, drift.run_id)
    report = materialized.get("drift_report")
    if report is None:
        lines.append("drift on live traffic: no report (see the monitor_drift run in the Dagster UI)")
    else:
        check = checks.get("drift_below_threshold")
        verdict = "within threshold" if check is not None and check.passed else "over threshold (WARN)"
        lines.append(
            f"drift on live traffic: {report.get('share_of_drifted_columns', 0):.2f} of columns drifted "
            f"({report.get('drifted_columns', '')}), {verdict}; report {report.get('report', '')}"
        )
    return lines


def execute_job(
    defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    """Run a job in process on the instance, console logs at WARNING (the UI has the full event log)."""
    config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, run_config=config, tags={"mlops/trigger": "demo"}, raise_on_error=False
    )


def main(argv: list[str] | None = None) -> int:
    """Land the first stretch of days, let the sensors ingest and retrain, land a later month, again."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--first-day", type=_parse_day, default=dt.date(2013, 1, 1))
    parser.add_argument("--last-day", type=_parse_day, default=dt.date(2013, 2, 28))
    parser.add_argument("--later-first-day", type=_parse_day, default=dt.date(2013, 3, 1))
    parser.add_argument("--later-last-day", type=_parse_day, default=dt.date(2013, 3, 31))
    parser.add_argument(
        "--retrain-cooldown-minutes",
        type=float,
        default=0.0,
        help="The demo lands a month minutes after the first stretch; the platform default is 10.",
    )
    parser.add_argument("--traffic-rows", type=int, default=200, help="Flights sent to the served champion.")
    parser.add_argument("--single-requests", type=int, default=50, help="Of those, sent one request each.")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    started = time.monotonic()
    paths = StatePaths.from_env()
    instance = open_instance(paths)
    defs = build_definitions(paths)
    base = AutomationPolicy.from_env()
    policy = AutomationPolicy(
        retrain_cooldown_minutes=args.retrain_cooldown_minutes,
        retrain_min_new_rows=base.retrain_min_new_rows,
        drift_cooldown_minutes=base.drift_cooldown_minutes,
    )
    resources = {"automation_policy": policy}
    drives = []
    for first, last in ((args.first_day, args.last_day), (args.later_first_day, args.later_last_day)):
        written = write_landing_days(paths.landing, first, last)
        print(f"landed {len(written)} day files {first} .. {last} in {paths.landing}")
        drive = drive_sensors(defs, instance, resources)
        failed = sum(1 for runs in drive.runs.values() for _, ok in runs if not ok)
        counts = ", ".join(f"{job} x{len(runs)}" for job, runs in drive.runs.items()) or "none"
        print(f"  runs requested by the sensors: {counts}; failed: {failed}")
        drives.append(drive)
    print_summary(paths, instance, drives)
    if any(drive.count("retrain") for drive in drives):
        for line in serve_live_traffic(paths, instance, defs, args.traffic_rows, args.single_requests):
            print(line)
    else:
        print("serving: no new model in this demo run, no traffic sent (`make serve` serves the champion)")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
