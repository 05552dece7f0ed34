"""Feature building: what is known before departure, joined with the origin's weather."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from mlops_assets.contracts import (
    CATEGORICAL_FEATURES,
    DELAY_THRESHOLD_MINUTES,
    LABEL,
    MODEL_INPUT_COLUMNS,
    MODEL_INPUT_NAMES,
    WEATHER_COLUMN_NAMES,
)
from mlops_assets.warehouse import FEATURES_TABLE, RAW_TABLE, WEATHER_TABLE

FEATURE_TABLE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {FEATURES_TABLE} (batch_key VARCHAR NOT NULL, flight_date DATE, "
    f"flight INTEGER, "
    + ", ".join(f"{c.name} {c.sql_type}" for c in MODEL_INPUT_COLUMNS)
    + f", {LABEL} BOOLEAN NOT NULL)"
)

# Columns derived inside the model pipeline from the raw inputs, so serving needs no extra code.
DERIVED_FEATURES: tuple[str, ...] = (
    "day_of_week",
    "dep_hour",
    "dep_minute_of_day",
    "arr_minute_of_day",
    "overnight",
)
MODEL_FEATURES: tuple[str, ...] = (
    *CATEGORICAL_FEATURES,
    "month",
    "distance",
    *DERIVED_FEATURES,
    *WEATHER_COLUMN_NAMES,
)


def feature_partition_sql() -> str:
    """SQL selecting one batch's feature rows (parameter: batch key), weather joined on the hour."""
    schedule = ", ".join(f"f.{c}" for c in MODEL_INPUT_NAMES if c not in WEATHER_COLUMN_NAMES)
    weather = ", ".join(f"w.{c}" for c in WEATHER_COLUMN_NAMES)
    return f"""
        SELECT f.batch_key, make_date(f.year, f.month, f.day) AS flight_date, f.flight,
               {schedule}, {weather},
               (f.arr_delay IS NULL OR f.arr_delay > {DELAY_THRESHOLD_MINUTES}) AS {LABEL}
        FROM {RAW_TABLE} f
        LEFT JOIN {WEATHER_TABLE} w
          ON w.origin = f.origin AND w.year = f.year AND w.month = f.month
         AND w.day = f.day AND w.hour = f.hour
        WHERE f.batch_key = ?
        ORDER BY flight_date, f.sched_dep_time, f.carrier, f.flight, f.origin
    """


def write_feature_partition(con: duckdb.DuckDBPyConnection, batch_key: str) -> int:
    """Replace one batch's rows in the feature table; returns the row count."""
    con.execute(FEATURE_TABLE_DDL)
    con.execute(f"DELETE FROM {FEATURES_TABLE} WHERE batch_key = ?", [batch_key])
    con.execute(f"INSERT INTO {FEATURES_TABLE} {feature_partition_sql()}", [batch_key])
    return int(con.execute(f"SELECT COUNT(*) FROM {FEATURES_TABLE} WHERE batch_key = ?", [batch_key]).fetchone()[0])


def coerce_model_input(frame: pd.DataFrame) -> pd.DataFrame:
    """The model input columns in contract order and types: floats for numbers, str for codes."""
    missing = [c for c in MODEL_INPUT_NAMES if c not in frame.columns]
    if missing:
        raise ValueError(f"model input is missing column(s): {', '.join(missing)}")
    out = pd.DataFrame(index=frame.index)
    for column in MODEL_INPUT_COLUMNS:
        values = frame[column.name]
        if column.sql_type == "VARCHAR":
            out[column.name] = values.astype(object).where(values.notna(), None)
        else:
            out[column.name] = pd.to_numeric(values, errors="raise").astype("float64")
    return out


def _minute_of_day(hhmm: pd.Series) -> pd.Series:
    return (hhmm // 100) * 60 + hhmm % 100


def derive_schedule_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Calendar and clock features from the scheduled fields; the first step of the model."""
    dates = pd.to_datetime(
        pd.DataFrame({"year": frame["year"], "month": frame["month"], "day": frame["day"]}),
        errors="coerce",
    )
    dep = _minute_of_day(frame["sched_dep_time"].astype("float64"))
    arr = _minute_of_day(frame["sched_arr_time"].astype("float64"))
    derived = pd.DataFrame(
        {
            "day_of_week": dates.dt.dayofweek.astype("float64"),
            "dep_hour": np.floor(frame["sched_dep_time"].astype("float64") / 100),
            "dep_minute_of_day": dep,
            "arr_minute_of_day": arr,
            "overnight": (arr < dep).astype("float64"),
        },
        index=frame.index,
    )
    return pd.concat([frame, derived], axis=1)[list(MODEL_FEATURES)]


class ScheduleFeatures(TransformerMixin, BaseEstimator):
    """Pipeline step that adds the calendar and clock features (stateless)."""

    def fit(self, frame: pd.DataFrame, y: object = None) -> ScheduleFeatures:
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return derive_schedule_features(frame)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(MODEL_FEATURES, dtype=object)
