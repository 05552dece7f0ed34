"""Choosing the training window and its time-ordered holdout from accepted batches."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from mlops_assets.contracts import LABEL
from mlops_assets.quality import CheckOutcome
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


@dataclass(frozen=True)
class TrainingSetMinimums:
    """What a window must hold before a model may be trained and judged on it."""

    min_train_rows: int = 500
    min_rows_per_class: int = 50
    min_holdout_rows: int = 100


_CLASS_NAMES = {0: "on time", 1: "disrupted"}


def check_training_set(data: TrainingSet, minimums: TrainingSetMinimums) -> list[CheckOutcome]:
    """The training-set checks: both classes present, enough rows, enough rows of each class.

    A failed check refuses training; its description says why, with the counts.
    """
    train = data.class_counts("train")
    holdout = data.class_counts("holdout")
    figures: dict[str, float | int | str] = {
        "train_rows": len(data.train),
        "holdout_rows": len(data.holdout),
        "train_on_time_rows": train[0],
        "train_disrupted_rows": train[1],
        "holdout_on_time_rows": holdout[0],
        "holdout_disrupted_rows": holdout[1],
    }

    def describe(counts: dict[int, int]) -> str:
        return ", ".join(f"{counts[label]} {name}" for label, name in _CLASS_NAMES.items())

    train_classes = [_CLASS_NAMES[label] for label, n in train.items() if n]
    holdout_classes = [_CLASS_NAMES[label] for label, n in holdout.items() if n]
    two_classes = len(train_classes) == 2 and len(holdout_classes) == 2
    if two_classes:
        classes_reason = f"both classes present: training {describe(train)}; holdout {describe(holdout)}"
    else:
        parts = []
        if len(train_classes) < 2:
            held = f"{train_classes[0]} flights only" if train_classes else "no flights"
            parts.append(f"the training rows hold {held} ({describe(train)})")
        if len(holdout_classes) < 2:
            held = f"{holdout_classes[0]} flights only" if holdout_classes else "no flights"
            parts.append(f"the holdout holds {held} ({describe(holdout)})")
        classes_reason = "training refused: " + "; ".join(parts) + "; a classifier needs both classes"

    enough_rows = len(data.train) >= minimums.min_train_rows and len(data.holdout) >= minimums.min_holdout_rows
    rows_reason = (
        f"{len(data.train)} training rows (minimum {minimums.min_train_rows}), "
        f"{len(data.holdout)} holdout rows (minimum {minimums.min_holdout_rows})"
    )
    per_class = min(train.values()) >= minimums.min_rows_per_class
    per_class_reason = f"training rows: {describe(train)} (minimum {minimums.min_rows_per_class} of each class)"
    return [
        CheckOutcome("training_set_has_two_classes", two_classes, classes_reason, dict(figures)),
        CheckOutcome(
            "training_set_has_enough_rows",
            enough_rows,
            rows_reason if enough_rows else f"training refused: {rows_reason}",
            dict(figures),
        ),
        CheckOutcome(
            "training_set_has_enough_rows_per_class",
            per_class,
            per_class_reason if per_class else f"training refused: {per_class_reason}",
            {**figures, "min_rows_per_class": minimums.min_rows_per_class},
        ),
    ]
