"""The raw batch checks and the all-or-nothing load, as plain functions on real days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from mlops_assets.ingestion import STAGE_TABLE, load_batch
from mlops_assets.landing import LandingFileError, check_types, partition_key_for, profile_landing_file
from mlops_assets.landing_writer import write_landing_days
from mlops_assets.quality import (
    DEFAULT_NULL_LIMITS,
    check_natural_key_unique,
    resolve_null_limits,
    run_batch_checks,
)
from mlops_assets.warehouse import Warehouse


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    with Warehouse(path=str(tmp_path / "warehouse.duckdb")).connect() as connection:
        yield connection


def real_day(tmp_path: Path, flights: pd.DataFrame, day: dt.date) -> Path:
    [path] = write_landing_days(tmp_path / "landing", day, day, flights)
    return path


def snapshot(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple], list[tuple]]:
    raw = con.execute("SELECT * FROM raw_flights ORDER BY ALL").fetchall()
    batches = con.execute("SELECT * FROM landing_batches ORDER BY batch_key").fetchall()
    return raw, batches


def test_every_check_passes_on_a_real_day_with_its_figures(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, package_flights: pd.DataFrame
) -> None:
    path = real_day(tmp_path, package_flights, dt.date(2013, 2, 8))
    expected_rows = len(package_flights.query("month == '2' and day == '8'"))
    batch = load_batch(con, path, partition_key_for(path))
    assert [c.name for c in batch.checks] == [
        "schema_contract",
        "has_rows",
        "null_shares",
        "value_ranges",
        "natural_key_unique",
        "label_derivable",
    ]
    assert batch.checks_passed and batch.row_count == expected_rows
    figures = {c.name: c.metadata for c in batch.checks}
    assert figures["has_rows"]["row_count"] == expected_rows
    assert figures["value_ranges"]["out_of_range_rows_total"] == 0
    assert figures["natural_key_unique"]["duplicate_keys_across_batches"] == 0
    assert figures["null_shares"]["null_share_sched_dep_time"] == 0.0
    # Read back from the warehouse, the plain checks give the same figures as during the load.
    again = {c.name: c.metadata for c in run_batch_checks(con, batch.batch_key)}
    assert again == {name: meta for name, meta in figures.items() if name != "schema_contract"}


def test_natural_key_check_ignores_the_batch_itself_on_rematerialization(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, package_flights: pd.DataFrame
) -> None:
    path = real_day(tmp_path, package_flights, dt.date(2013, 1, 5))
    key = partition_key_for(path)
    first = load_batch(con, path, key)
    second = load_batch(con, path, key)
    keys = [c for c in second.checks if c.name == "natural_key_unique"][0]
    assert first.checks_passed and second.checks_passed
    assert keys.metadata["duplicate_keys_across_batches"] == 0 and keys.metadata["overlapping_batches"] == "none"
    assert check_natural_key_unique(con, key).passed
    assert con.execute("SELECT COUNT(*) FROM raw_flights").fetchone()[0] == first.row_count


def test_natural_key_check_counts_only_accepted_batches_and_spans_months(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, package_flights: pd.DataFrame
) -> None:
    days = package_flights.query("(month == '1' and day == '31') or (month == '2' and day == '1')")
    rejected = tmp_path / "landing" / "two_days_bad.csv"
    rejected.parent.mkdir(parents=True)
    bad = days.copy()
    bad.loc[bad.index[:50], "distance"] = "-1"
    bad.to_csv(rejected, index=False)
    assert not load_batch(con, rejected, "two_days_bad").checks_passed
    # The same flights again: the rejected batch does not count as having loaded them.
    good = tmp_path / "landing" / "two_days.csv"
    days.to_csv(good, index=False)
    assert load_batch(con, good, "two_days").checks_passed
    # One day of them under a third name overlaps the accepted two-month batch.
    [feb_first] = write_landing_days(tmp_path / "other", dt.date(2013, 2, 1), dt.date(2013, 2, 1), package_flights)
    overlap = load_batch(con, feb_first, "feb_first")
    keys = [c for c in overlap.checks if c.name == "natural_key_unique"][0]
    assert not keys.passed
    assert keys.metadata["duplicate_keys_across_batches"] == overlap.row_count
    assert keys.metadata["overlapping_batches"] == "two_days"


def test_duplicate_keys_within_a_batch_are_counted(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, package_flights: pd.DataFrame
) -> None:
    day = package_flights.query("month == '1' and day == '7'")
    path = tmp_path / "doubled.csv"
    pd.concat([day, day.head(12)]).to_csv(path, index=False)
    keys = [c for c in load_batch(con, path, "doubled").checks if c.name == "natural_key_unique"][0]
    assert not keys.passed and keys.metadata["duplicate_keys_within_batch"] == 12
    assert keys.description == "12 duplicate flight keys within the batch"


@pytest.mark.parametrize(
    ("column", "value"),
    [("sched_dep_time", "2460"), ("arr_delay", "inf"), ("carrier", "b6x"), ("day", "30"), ("origin", "JF")],
)
def test_value_ranges_name_each_kind_of_bad_value(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, package_flights: pd.DataFrame, column: str, value: str
) -> None:
    day = package_flights.query("month == '2' and day == '3'").head(30).copy()
    day.loc[day.index[:4], column] = value
    if column == "day":
        day["month"], day["day"] = "2", "30"  # 30 February: every row is a date that does not exist
    path = tmp_path / "bad.csv"
    day.to_csv(path, index=False)
    ranges = [c for c in load_batch(con, path, "bad").checks if c.name == "value_ranges"][0]
    expected = 30 if column == "day" else 4
    assert not ranges.passed and ranges.metadata[f"out_of_range_{column}"] == expected
    assert ranges.metadata["columns_out_of_range"] == column


def test_null_limits_configurable_per_column() -> None:
    limits = resolve_null_limits(0.05, {"sched_dep_time": 0.7, "tailnum": 0.02})
    assert limits["sched_dep_time"] == 0.7 and limits["carrier"] == 0.05 and limits["tailnum"] == 0.02
    assert set(DEFAULT_NULL_LIMITS) < set(limits)
    with pytest.raises(ValueError, match="outside the raw contract: gate"):
        resolve_null_limits(0.01, {"gate": 0.5})
    with pytest.raises(ValueError, match="between 0 and 1: carrier=1.5"):
        resolve_null_limits(0.01, {"carrier": 1.5})


def test_unparseable_value_names_file_column_count_and_example_and_writes_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, package_flights: pd.DataFrame
) -> None:
    path = real_day(tmp_path, package_flights, dt.date(2013, 2, 3))
    key = partition_key_for(path)
    load_batch(con, path, key)
    before = snapshot(con)
    day = package_flights.query("month == '2' and day == '3'").copy()
    day.loc[day.index[-3:], "distance"] = "far"
    day.to_csv(path, index=False)
    with pytest.raises(LandingFileError) as error:
        load_batch(con, path, key)
    assert str(error.value) == (
        "flights_2013-02-03.csv: values that do not parse as their contract type: distance (3 values, e.g. 'far')"
    )
    with pytest.raises(LandingFileError, match=r"distance \(3 values"):
        check_types(con, profile_landing_file(path))
    assert snapshot(con) == before
    assert con.execute(f"SELECT COUNT(*) FROM duckdb_tables() WHERE table_name = '{STAGE_TABLE}'").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("last_line", "problem"),
    [
        ("2013,2,3,1,2,3\n", "CSV Error on Line: 42; Expected Number of Columns: 19 Found: 6"),
        ('2013,2,3,455.0,500,-5.0,625.0,650,-25.0,"US,881\n', "CSV Error on Line: 42; Value with unterminated quote"),
    ],
)
def test_broken_csv_row_is_rejected_naming_line_and_problem_with_nothing_written(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, package_flights: pd.DataFrame, last_line: str, problem: str
) -> None:
    good = real_day(tmp_path, package_flights, dt.date(2013, 1, 9))
    load_batch(con, good, partition_key_for(good))
    before = snapshot(con)
    path = tmp_path / "broken.csv"
    path.write_text(package_flights.query("month == '2' and day == '3'").head(40).to_csv(index=False) + last_line)
    with pytest.raises(LandingFileError) as error:
        load_batch(con, path, "broken")
    assert str(error.value).startswith("broken.csv: unreadable as CSV (")
    assert problem in str(error.value) and "Possible fixes" not in str(error.value)
    assert snapshot(con) == before


def test_decimal_commas_after_the_sniffed_rows_are_rejected_with_the_reason(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, package_flights: pd.DataFrame
) -> None:
    day = package_flights.query("month == '3' and day == '1'").copy()
    day.loc[day.index[400:], "distance"] = day.loc[day.index[400:], "distance"] + ",5"
    path = tmp_path / "late_commas.csv"
    day.to_csv(path, index=False, sep=";")
    with pytest.raises(LandingFileError) as error:
        load_batch(con, path, "late_commas")
    message = str(error.value)
    assert message.startswith("late_commas.csv: values that do not parse as their contract type (decimal commas")
    assert f"distance ({len(day) - 400} values" in message
    assert con.execute("SELECT COUNT(*) FROM raw_flights").fetchone()[0] == 0
