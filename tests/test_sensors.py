"""Sensor ticks through dg.build_sensor_context against a real (temp, persistent) instance."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from mlops_assets import quarantine
from mlops_assets.defs.automation import DRIFT_CHECK, AutomationPolicy, landing_files
from mlops_assets.demo import drive_sensors, evaluate_tick, execute_request
from mlops_assets.instance import open_instance
from mlops_assets.landing import content_sha256, partition_key_for
from mlops_assets.settings import StatePaths
from tests.conftest import land_days


def _day(flights: pd.DataFrame, month: int, day: int) -> pd.DataFrame:
    return flights[(flights["month"] == str(month)) & (flights["day"] == str(day))]


def _write(path: Path, frame: pd.DataFrame) -> Path:
    path.write_text(frame.to_csv(index=False, lineterminator="\n"))
    return path


@pytest.fixture
def instance(state_paths: StatePaths) -> dg.DagsterInstance:
    """The state folder's persistent instance, with the repo's dagster.yaml."""
    with open_instance(state_paths) as real:
        yield real


def _ingest_pending(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.SensorResult:
    """One landing tick, its partitions added and its runs executed."""
    result = evaluate_tick(defs, instance, "landing_sensor")
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    for request in result.run_requests or []:
        assert execute_request(defs, instance, "landing_sensor", request) is not None
    return result


def _raw_rows(paths: StatePaths, key: str) -> int:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute("SELECT COUNT(*) FROM raw_flights WHERE batch_key = ?", [key]).fetchone()[0]


def test_new_file_becomes_partition_and_run_once(
    defs: dg.Definitions, instance: dg.DagsterInstance, state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    [path] = land_days(state_paths, package_flights, dt.date(2013, 1, 5), dt.date(2013, 1, 5))
    key, sha = partition_key_for(path), content_sha256(path)

    first = evaluate_tick(defs, instance, "landing_sensor")
    [weather] = first.run_requests
    assert weather.job_name == "load_weather"
    assert execute_request(defs, instance, "landing_sensor", weather).success

    second = evaluate_tick(defs, instance, "landing_sensor")
    [request] = second.run_requests
    assert request.job_name == "ingest_batch" and request.partition_key == key == "flights_2013-01-05"
    assert sha[:16] in request.run_key
    assert request.tags["mlops/source_file"] == "flights_2013-01-05.csv"
    assert request.tags["mlops/content_sha256"] == sha
    [add] = second.dynamic_partitions_requests
    assert add.partitions_def_name == "landing_batches" and list(add.partition_keys) == [key]
    assert json.loads(second.cursor) == {path.name: sha}
    instance.add_dynamic_partitions("landing_batches", [key])
    assert execute_request(defs, instance, "landing_sensor", request).success
    assert _raw_rows(state_paths, key) == len(_day(package_flights, 1, 5))

    # Same file: nothing, with the cursor and without it (the instance's runs remember the content).
    assert not evaluate_tick(defs, instance, "landing_sensor", second.cursor).run_requests
    again = evaluate_tick(defs, instance, "landing_sensor")
    assert not again.run_requests and not again.dynamic_partitions_requests
    # The daemon's dedupe: the same run key is never run twice.
    assert execute_request(defs, instance, "landing_sensor", request) is None


def test_changed_file_gets_a_new_run_key_and_replaces_its_partition(
    defs: dg.Definitions, instance: dg.DagsterInstance, state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    [path] = land_days(state_paths, package_flights, dt.date(2013, 2, 10), dt.date(2013, 2, 10))
    dg.materialize([defs.resolve_assets_def("weather")], instance=instance)
    [first] = _ingest_pending(defs, instance).run_requests
    key = partition_key_for(path)
    assert _raw_rows(state_paths, key) == len(_day(package_flights, 2, 10))

    # L08c: a shorter re-upload under the same name replaces the partition's rows.
    _write(path, _day(package_flights, 2, 10).head(25))
    [second] = _ingest_pending(defs, instance).run_requests
    assert second.partition_key == key and second.run_key != first.run_key
    assert _raw_rows(state_paths, key) == 25
    assert not evaluate_tick(defs, instance, "landing_sensor").run_requests


def test_landing_cases_are_ingested_or_quarantined_and_the_sensor_goes_on(
    defs: dg.Definitions, instance: dg.DagsterInstance, state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    landing = state_paths.landing
    day = _day(package_flights, 2, 12)
    # L11: binary garbage with a .csv name, sorted first so the good files come after it.
    (landing / "L11_not_csv_2013-02-12.csv").write_bytes(bytes(range(256)) * 40)
    # L03: required column carrier missing.
    _write(landing / "L03_missing_carrier_2013-02-05.csv", _day(package_flights, 2, 5).head(40).drop(columns="carrier"))
    # L06: header only.
    _write(landing / "L06_header_only_2013-02-08.csv", day.head(0))
    # Values that break the contract past the header: found by raw_flights inside the run.
    bad_types = _day(package_flights, 2, 13).head(60).copy()
    bad_types.loc[bad_types.index[50], "dep_time"] = "soon"
    _write(landing / "M01_bad_types_2013-02-13.csv", bad_types)
    good = _write(landing / "flights_2013-02-14.csv", _day(package_flights, 2, 14))
    # Not batches: a temporary name and a hidden file.
    _write(landing / "flights_2013-02-15.csv.part", _day(package_flights, 2, 15))
    _write(landing / ".flights_2013-02-16.csv", _day(package_flights, 2, 16))
    assert [p.name for p in landing_files(landing)] == [
        "L03_missing_carrier_2013-02-05.csv",
        "L06_header_only_2013-02-08.csv",
        "L11_not_csv_2013-02-12.csv",
        "M01_bad_types_2013-02-13.csv",
        "flights_2013-02-14.csv",
    ]
    dg.materialize([defs.resolve_assets_def("weather")], instance=instance)

    result = _ingest_pending(defs, instance)
    assert sorted(r.partition_key for r in result.run_requests) == [
        "flights_2013-02-14",
        "l06_header_only_2013-02-08",
        "m01_bad_types_2013-02-13",
    ]
    reasons = {e.file_name: e.reason for e in quarantine.list_entries(state_paths.quarantine_db)}
    assert "carrier" in reasons["L03_missing_carrier_2013-02-05.csv"]
    assert "NUL" in reasons["L11_not_csv_2013-02-12.csv"] or "UTF-8" in reasons["L11_not_csv_2013-02-12.csv"]
    assert set(reasons) == {"L03_missing_carrier_2013-02-05.csv", "L11_not_csv_2013-02-12.csv"}
    assert _raw_rows(state_paths, partition_key_for(good)) == len(_day(package_flights, 2, 14))

    # The type error is found inside the run; the failure sensor records it with the run's reason.
    tick = evaluate_tick(defs, instance, "quarantine_failed_ingests")
    entries = {e.file_name: e for e in quarantine.list_entries(state_paths.quarantine_db)}
    bad = entries["M01_bad_types_2013-02-13.csv"]
    assert bad.source == "ingest_batch" and "dep_time (1 values" in bad.reason and bad.run_id
    assert bad.content_sha256 == content_sha256(landing / "M01_bad_types_2013-02-13.csv")
    assert len(entries) == 3
    evaluate_tick(defs, instance, "quarantine_failed_ingests", tick.cursor)
    evaluate_tick(defs, instance, "quarantine_failed_ingests")
    assert len(quarantine.list_entries(state_paths.quarantine_db)) == 3

    # L06: ingested, and its has_rows check says 0 rows; no features for it.
    with duckdb.connect(str(state_paths.warehouse), read_only=True) as con:
        passed, failed = con.execute(
            "SELECT checks_passed, failed_checks FROM landing_batches WHERE batch_key = 'l06_header_only_2013-02-08'"
        ).fetchone()
        features = con.execute("SELECT COUNT(*) FROM flight_features WHERE batch_key LIKE 'l06%'").fetchone()[0]
    assert not passed and "has_rows" in failed and features == 0

    # Files are never modified or deleted, and nothing is requested again.
    assert (landing / "L11_not_csv_2013-02-12.csv").read_bytes() == bytes(range(256)) * 40
    assert not evaluate_tick(defs, instance, "landing_sensor").run_requests
    assert len(quarantine.list_entries(state_paths.quarantine_db)) == 3


@dg.asset(
    name="drift_report",
    group_name="monitoring",
    kinds={"evidently"},
    check_specs=[dg.AssetCheckSpec("drift_below_threshold", asset="drift_report")],
)
def stand_in_drift_report() -> dg.MaterializeResult:
    """Stand-in drift report whose WARN check fails, as the real one does over its threshold."""
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name="drift_below_threshold",
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"drift_share": 0.6},
            )
        ]
    )


@dg.op
def stand_in_training() -> None:
    """Stands for the training steps: only the run of job `retrain` matters to the drift sensor."""


@dg.job(name="retrain")
def stand_in_retrain() -> None:
    stand_in_training()


def _policy(**changes: float) -> dict[str, object]:
    return {"automation_policy": AutomationPolicy(**changes)}


@pytest.mark.slow
def test_retrain_sensor_one_request_for_many_files_with_min_rows_and_cooldown(
    defs: dg.Definitions, instance: dg.DagsterInstance, state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    files = land_days(state_paths, package_flights, dt.date(2013, 1, 1), dt.date(2013, 1, 6))
    assert not drive_sensors(defs, instance, sensors=("retrain_on_new_data",)).runs
    skip = evaluate_tick(defs, instance, "retrain_on_new_data")
    assert skip.skip_reason.skip_message == "no accepted batch since the last retrain"

    drive = drive_sensors(defs, instance, sensors=("landing_sensor",))
    assert drive.count("ingest_batch") == len(files) == 6
    rows = sum(len(_day(package_flights, 1, d)) for d in range(1, 7))
    too_few = evaluate_tick(defs, instance, "retrain_on_new_data", resources=_policy(retrain_min_new_rows=rows + 1))
    assert not too_few.run_requests and f"{rows} new rows in 6 batch(es)" in too_few.skip_reason.skip_message

    [request] = evaluate_tick(defs, instance, "retrain_on_new_data").run_requests
    assert request.tags["mlops/new_batches"] == "6" and request.tags["mlops/new_rows"] == str(rows)
    [same] = evaluate_tick(defs, instance, "retrain_on_new_data").run_requests
    assert same.run_key == request.run_key
    # The retrain itself is the pipeline test's subject; here a run of job `retrain` stands for it.
    assert stand_in_retrain.execute_in_process(instance=instance, tags={"dagster/run_key": request.run_key}).success
    assert not evaluate_tick(
        defs, instance, "retrain_on_new_data", resources=_policy(retrain_cooldown_minutes=0)
    ).run_requests

    land_days(state_paths, package_flights, dt.date(2013, 1, 7), dt.date(2013, 1, 8))
    assert drive_sensors(defs, instance, sensors=("landing_sensor",)).count("ingest_batch") == 2
    cooling = evaluate_tick(defs, instance, "retrain_on_new_data")
    assert not cooling.run_requests and cooling.skip_reason.skip_message.startswith("cooldown")
    [later] = evaluate_tick(
        defs, instance, "retrain_on_new_data", resources=_policy(retrain_cooldown_minutes=0)
    ).run_requests
    assert later.tags["mlops/new_batches"] == "2" and later.run_key != request.run_key


def test_drift_sensor_asks_for_one_retrain_after_a_failed_drift_check(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    assert (
        evaluate_tick(defs, instance, "retrain_on_drift").skip_reason.skip_message
        == "the drift check has not been evaluated yet"
    )
    assert dg.materialize([stand_in_drift_report], instance=instance).success
    record = instance.get_latest_asset_check_evaluation_record(DRIFT_CHECK)
    assert record is not None and record.status.value == "FAILED"

    [request] = evaluate_tick(defs, instance, "retrain_on_drift").run_requests
    assert request.run_key == f"drift:{record.id}" and request.tags["mlops/trigger"] == "drift"
    [same] = evaluate_tick(defs, instance, "retrain_on_drift").run_requests
    assert same.run_key == request.run_key

    # A retrain after the drift finding settles it; a new failed evaluation waits for the cooldown.
    # (Run storage keeps times to the second: space the events like real ones are.)
    time.sleep(1.1)
    assert stand_in_retrain.execute_in_process(instance=instance).success
    assert evaluate_tick(defs, instance, "retrain_on_drift").skip_reason.skip_message.startswith(
        "drift found before the last"
    )
    time.sleep(1.1)
    assert dg.materialize([stand_in_drift_report], instance=instance).success
    assert evaluate_tick(defs, instance, "retrain_on_drift").skip_reason.skip_message.startswith("cooldown")
    no_new_data = evaluate_tick(defs, instance, "retrain_on_drift", resources=_policy(drift_cooldown_minutes=0))
    assert no_new_data.skip_reason.skip_message == "drift found, but no accepted batch landed since the last retrain"
    instance.report_runless_asset_event(
        dg.AssetMaterialization("flight_features", partition="flights_2013-01-09", metadata={"row_count": 900})
    )
    [after] = evaluate_tick(
        defs, instance, "retrain_on_drift", resources=_policy(drift_cooldown_minutes=0)
    ).run_requests
    assert after.run_key != request.run_key
