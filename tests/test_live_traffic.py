"""The demo's traffic rows: the newest day only, typed as the request model wants, weather null when missing."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from mlops_assets.contracts import MODEL_INPUT_NAMES
from mlops_assets.features import FEATURE_TABLE_DDL
from mlops_assets.live_traffic import latest_day_rows


def test_latest_day_rows_are_the_newest_day_json_safe_with_null_weather(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(FEATURE_TABLE_DDL)
    weather = ", ".join("NULL" if name == "wind_gust" else "1.5" for name in MODEL_INPUT_NAMES[9:])
    for day, flight in ((30, 1), (31, 2), (31, 3)):
        con.execute(
            f"INSERT INTO flight_features VALUES ('b{day}', DATE '2013-03-{day}', {flight}, "
            f"2013, 3, {day}, 515, 819, 'UA', 'EWR', 'IAH', 1400.0, {weather}, false)"
        )
    rows = latest_day_rows(con, limit=10)
    assert len(rows) == 2 and {row["day"] for row in rows} == {31}
    assert all(list(row) == list(MODEL_INPUT_NAMES) for row in rows)
    assert rows[0]["wind_gust"] is None and rows[0]["temp"] == 1.5 and rows[0]["sched_dep_time"] == 515
    json.dumps(rows, allow_nan=False)
    assert len(latest_day_rows(con, limit=1)) == 1
