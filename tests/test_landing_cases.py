"""The bad and awkward landing files (cases L01-L11), rebuilt from the real flights.

Each case file was made from the real rows of the day in its name, read the way pandas reads
flights.csv (floats where a column has gaps), then written as described in the cases README.
The fixtures below make the same files; each test asserts the behaviour that README asks for,
first on the plain functions against a temp DuckDB file, then through the ingest_batch job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlops_assets.contracts import RAW_COLUMN_NAMES
from mlops_assets.ingestion import load_batch
from mlops_assets.landing import LandingFileError, partition_key_for, profile_landing_file
from mlops_assets.quality import run_batch_checks
from mlops_assets.settings import EXPERIMENT_NAME, StatePaths
from mlops_assets.training_data import select_training_set
from mlops_assets.warehouse import Warehouse
from tests.conftest import land_days

CaseBuilder = Callable[[Path], Path]


@pytest.fixture(scope="session")
def numeric_flights(package_flights: pd.DataFrame) -> pd.DataFrame:
    """The real flights typed as pandas reads flights.csv: numbers, NaN for NA, floats where gaps are."""
    frame = package_flights.replace("NA", np.nan)
    for column in frame.columns:
        if column not in ("carrier", "tailnum", "origin", "dest", "time_hour"):
            frame[column] = pd.to_numeric(frame[column])
    return frame


def day_rows(flights: pd.DataFrame, month: int, day: int) -> pd.DataFrame:
    """One 2013 day's flights in file order."""
    return flights[(flights["month"] == month) & (flights["day"] == day)]


@pytest.fixture(scope="session")
def cases(numeric_flights: pd.DataFrame) -> dict[str, CaseBuilder]:
    """Writers of each case file into a folder, under the case file's own name."""
    f = numeric_flights

    def write(folder: Path, name: str, content: str | bytes) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def l07(folder: Path) -> Path:
        rows = day_rows(f, 2, 9).head(40).copy()
        rows["distance"] = rows["distance"].astype(str)
        rows.iloc[:3, rows.columns.get_loc("distance")] = ["inf", "1e300", "-50"]
        return write(folder, "L07_bad_values_2013-02-09.csv", rows.to_csv(index=False))

    def l04(folder: Path) -> Path:
        rows = day_rows(f, 2, 6).head(50).copy()
        rows.iloc[:30, rows.columns.get_loc("sched_dep_time")] = np.nan
        return write(folder, "L04_null_heavy_2013-02-06.csv", rows.to_csv(index=False))

    def l02(folder: Path) -> Path:
        rows = day_rows(f, 2, 4).head(40).copy()
        rows["gate"] = [f"B{n}" for n in np.random.default_rng(2).integers(1, 40, len(rows))]
        return write(folder, "L02_extra_column_2013-02-04.csv", rows.to_csv(index=False))

    def l09(folder: Path) -> Path:
        start = f.index[(f["month"] == 3) & (f["day"] == 1)][0]
        rows = f.loc[start:].head(2500)
        return write(folder, "L09_decimal_comma_2013-03-01.csv", rows.to_csv(index=False, sep=";", decimal=","))

    def l10(folder: Path) -> Path:
        rows = day_rows(f, 2, 11)
        return write(
            folder, "L10_single_class_2013-02-11.csv", rows[rows["arr_delay"] <= 0].head(60).to_csv(index=False)
        )

    first_40 = {
        "L01_expected": lambda d: write(
            d, "L01_expected_2013-02-03.csv", day_rows(f, 2, 3).head(40).to_csv(index=False)
        ),
        "L01": lambda d: write(
            d, "L01_bom_semicolon_2013-02-03.csv", "\ufeff" + day_rows(f, 2, 3).head(40).to_csv(index=False, sep=";")
        ),
        "L03": lambda d: write(
            d,
            "L03_missing_carrier_2013-02-05.csv",
            day_rows(f, 2, 5).head(40).drop(columns="carrier").to_csv(index=False),
        ),
        "L05": lambda d: write(d, "L05_one_row_2013-02-07.csv", day_rows(f, 2, 7).head(1).to_csv(index=False)),
        "L06": lambda d: write(d, "L06_header_only_2013-02-08.csv", day_rows(f, 2, 8).head(0).to_csv(index=False)),
        "L08a": lambda d: write(d, "L08a_2013-02-10.csv", day_rows(f, 2, 10).head(40).to_csv(index=False)),
        "L08b": lambda d: write(d, "L08b_copy_of_2013-02-10.csv", day_rows(f, 2, 10).head(40).to_csv(index=False)),
        "L08c": lambda d: write(
            d, "L08c_reupload_changed_2013-02-10.csv", day_rows(f, 2, 10).head(25).to_csv(index=False)
        ),
        "L11": lambda d: write(d, "L11_not_csv_2013-02-12.csv", bytes(range(256)) * 4),
    }
    return {**first_40, "L02": l02, "L04": l04, "L07": l07, "L09": l09, "L10": l10}


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """A connection to a fresh temp-file warehouse with its tables."""
    with Warehouse(path=str(tmp_path / "warehouse.duckdb")).connect() as connection:
        yield connection


def load(con: duckdb.DuckDBPyConnection, path: Path):
    return load_batch(con, path, partition_key_for(path))


def outcome(batch_checks: list, name: str):
    [found] = [c for c in batch_checks if c.name == name]
    return found


def raw_frame(con: duckdb.DuckDBPyConnection, batch_key: str) -> pd.DataFrame:
    return con.execute(
        f"SELECT {', '.join(RAW_COLUMN_NAMES)} FROM raw_flights WHERE batch_key = ? ORDER BY rowid", [batch_key]
    ).df()


def batch_row(con: duckdb.DuckDBPyConnection, batch_key: str) -> tuple | None:
    return con.execute(
        "SELECT row_count, checks_passed, failed_checks, extra_columns FROM landing_batches WHERE batch_key = ?",
        [batch_key],
    ).fetchone()


def count_rows(con: duckdb.DuckDBPyConnection, batch_key: str) -> int:
    return con.execute("SELECT COUNT(*) FROM raw_flights WHERE batch_key = ?", [batch_key]).fetchone()[0]


# ---------------------------------------------------------------- Dagster helpers


class Ingest:
    """The ingest_batch job for landed files, on one ephemeral instance with weather loaded."""

    def __init__(self, defs: dg.Definitions, paths: StatePaths) -> None:
        self.defs = defs
        self.paths = paths
        self.instance = dg.DagsterInstance.ephemeral()
        assert dg.materialize([defs.resolve_assets_def("weather")], instance=self.instance).success

    def run(self, path: Path, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        key = partition_key_for(path)
        self.instance.add_dynamic_partitions("landing_batches", [key])
        return self.defs.resolve_job_def("ingest_batch").execute_in_process(
            partition_key=key, instance=self.instance, raise_on_error=False, run_config=run_config
        )

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.paths.warehouse), read_only=True) as connection:
            return connection.execute(sql, params or []).fetchall()


@pytest.fixture
def ingest(defs: dg.Definitions, state_paths: StatePaths) -> Ingest:
    return Ingest(defs, state_paths)


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def figure(evaluation: dg.AssetCheckEvaluation, name: str) -> object:
    return evaluation.metadata[name].value


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def step_failure_message(result: dg.ExecuteInProcessResult, step: str) -> str:
    [failure] = [e for e in result.get_step_failure_events() if e.step_key == step]
    return failure.step_failure_data.error.message


def features_count(ingest: Ingest, batch_key: str) -> int:
    tables = {t for (t,) in ingest.query("SELECT table_name FROM information_schema.tables")}
    if "flight_features" not in tables:
        return 0
    return ingest.query("SELECT COUNT(*) FROM flight_features WHERE batch_key = ?", [batch_key])[0][0]


# ---------------------------------------------------------------- L01


def test_L01_bom_semicolon_loads_exactly_the_rows_of_the_expected_comma_file(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    semicolon = cases["L01"](tmp_path / "landing")
    expected = cases["L01_expected"](tmp_path / "expected")
    assert semicolon.read_bytes().startswith(b"\xef\xbb\xbf")
    profile = profile_landing_file(semicolon)
    assert profile.dialect.delimiter == ";" and profile.columns[0] == "year" and len(profile.columns) == 19
    load(con, semicolon)
    load(con, expected)
    got = raw_frame(con, partition_key_for(semicolon))
    want = raw_frame(con, partition_key_for(expected))
    assert len(got) == len(want) == 40
    pd.testing.assert_frame_equal(got, want)
    assert got["carrier"].iloc[0] == "B6" and got["distance"].iloc[0] == 1576.0 and got["dep_time"].iloc[0] == 31.0


def test_L01_bom_semicolon_through_ingest_batch_builds_40_feature_rows(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths
) -> None:
    path = cases["L01"](state_paths.landing)
    result = ingest.run(path)
    assert result.success
    checks = evaluations(result)
    assert all(e.passed for e in checks.values()) and len(checks) == 6
    assert figure(checks["schema_contract"], "delimiter") == ";"
    assert features_count(ingest, partition_key_for(path)) == 40


# ---------------------------------------------------------------- L02


def test_L02_extra_column_loads_known_columns_and_reports_gate(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    older = cases["L01_expected"](tmp_path / "landing")
    load(con, older)
    before = raw_frame(con, partition_key_for(older))
    path = cases["L02"](tmp_path / "landing")
    batch = load(con, path)
    assert batch.checks_passed and batch.row_count == 40
    schema = outcome(batch.checks, "schema_contract")
    assert schema.metadata["extra_columns"] == "gate" and "gate" in schema.description
    assert batch_row(con, batch.batch_key)[3] == ["gate"]
    raw_columns = [r[0] for r in con.execute("DESCRIBE raw_flights").fetchall()]
    assert "gate" not in raw_columns
    pd.testing.assert_frame_equal(raw_frame(con, partition_key_for(older)), before)


def test_L02_extra_column_through_ingest_batch_reports_gate_and_leaves_older_partitions(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths
) -> None:
    older = cases["L01_expected"](state_paths.landing)
    assert ingest.run(older).success
    before = ingest.query("SELECT * FROM raw_flights WHERE batch_key = ? ORDER BY rowid", [partition_key_for(older)])
    result = ingest.run(cases["L02"](state_paths.landing))
    assert result.success
    assert figure(evaluations(result)["schema_contract"], "extra_columns") == "gate"
    [raw] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("raw_flights")]
    assert raw.materialization.metadata["extra_columns"].value == "gate"
    after = ingest.query("SELECT * FROM raw_flights WHERE batch_key = ? ORDER BY rowid", [partition_key_for(older)])
    assert after == before and len(after) == 40


# ---------------------------------------------------------------- L03


def test_L03_missing_carrier_is_rejected_naming_carrier_with_nothing_written(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    path = cases["L03"](tmp_path / "landing")
    with pytest.raises(LandingFileError) as error:
        load(con, path)
    assert error.value.problem == "required column(s) missing: carrier"
    assert str(error.value).startswith("L03_missing_carrier_2013-02-05.csv: ")
    assert count_rows(con, partition_key_for(path)) == 0 and batch_row(con, partition_key_for(path)) is None
    assert load(con, cases["L05"](tmp_path / "landing")).checks_passed


def test_L03_missing_carrier_through_ingest_batch_fails_and_other_files_still_load(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths
) -> None:
    path = cases["L03"](state_paths.landing)
    result = ingest.run(path)
    assert not result.success
    message = step_failure_message(result, "raw_flights")
    assert "L03_missing_carrier_2013-02-05.csv" in message and "carrier" in message
    assert materialized(result) == set()
    key = partition_key_for(path)
    assert ingest.query("SELECT COUNT(*) FROM raw_flights WHERE batch_key = ?", [key]) == [(0,)]
    assert ingest.query("SELECT COUNT(*) FROM landing_batches WHERE batch_key = ?", [key]) == [(0,)]
    other = ingest.run(cases["L02"](state_paths.landing))
    assert (
        other.success
        and features_count(ingest, partition_key_for(state_paths.landing / "L02_extra_column_2013-02-04.csv")) == 40
    )


# ---------------------------------------------------------------- L04


def test_L04_null_heavy_fails_the_null_share_check_with_the_share(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    batch = load(con, cases["L04"](tmp_path / "landing"))
    nulls = outcome(batch.checks, "null_shares")
    assert not nulls.passed and not batch.checks_passed
    assert nulls.metadata["null_share_sched_dep_time"] == 0.6
    assert nulls.metadata["columns_over_limit"] == "sched_dep_time"
    assert "sched_dep_time null share 0.60" in nulls.description
    assert batch_row(con, batch.batch_key)[1:3] == (False, ["null_shares"])
    # The same rows against the plain checks, read back from the warehouse.
    again = outcome(run_batch_checks(con, batch.batch_key), "null_shares")
    assert again.metadata["null_share_sched_dep_time"] == 0.6


def test_L04_null_heavy_through_ingest_batch_blocks_features(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths
) -> None:
    path = cases["L04"](state_paths.landing)
    result = ingest.run(path)
    assert not result.success
    nulls = evaluations(result)["null_shares"]
    assert not nulls.passed and nulls.severity == dg.AssetCheckSeverity.ERROR
    assert figure(nulls, "null_share_sched_dep_time") == 0.6
    assert "flight_features" not in materialized(result)
    assert features_count(ingest, partition_key_for(path)) == 0
    # Across runs too: materializing the features alone is refused.
    alone = dg.materialize(
        [ingest.defs.resolve_assets_def("flight_features")],
        partition_key=partition_key_for(path),
        instance=ingest.instance,
        raise_on_error=False,
    )
    assert not alone.success and "failed its quality checks (null_shares)" in step_failure_message(
        alone, "flight_features"
    )


def test_L04_null_limits_are_configurable_per_column(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths
) -> None:
    config = {"ops": {"raw_flights": {"config": {"column_null_limits": {"sched_dep_time": 0.7}}}}}
    result = ingest.run(cases["L04"](state_paths.landing), run_config=config)
    assert result.success
    assert figure(evaluations(result)["null_shares"], "null_share_sched_dep_time") == 0.6


# ---------------------------------------------------------------- L05


def test_L05_one_row_is_accepted_and_training_explains_why_not(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths
) -> None:
    path = cases["L05"](state_paths.landing)
    result = ingest.run(path)
    assert result.success and features_count(ingest, partition_key_for(path)) == 1
    assert figure(evaluations(result)["has_rows"], "row_count") == 1
    retrain = ingest.defs.resolve_job_def("retrain").execute_in_process(instance=ingest.instance, raise_on_error=False)
    assert not retrain.success
    checks = evaluations(retrain)
    assert not checks["training_set_has_enough_rows"].passed
    assert figure(checks["training_set_has_enough_rows"], "reason") == (
        "training refused: 0 training rows (minimum 500), 1 holdout rows (minimum 100)"
    )
    assert "candidate_model" not in materialized(retrain)
    # The MLflow run opened for this Dagster run is closed as failed, not left running.
    client = MlflowClient(tracking_uri=state_paths.mlflow_tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT_NAME).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"] and mlflow.active_run() is None


# ---------------------------------------------------------------- L06


def test_L06_header_only_gives_a_0_rows_failure_not_counted_as_data(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    good = load(con, cases["L05"](tmp_path / "landing"))
    batch = load(con, cases["L06"](tmp_path / "landing"))
    rows = outcome(batch.checks, "has_rows")
    assert not rows.passed and rows.metadata["row_count"] == 0 and rows.description.startswith("0 rows")
    assert batch_row(con, batch.batch_key)[:3] == (0, False, ["has_rows"])
    assert good.checks_passed


def test_L06_header_only_through_ingest_batch_fails_has_rows_and_training_excludes_it(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    land_days(state_paths, package_flights, dt.date(2013, 2, 7), dt.date(2013, 2, 7))
    assert ingest.run(state_paths.landing / "flights_2013-02-07.csv").success
    path = cases["L06"](state_paths.landing)
    result = ingest.run(path)
    assert not result.success
    rows = evaluations(result)["has_rows"]
    assert not rows.passed and figure(rows, "row_count") == 0 and figure(rows, "reason").startswith("0 rows")
    assert "flight_features" not in materialized(result)
    with duckdb.connect(str(state_paths.warehouse), read_only=True) as connection:
        data = select_training_set(connection, window_days=60, holdout_days=1)
    assert [k for k, _ in data.batches] == ["flights_2013-02-07"]


# ---------------------------------------------------------------- L07


def test_L07_bad_values_fail_range_check_naming_distance(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    batch = load(con, cases["L07"](tmp_path / "landing"))
    ranges = outcome(batch.checks, "value_ranges")
    assert not ranges.passed
    assert ranges.metadata["out_of_range_distance"] == 3 and ranges.metadata["out_of_range_rows_total"] == 3
    assert ranges.metadata["columns_out_of_range"] == "distance"
    assert ranges.description == "distance: 3 rows out of range"
    distances = con.execute(
        "SELECT distance FROM raw_flights WHERE batch_key = ? ORDER BY rowid LIMIT 3", [batch.batch_key]
    ).fetchall()
    assert [d for (d,) in distances] == [float("inf"), 1e300, -50.0]


def test_L07_bad_values_through_ingest_batch_never_reach_a_model(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    land_days(state_paths, package_flights, dt.date(2013, 2, 8), dt.date(2013, 2, 8))
    assert ingest.run(state_paths.landing / "flights_2013-02-08.csv").success
    path = cases["L07"](state_paths.landing)
    result = ingest.run(path)
    assert not result.success
    ranges = evaluations(result)["value_ranges"]
    assert not ranges.passed and figure(ranges, "out_of_range_distance") == 3
    assert "distance" in figure(ranges, "reason")
    assert features_count(ingest, partition_key_for(path)) == 0
    with duckdb.connect(str(state_paths.warehouse), read_only=True) as connection:
        data = select_training_set(connection, window_days=60, holdout_days=1)
    frames = pd.concat([data.train, data.holdout])
    assert partition_key_for(path) not in {k for k, _ in data.batches}
    assert np.isfinite(frames["distance"]).all() and (frames["distance"] > 0).all() and len(frames) > 0


# ---------------------------------------------------------------- L08


def test_L08b_copy_is_detected_as_duplicate_keys_across_batches(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    first = load(con, cases["L08a"](tmp_path / "landing"))
    copy = load(con, cases["L08b"](tmp_path / "landing"))
    assert first.checks_passed and not copy.checks_passed
    keys = outcome(copy.checks, "natural_key_unique")
    assert keys.metadata["duplicate_keys_across_batches"] == 40
    assert keys.metadata["duplicate_keys_within_batch"] == 0
    assert keys.metadata["overlapping_batches"] == "l08a_2013-02-10"
    assert "40 flights already loaded by other accepted batches: l08a_2013-02-10 (40)" in keys.description


def test_L08b_copy_through_ingest_batch_does_not_double_the_day_in_training(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths
) -> None:
    assert ingest.run(cases["L08a"](state_paths.landing)).success
    copy = ingest.run(cases["L08b"](state_paths.landing))
    assert not copy.success
    keys = evaluations(copy)["natural_key_unique"]
    assert not keys.passed and figure(keys, "duplicate_keys_across_batches") == 40
    assert figure(keys, "overlapping_batches") == "l08a_2013-02-10"
    with duckdb.connect(str(state_paths.warehouse), read_only=True) as connection:
        data = select_training_set(connection, window_days=60, holdout_days=1)
    assert len(data.holdout) == 40 and [k for k, _ in data.batches] == ["l08a_2013-02-10"]


def test_L08c_reupload_under_L08a_name_replaces_the_partition_with_25_rows(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    path = cases["L08a"](tmp_path / "landing")
    assert load(con, path).row_count == 40
    shorter = cases["L08c"](tmp_path / "upload")
    path.write_bytes(shorter.read_bytes())
    again = load(con, path)
    assert again.checks_passed and again.row_count == 25
    assert count_rows(con, partition_key_for(path)) == 25
    assert con.execute("SELECT COUNT(*) FROM raw_flights").fetchone()[0] == 25
    assert batch_row(con, partition_key_for(path))[0] == 25


def test_L08c_reupload_through_ingest_batch_rematerializes_25_rows_not_65(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths, tmp_path: Path
) -> None:
    path = cases["L08a"](state_paths.landing)
    assert ingest.run(path).success
    path.write_bytes(cases["L08c"](tmp_path / "upload").read_bytes())
    result = ingest.run(path)
    assert result.success and evaluations(result)["natural_key_unique"].passed
    key = partition_key_for(path)
    assert ingest.query("SELECT COUNT(*) FROM raw_flights") == [(25,)]
    assert features_count(ingest, key) == 25
    [(sha,)] = ingest.query("SELECT content_sha256 FROM landing_batches WHERE batch_key = ?", [key])
    [raw] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("raw_flights")]
    assert raw.materialization.metadata["content_sha256"].value == sha
    assert raw.materialization.metadata["row_count"].value == 25


# ---------------------------------------------------------------- L09


def test_L09_decimal_comma_loads_numbers_after_row_2047_too(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path, numeric_flights: pd.DataFrame
) -> None:
    path = cases["L09"](tmp_path / "landing")
    profile = profile_landing_file(path)
    assert (profile.dialect.delimiter, profile.dialect.decimal_separator) == (";", ",")
    batch = load(con, path)
    assert batch.checks_passed and batch.row_count == 2500
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'raw_flights'"
        ).fetchall()
    )
    assert types["dep_time"] == "DOUBLE" and types["distance"] == "DOUBLE" and types["arr_delay"] == "DOUBLE"
    got = raw_frame(con, batch.batch_key)
    start = numeric_flights.index[(numeric_flights["month"] == 3) & (numeric_flights["day"] == 1)][0]
    want = numeric_flights.loc[start:].head(2500).reset_index(drop=True)
    for column in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "distance", "sched_dep_time"):
        np.testing.assert_array_equal(got[column].to_numpy(dtype=float), want[column].to_numpy(dtype=float))
    late = got.iloc[2048:]
    assert len(late) == 452 and late["dep_time"].notna().sum() > 400 and late["arr_delay"].dtype == np.float64


def test_L09_decimal_comma_through_ingest_batch_builds_numeric_features(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths
) -> None:
    path = cases["L09"](state_paths.landing)
    result = ingest.run(path)
    assert result.success
    assert figure(evaluations(result)["schema_contract"], "decimal_separator") == ","
    [(rows, total)] = ingest.query(
        "SELECT COUNT(*), SUM(distance) FROM flight_features WHERE batch_key = ?", [partition_key_for(path)]
    )
    assert rows == 2500 and total == 2579284.0


# ---------------------------------------------------------------- L10


def test_L10_single_class_is_accepted_and_refused_for_training(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    batch = load(con, cases["L10"](tmp_path / "landing"))
    assert batch.checks_passed and batch.row_count == 60
    assert outcome(batch.checks, "label_derivable").metadata["disrupted_share"] == 0.0


@pytest.mark.slow
def test_L10_single_class_window_is_refused_by_the_training_set_check_and_the_champion_stays(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths, package_flights: pd.DataFrame
) -> None:
    from mlops_assets.registry import champion_version
    from mlops_assets.settings import REGISTERED_MODEL_NAME

    for path in land_days(state_paths, package_flights, dt.date(2013, 1, 1), dt.date(2013, 1, 14)):
        assert ingest.run(path).success
    retrain = ingest.defs.resolve_job_def("retrain")
    assert retrain.execute_in_process(instance=ingest.instance).success
    client = MlflowClient(tracking_uri=state_paths.mlflow_tracking_uri)
    champion = champion_version(client, REGISTERED_MODEL_NAME)
    assert champion is not None

    assert ingest.run(cases["L10"](state_paths.landing)).success
    [later] = land_days(state_paths, package_flights, dt.date(2013, 2, 12), dt.date(2013, 2, 12))
    assert ingest.run(later).success
    # A two-day window: L10's day is the training part, the next real day the holdout.
    window = {"window_days": 2, "holdout_days": 1, "min_train_rows": 50, "min_rows_per_class": 1}
    result = retrain.execute_in_process(
        instance=ingest.instance, run_config={"ops": {"training_set": {"config": window}}}, raise_on_error=False
    )
    assert not result.success
    classes = evaluations(result)["training_set_has_two_classes"]
    assert not classes.passed and classes.severity == dg.AssetCheckSeverity.ERROR
    assert figure(classes, "reason") == (
        "training refused: the training rows hold on time flights only (60 on time, 0 disrupted); "
        "a classifier needs both classes"
    )
    assert figure(classes, "train_rows") == 60
    assert "candidate_model" not in materialized(result)
    assert champion_version(client, REGISTERED_MODEL_NAME).version == champion.version
    assert len(client.search_model_versions(f"name = '{REGISTERED_MODEL_NAME}'")) == 1


# ---------------------------------------------------------------- L11


def test_L11_not_csv_is_rejected_with_the_reason(
    con: duckdb.DuckDBPyConnection, cases: dict[str, CaseBuilder], tmp_path: Path
) -> None:
    path = cases["L11"](tmp_path / "landing")
    with pytest.raises(LandingFileError) as error:
        load(con, path)
    assert str(error.value) == "L11_not_csv_2013-02-12.csv: not a text CSV file (contains NUL bytes)"
    assert con.execute("SELECT COUNT(*) FROM landing_batches").fetchone()[0] == 0


def test_L11_not_csv_through_ingest_batch_fails_with_the_reason_and_writes_nothing(
    ingest: Ingest, cases: dict[str, CaseBuilder], state_paths: StatePaths
) -> None:
    path = cases["L11"](state_paths.landing)
    result = ingest.run(path)
    assert not result.success and materialized(result) == set()
    assert "L11_not_csv_2013-02-12.csv: not a text CSV file (contains NUL bytes)" in step_failure_message(
        result, "raw_flights"
    )
    assert ingest.query("SELECT COUNT(*) FROM raw_flights") == [(0,)]
    assert ingest.run(cases["L05"](state_paths.landing)).success
