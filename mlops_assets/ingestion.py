"""Loading one landing file into the warehouse as one batch, checked, all or nothing."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from mlops_assets.contracts import RAW_COLUMN_NAMES
from mlops_assets.landing import LandingFileProfile, content_sha256, profile_landing_file, stage_landing_file
from mlops_assets.quality import CheckOutcome, check_schema_contract, run_batch_checks
from mlops_assets.warehouse import BATCHES_TABLE, RAW_TABLE, transaction

STAGE_TABLE = "landing_stage"


@dataclass
class BatchLoad:
    """What loading one batch did: its profile, row count and check outcomes (schema contract first)."""

    batch_key: str
    profile: LandingFileProfile
    row_count: int
    checks: list[CheckOutcome]

    @property
    def checks_passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed_checks(self) -> list[str]:
        return [check.name for check in self.checks if not check.passed]


def load_batch(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    batch_key: str,
    null_limits: Mapping[str, float] | None = None,
) -> BatchLoad:
    """Replace the batch's rows with the file's, check them, and record the batch, atomically.

    A file that breaks the contract raises LandingFileError before anything is written: the
    batch's previous rows and its landing_batches row stay as they were.
    """
    profile = profile_landing_file(path, hash_content=False)
    columns = ", ".join(RAW_COLUMN_NAMES)
    try:
        # hashlib releases the GIL on large buffers: the file is hashed while DuckDB parses it.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-sha256") as pool:
            digest = pool.submit(content_sha256, path)
            stage_landing_file(con, profile, STAGE_TABLE)
            profile.content_sha256 = digest.result()
        with transaction(con):
            # raw rows and their landing_batches row are written together: a key never recorded
            # has no rows to delete, and skipping the delete spares a scan of the whole history.
            if con.execute(f"SELECT COUNT(*) FROM {BATCHES_TABLE} WHERE batch_key = ?", [batch_key]).fetchone()[0]:
                con.execute(f"DELETE FROM {RAW_TABLE} WHERE batch_key = ?", [batch_key])
            con.execute(
                f"INSERT INTO {RAW_TABLE} (batch_key, {columns}) SELECT ? AS batch_key, {columns} FROM {STAGE_TABLE}",
                [batch_key],
            )
            checks = [
                check_schema_contract(profile),
                *run_batch_checks(con, batch_key, null_limits, rows_table=STAGE_TABLE),
            ]
            row_count, first_day, last_day = con.execute(
                f"SELECT COUNT(*), MIN(TRY(make_date(year, month, day))), MAX(TRY(make_date(year, month, day))) "
                f"FROM {STAGE_TABLE}"
            ).fetchone()
            con.execute(f"DELETE FROM {BATCHES_TABLE} WHERE batch_key = ?", [batch_key])
            con.execute(
                f"INSERT INTO {BATCHES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    batch_key,
                    path.name,
                    profile.content_sha256,
                    row_count,
                    profile.extra_columns,
                    first_day,
                    last_day,
                    all(c.passed for c in checks),
                    [c.name for c in checks if not c.passed],
                    datetime.now(timezone.utc).replace(tzinfo=None),
                ],
            )
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.{STAGE_TABLE}")
    return BatchLoad(batch_key=batch_key, profile=profile, row_count=int(row_count), checks=checks)
