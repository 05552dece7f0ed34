"""Choosing the training window and its time-ordered holdout from accepted batches."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from mlops_assets.contracts import LABEL
from mlops_assets.warehouse import BATCHES_TABLE, FEATURES_TABLE, table_exists


@dataclass
class TrainingSet:
    """Rows to fit on, later rows to judge on, and the batches (key, content hash) they came from."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    batches: list[tuple[str, str]] = field(default_factory=list)
    train_dates: tuple[dt.date, dt.date] | None = None
    holdout_dates: tuple[dt.date, dt.date] | None = None

    def class_counts(self, frame_name: str) -> dict[int, int]:
        """Rows per label value in `train` or `holdout`."""
        frame = getattr(self, frame_name)
        counts = frame[LABEL].astype(int).value_counts().to_dict() if len(frame) else {}
        return {label: int(counts.get(label, 0)) for label in (0, 1)}


def select_training_set(con: duckdb.DuckDBPyConnection, window_days: int, holdout_days: int) -> TrainingSet:
    """The last `window_days` flight days of accepted batches; the final `holdout_days` held out."""
    if not table_exists(con, FEATURES_TABLE):
        return TrainingSet(train=pd.DataFrame(), holdout=pd.DataFrame())
    accepted = f"""
        SELECT f.* FROM {FEATURES_TABLE} f
        JOIN {BATCHES_TABLE} b ON b.batch_key = f.batch_key AND b.checks_passed
    """
    last_day = con.execute(f"SELECT MAX(flight_date) FROM ({accepted})").fetchone()[0]
    if last_day is None:
        return TrainingSet(train=pd.DataFrame(), holdout=pd.DataFrame())
    first_day = last_day - dt.timedelta(days=window_days - 1)
    holdout_start = last_day - dt.timedelta(days=holdout_days - 1)
    frame = con.execute(
        f"SELECT * FROM ({accepted}) WHERE flight_date BETWEEN ? AND ? "
        f"ORDER BY flight_date, sched_dep_time, carrier, flight, origin, batch_key",
        [first_day, last_day],
    ).df()
    batches = con.execute(
        f"""SELECT DISTINCT b.batch_key, b.content_sha256 FROM {BATCHES_TABLE} b
            JOIN {FEATURES_TABLE} f ON f.batch_key = b.batch_key
            WHERE b.checks_passed AND f.flight_date BETWEEN ? AND ? ORDER BY 1""",
        [first_day, last_day],
    ).fetchall()
    dates = pd.to_datetime(frame["flight_date"]).dt.date
    train = frame[dates < holdout_start].reset_index(drop=True)
    holdout = frame[dates >= holdout_start].reset_index(drop=True)
    return TrainingSet(
        train=train,
        holdout=holdout,
        batches=[(str(k), str(h)) for k, h in batches],
        train_dates=(first_day, holdout_start - dt.timedelta(days=1)),
        holdout_dates=(holdout_start, last_day),
    )
