"""Data-quality checks on one raw batch, as SQL over the warehouse; no Dagster here."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from mlops_assets.contracts import NATURAL_KEY
from mlops_assets.warehouse import BATCHES_TABLE, RAW_TABLE

# Columns known at scheduling time must be present; dep_time and arr_delay are legitimately
# null for cancelled flights (over half of some blizzard days), so they are not limited here.
DEFAULT_NULL_LIMITS: dict[str, float] = {
    name: 0.01
    for name in (
        "year",
        "month",
        "day",
        "sched_dep_time",
        "sched_arr_time",
        "carrier",
        "flight",
        "origin",
        "dest",
        "distance",
        "hour",
        "minute",
    )
}

# Each rule: a SQL condition a valid non-null value meets.
RANGE_RULES: dict[str, str] = {
    "distance": "isfinite(distance) AND distance > 0 AND distance < 10000",
    "sched_dep_time": "sched_dep_time BETWEEN 0 AND 2359 AND sched_dep_time % 100 < 60",
    "sched_arr_time": "sched_arr_time BETWEEN 0 AND 2359 AND sched_arr_time % 100 < 60",
    "dep_time": "dep_time BETWEEN 0 AND 2400",
    "arr_time": "arr_time BETWEEN 0 AND 2400",
    "year": "year BETWEEN 1990 AND 2100",
    "month": "month BETWEEN 1 AND 12",
    "day": "day BETWEEN 1 AND 31",
    "hour": "hour BETWEEN 0 AND 23",
    "minute": "minute BETWEEN 0 AND 59",
    "carrier": "regexp_full_match(carrier, '[A-Z0-9]{2}')",
    "origin": "regexp_full_match(origin, '[A-Z]{3}')",
    "dest": "regexp_full_match(dest, '[A-Z]{3}')",
}


@dataclass
class CheckOutcome:
    """The result of one quality check: pass or fail, why, and its figures."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, float | int | str] = field(default_factory=dict)


def check_has_rows(con: duckdb.DuckDBPyConnection, batch_key: str) -> CheckOutcome:
    """A batch must hold at least one flight: an empty file is not data."""
    rows = con.execute(f"SELECT COUNT(*) FROM {RAW_TABLE} WHERE batch_key = ?", [batch_key]).fetchone()[0]
    return CheckOutcome(
        "has_rows",
        rows > 0,
        f"{rows} rows" if rows else "0 rows: the file has a header and no flights",
        {"row_count": int(rows)},
    )


def check_null_shares(con: duckdb.DuckDBPyConnection, batch_key: str, limits: dict[str, float]) -> CheckOutcome:
    """Each limited column's null share must not exceed its limit."""
    shares_sql = ", ".join(f"AVG(CASE WHEN {c} IS NULL THEN 1.0 ELSE 0.0 END) AS {c}" for c in limits)
    row = con.execute(f"SELECT {shares_sql} FROM {RAW_TABLE} WHERE batch_key = ?", [batch_key]).fetchone()
    shares = {c: float(v or 0.0) for c, v in zip(limits, row, strict=True)}
    over = {c: s for c, s in shares.items() if s > limits[c]}
    description = (
        "null shares within limits"
        if not over
        else "; ".join(f"{c} null share {s:.2f} over limit {limits[c]:.2f}" for c, s in over.items())
    )
    metadata: dict[str, float | int | str] = {f"null_share_{c}": round(s, 6) for c, s in shares.items()}
    metadata["columns_over_limit"] = ", ".join(over) or "none"
    return CheckOutcome("null_shares", not over, description, metadata)


def check_value_ranges(con: duckdb.DuckDBPyConnection, batch_key: str) -> CheckOutcome:
    """Every non-null value must be in its column's valid range (finite, positive distance...)."""
    counts_sql = ", ".join(
        f"COUNT(*) FILTER (WHERE {c} IS NOT NULL AND NOT ({rule})) AS {c}" for c, rule in RANGE_RULES.items()
    )
    row = con.execute(f"SELECT {counts_sql} FROM {RAW_TABLE} WHERE batch_key = ?", [batch_key]).fetchone()
    bad = {c: int(n) for c, n in zip(RANGE_RULES, row, strict=True) if n}
    description = "all values in range" if not bad else "; ".join(f"{c}: {n} rows out of range" for c, n in bad.items())
    metadata: dict[str, float | int | str] = {f"out_of_range_{c}": n for c, n in bad.items()}
    metadata["out_of_range_rows_total"] = sum(bad.values())
    return CheckOutcome("value_ranges", not bad, description, metadata)


def check_natural_key_unique(con: duckdb.DuckDBPyConnection, batch_key: str) -> CheckOutcome:
    """A flight appears once in its batch and in no other accepted batch."""
    key = ", ".join(NATURAL_KEY)
    within = con.execute(
        f"SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM {RAW_TABLE} "
        f"WHERE batch_key = ? GROUP BY {key} HAVING COUNT(*) > 1)",
        [batch_key],
    ).fetchone()[0]
    join = " AND ".join(f"o.{c} = b.{c}" for c in NATURAL_KEY)
    across_rows = con.execute(
        f"""
        SELECT o.batch_key, COUNT(*) FROM {RAW_TABLE} b
        JOIN {RAW_TABLE} o ON {join} AND o.batch_key <> b.batch_key
        JOIN {BATCHES_TABLE} l ON l.batch_key = o.batch_key AND l.checks_passed
        WHERE b.batch_key = ? GROUP BY o.batch_key ORDER BY 2 DESC
        """,
        [batch_key],
    ).fetchall()
    across = sum(int(n) for _, n in across_rows)
    problems = []
    if within:
        problems.append(f"{within} duplicate flight keys within the batch")
    if across:
        others = ", ".join(f"{k} ({n})" for k, n in across_rows[:5])
        problems.append(f"{across} flights already loaded by other batches: {others}")
    return CheckOutcome(
        "natural_key_unique",
        not problems,
        "; ".join(problems) or "every flight key is new and unique",
        {
            "duplicate_keys_within_batch": int(within),
            "duplicate_keys_across_batches": across,
            "overlapping_batches": ", ".join(k for k, _ in across_rows) or "none",
        },
    )


def check_label_derivable(
    con: duckdb.DuckDBPyConnection, batch_key: str, max_unlabelled_share: float = 0.05
) -> CheckOutcome:
    """The label needs an arrival delay for every flight that departed and arrived."""
    total, unlabelled, disrupted = con.execute(
        f"""SELECT COUNT(*),
                   COUNT(*) FILTER (WHERE arr_delay IS NULL AND dep_time IS NOT NULL AND arr_time IS NOT NULL),
                   COUNT(*) FILTER (WHERE arr_delay IS NULL OR arr_delay > 15)
            FROM {RAW_TABLE} WHERE batch_key = ?""",
        [batch_key],
    ).fetchone()
    share = unlabelled / total if total else 0.0
    passed = share <= max_unlabelled_share
    return CheckOutcome(
        "label_derivable",
        passed,
        f"{unlabelled} flights arrived without an arrival delay (share {share:.3f}, limit {max_unlabelled_share:.2f})",
        {
            "unlabelled_share": round(share, 6),
            "disrupted_share": round(disrupted / total, 6) if total else 0.0,
        },
    )


def run_batch_checks(
    con: duckdb.DuckDBPyConnection, batch_key: str, null_limits: dict[str, float] | None = None
) -> list[CheckOutcome]:
    """Every quality check of one loaded batch, in a fixed order."""
    return [
        check_has_rows(con, batch_key),
        check_null_shares(con, batch_key, null_limits or DEFAULT_NULL_LIMITS),
        check_value_ranges(con, batch_key),
        check_natural_key_unique(con, batch_key),
        check_label_derivable(con, batch_key),
    ]
