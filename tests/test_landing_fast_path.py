"""The typed-reader fast path of staging a landing file gives exactly the text path's rows, or steps aside.

`stage_landing_file` first reads a CSV with DuckDB's typed reader; when that read fails for any
reason it falls back to the text path (every column as text, cast in SQL), which alone decides
what is wrong with a file. The fast path is only sound if every value it accepts is typed exactly
as the text path types it: these tests pin that on awkward values, one cell at a time, and on real days.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from mlops_assets.contracts import RAW_COLUMN_NAMES
from mlops_assets.landing import (
    LandingFileError,
    _native_select_sql,
    _stage_text,
    profile_landing_file,
    stage_landing_file,
)

INTEGER_VALUES = [
    "12", " 12", "12 ", "+12", "-0", "1_000", "0x10", "0b11", "1e3", "1E2", "12.0", "12.5", "13.5", "-12.5", ".5",
    "5.", "0012", "2147483647", "2147483648", "-2147483649", "１２", "1e", "0o7", "1__0", "_1", "  ", '"12"', '""',
    '"NA"', "nan", "inf", "12.49999999999999999",
]  # fmt: skip
DOUBLE_VALUES = [
    "12", " 1.5", "1.5 ", "+1.5", "-0", "1_000.5", "0x10", "1e3", "inf", "-inf", "Infinity", "-Infinity", "INF",
    "+inf", "nan", "1.5e400", "1e-400", ".5", "5.", "1e", "１", '"1.5"', '""', "  ", "0x1p3", "1.0.0", "1.5d",
    "1__0", "_1", "1_", "-", "+", ".", "e5",
]  # fmt: skip
TIMESTAMP_VALUES = [
    "2013-01-01T10:00:00Z", "2013-01-01 10:00:00Z", "2013-01-01T10:00:00+00:00", "2013-01-01T10:00:00",
    "2013-1-1T10:00:00Z", "2013-01-01T10:00:00.5Z", "2013-02-30T10:00:00Z", "2013-01-01T24:00:00Z",
    "2013-01-01T10:00:60Z", "2013-01-01T10:00:00z", " 2013-01-01T10:00:00Z", "2013-01-01T10:00:00Z ",
    "2013-01-01T1:0:0Z", "2013-01-01T10:00:00+01:00", "20130101T100000Z", "2013-01-01T10:00:00ZZ",
    "2013-01-01T10:00Z", "+2013-01-01T10:00:00Z", "02013-01-01T10:00:00Z", "2013-001-01T10:00:00Z",
    "-2013-01-01T10:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2012-02-29T10:00:00Z",
]  # fmt: skip
VARCHAR_VALUES = ["UA", " UA ", "  ", '""', '" UA"', "NA", '"NA"', "null", "ü", "A,B"]
CELLS = [
    *(("sched_dep_time", v) for v in INTEGER_VALUES),
    *(("distance", v) for v in DOUBLE_VALUES),
    *(("time_hour", v) for v in TIMESTAMP_VALUES),
    *(("carrier", v) for v in VARCHAR_VALUES),
]


def _staged_rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[object, ...]]:
    return con.execute(f"SELECT {', '.join(RAW_COLUMN_NAMES)} FROM {table}").fetchall()


def _text_outcome(con: duckdb.DuckDBPyConnection, path: Path) -> list[tuple[object, ...]] | str:
    try:
        _stage_text(con, profile_landing_file(path), "text_stage")
    except LandingFileError as error:
        return str(error)
    return _staged_rows(con, "text_stage")


def _assert_fast_path_agrees(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """The fast read either fails, or the text path succeeds with the same rows; True if it read the file."""
    profile = profile_landing_file(path)
    native = _native_select_sql(profile)
    assert native is not None
    text = _text_outcome(con, path)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE fast_stage AS {native}")
    except duckdb.Error:
        return False
    fast = _staged_rows(con, "fast_stage")
    assert not isinstance(text, str), f"{path.name}: fast path read {fast!r} but the text path refused: {text}"
    assert _same_rows(fast, text), f"{path.name}: fast path {fast!r} but text path {text!r}"
    return True


def _same_rows(a: list[tuple[object, ...]], b: list[tuple[object, ...]]) -> bool:
    """Equal rows, NaN equal to NaN; a value's type counts (1 is not 1.0 here)."""
    return len(a) == len(b) and all(
        len(x) == len(y)
        and all(type(u) is type(v) and (u == v or (u != u and v != v)) for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


@pytest.fixture(scope="module")
def day_rows(package_flights: pd.DataFrame) -> pd.DataFrame:
    """Three real flights of one day, as landed text."""
    return package_flights[(package_flights["month"] == "3") & (package_flights["day"] == "4")].head(3)


@pytest.mark.parametrize(("column", "value"), CELLS)
def test_fast_path_types_every_accepted_value_as_the_text_path(
    tmp_path: Path, day_rows: pd.DataFrame, column: str, value: str
) -> None:
    """One awkward cell in a real file: the fast path reads it the text path's way, or leaves the file to it."""
    lines = day_rows.to_csv(index=False, lineterminator="\n").splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index(column)] = value
    path = tmp_path / "cell_2013-03-04.csv"
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n", encoding="utf-8")
    con = duckdb.connect()
    _assert_fast_path_agrees(con, path)
    # Staging as load_batch does gives the text path's outcome whichever path ran.
    text = _text_outcome(con, path)
    try:
        stage_landing_file(con, profile_landing_file(path), "stage")
    except LandingFileError as error:
        assert str(error) == text
    else:
        assert not isinstance(text, str)
        assert _same_rows(_staged_rows(con, "stage"), text)


def test_fast_path_reads_real_days_exactly_as_the_text_path(tmp_path: Path, package_flights: pd.DataFrame) -> None:
    """Real landed days (cancelled flights, NA, every carrier) go through the fast path with the text path's rows."""
    con = duckdb.connect()
    for month, day in [(1, 1), (2, 9), (7, 4), (12, 31)]:
        rows = package_flights[(package_flights["month"] == str(month)) & (package_flights["day"] == str(day))]
        path = tmp_path / f"flights_2013-{month:02d}-{day:02d}.csv"
        rows.to_csv(path, index=False, lineterminator="\n")
        assert _assert_fast_path_agrees(con, path), f"{path.name} did not take the fast path"


def test_semicolon_file_without_decimal_commas_takes_the_fast_path(
    tmp_path: Path, package_flights: pd.DataFrame
) -> None:
    """The fast path honours the sniffed delimiter; decimal-comma files keep the text path."""
    rows = package_flights[(package_flights["month"] == "5") & (package_flights["day"] == "5")].head(30)
    path = tmp_path / "semi_2013-05-05.csv"
    rows.to_csv(path, index=False, sep=";", lineterminator="\n")
    con = duckdb.connect()
    assert _assert_fast_path_agrees(con, path)
    comma = tmp_path / "comma_2013-05-05.csv"
    rows.assign(distance=rows["distance"].astype(str) + ",5").to_csv(comma, index=False, sep=";")
    assert _native_select_sql(profile_landing_file(comma)) is None
