"""The DuckDB warehouse: one file, its tables, and replace-by-partition writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import tenacity
from pydantic import Field

from mlops_assets.contracts import RAW_COLUMNS

RAW_TABLE = "raw_flights"
BATCHES_TABLE = "landing_batches"
WEATHER_TABLE = "weather"
FEATURES_TABLE = "flight_features"
LEDGER_TABLE = "promotion_ledger"
INFERENCE_TABLE = "inference_log"

# DuckDB lets one process hold the file read-write, and no reader in another process meanwhile.
# The Dagster pool serializes writing steps; anything outside it (a reader, a ledger write) waits here.
LOCK_WAIT_SECONDS = 600.0


def _is_lock_conflict(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


_connect_waiting_for_lock = tenacity.retry(
    retry=tenacity.retry_if_exception(_is_lock_conflict),
    wait=tenacity.wait_exponential_jitter(initial=0.05, max=2.0),
    stop=tenacity.stop_after_delay(LOCK_WAIT_SECONDS),
    reraise=True,
)(duckdb.connect)

_RAW_DDL = ", ".join(f"{c.name} {c.sql_type}" for c in RAW_COLUMNS)

SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS {RAW_TABLE} (batch_key VARCHAR NOT NULL, {_RAW_DDL});
CREATE TABLE IF NOT EXISTS {BATCHES_TABLE} (
    batch_key VARCHAR PRIMARY KEY,
    source_file VARCHAR NOT NULL,
    content_sha256 VARCHAR NOT NULL,
    row_count BIGINT NOT NULL,
    extra_columns VARCHAR[] NOT NULL,
    first_flight_date DATE,
    last_flight_date DATE,
    checks_passed BOOLEAN NOT NULL,
    failed_checks VARCHAR[] NOT NULL,
    loaded_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    recorded_at TIMESTAMP NOT NULL,
    action VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL,
    new_version VARCHAR,
    previous_version VARCHAR,
    candidate_metrics JSON,
    champion_metrics JSON,
    reason VARCHAR NOT NULL,
    actor VARCHAR NOT NULL
);
"""


class Warehouse(dg.ConfigurableResource):
    """The DuckDB file that holds raw batches, features, the batch log and the promotion ledger."""

    path: str = Field(description="Path of the DuckDB file; created with its tables on first use.")

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse, its schema ensured, closed on exit; waits while another process holds it."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if read_only and not Path(self.path).exists():
            read_only = False
        con = _connect_waiting_for_lock(self.path, read_only=read_only)
        try:
            if not read_only:
                con.execute(SCHEMA_SQL)
            yield con
        finally:
            con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: a failure rolls back every statement since the start."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether a table exists in the main schema."""
    return bool(
        con.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[0]
    )
