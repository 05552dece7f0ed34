"""Loading one landing file into the warehouse as one batch, checked, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from mlops_assets.contracts import RAW_COLUMN_NAMES
from mlops_assets.landing import (
    LandingFileProfile,
    check_types,
    profile_landing_file,
    typed_select_sql,
)
from mlops_assets.quality import CheckOutcome, run_batch_checks
from mlops_assets.warehouse import BATCHES_TABLE, RAW_TABLE, transaction


@dataclass
class BatchLoad:
    """What loading one batch did: its profile, row count and check outcomes."""

    batch_key: str
    profile: LandingFileProfile
    row_count: int
    checks: list[CheckOutcome]

    @property
    def checks_passed(self) -> bool:
        return all(check.passed for check in self.checks)


def load_batch(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    batch_key: str,
    null_limits: dict[str, float] | None = None,
) -> BatchLoad:
    """Replace the batch's rows with the file's, check them, and record the batch, atomically."""
    profile = profile_landing_file(path)
    check_types(con, profile)
    columns = ", ".join(RAW_COLUMN_NAMES)
    with transaction(con):
        con.execute(f"DELETE FROM {RAW_TABLE} WHERE batch_key = ?", [batch_key])
        con.execute(
            f"INSERT INTO {RAW_TABLE} (batch_key, {columns}) "
            f"SELECT ? AS batch_key, {columns} FROM ({typed_select_sql(profile)})",
            [batch_key],
        )
        checks = run_batch_checks(con, batch_key, null_limits)
        row_count, first_day, last_day = con.execute(
            f"SELECT COUNT(*), MIN(TRY(make_date(year, month, day))), MAX(TRY(make_date(year, month, day))) "
            f"FROM {RAW_TABLE} WHERE batch_key = ?",
            [batch_key],
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
    return BatchLoad(batch_key=batch_key, profile=profile, row_count=int(row_count), checks=checks)
