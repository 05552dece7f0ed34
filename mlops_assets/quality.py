"""Data-quality checks on one raw batch, as SQL over the warehouse; no Dagster here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb

from mlops_assets.contracts import DELAY_THRESHOLD_MINUTES, NATURAL_KEY, RAW_COLUMN_NAMES
from mlops_assets.landing import LandingFileProfile
from mlops_assets.warehouse import BATCHES_TABLE, RAW_TABLE

# Columns known at scheduling time must be present; dep_time and arr_delay are legitimately
# null for cancelled flights (over half of some blizzard days), so they are not limited here.
NULL_LIMITED_COLUMNS: tuple[str, ...] = (
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
DEFAULT_MAX_NULL_SHARE = 0.01
DEFAULT_NULL_LIMITS: dict[str, float] = {name: DEFAULT_MAX_NULL_SHARE for name in NULL_LIMITED_COLUMNS}

# Each rule: a SQL condition a valid non-null value meets. Bounds are wide (the real 2013 data
# sits well inside them): they catch corrupt values, not unusual flights.
RANGE_RULES: dict[str, str] = {
    "distance": "isfinite(distance) AND distance > 0 AND distance < 10000",
    "sched_dep_time": "sched_dep_time BETWEEN 0 AND 2359 AND sched_dep_time % 100 < 60",
    "sched_arr_time": "sched_arr_time BETWEEN 0 AND 2359 AND sched_arr_time % 100 < 60",
    "dep_time": "dep_time BETWEEN 0 AND 2400",
    "arr_time": "arr_time BETWEEN 0 AND 2400",
    # The label is read from arr_delay: an infinite or absurd delay would decide it silently.
    "arr_delay": "isfinite(arr_delay) AND arr_delay BETWEEN -1440 AND 2880",
    "dep_delay": "isfinite(dep_delay) AND dep_delay BETWEEN -1440 AND 2880",
    "air_time": "isfinite(air_time) AND air_time > 0 AND air_time < 1440",
    "year": "year BETWEEN 1990 AND 2100",
    "month": "month BETWEEN 1 AND 12",
    "day": "day BETWEEN 1 AND 31 AND (year IS NULL OR month IS NULL OR TRY(make_date(year, month, day)) IS NOT NULL)",
    "hour": "hour BETWEEN 0 AND 23",
    "minute": "minute BETWEEN 0 AND 59",
    "flight": "flight > 0",
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


def resolve_null_limits(max_null_share: float, column_limits: Mapping[str, float] | None = None) -> dict[str, float]:
    """The null-share limit per column: one default for the scheduled-flight columns, per-column overrides."""
    limits = {name: max_null_share for name in NULL_LIMITED_COLUMNS}
    limits.update(column_limits or {})
    unknown = sorted(set(limits) - set(RAW_COLUMN_NAMES))
    if unknown:
        raise ValueError(f"null-share limits name column(s) outside the raw contract: {', '.join(unknown)}")
    outside = {name: share for name, share in limits.items() if not 0.0 <= share <= 1.0}
    if outside:
        detail = ", ".join(f"{name}={share}" for name, share in outside.items())
        raise ValueError(f"null-share limits must be fractions between 0 and 1: {detail}")
    return limits


def check_schema_contract(profile: LandingFileProfile) -> CheckOutcome:
    """A loaded file met the contract (a file that does not is rejected before loading); extras are reported."""
    extra = ", ".join(profile.extra_columns) or "none"
    description = "required columns present, every value parses as its contract type"
    if profile.extra_columns:
        description += f"; columns outside the contract, not loaded: {extra}"
    return CheckOutcome(
        "schema_contract",
        True,
        description,
        {
            "extra_columns": extra,
            "extra_column_count": len(profile.extra_columns),
            "file_columns": len(profile.columns),
            "file_format": profile.file_format,
            "delimiter": profile.dialect.delimiter,
            "decimal_separator": profile.dialect.decimal_separator,
        },
    )


def _batch_rows(batch_key: str, rows_table: str | None) -> tuple[str, list[object]]:
    """The relation holding the batch's rows, and its parameters.

    Loading passes the staged table so the checks of the batch's own rows cost the same whatever
    the size of the history; without it they read the batch back from raw_flights.
    """
    if rows_table:
        return rows_table, []
    return f"(SELECT * FROM {RAW_TABLE} WHERE batch_key = ?)", [batch_key]


def check_has_rows(con: duckdb.DuckDBPyConnection, batch_key: str, rows_table: str | None = None) -> CheckOutcome:
    """A batch must hold at least one flight: an empty file is not data."""
    rows_sql, params = _batch_rows(batch_key, rows_table)
    rows = con.execute(f"SELECT COUNT(*) FROM {rows_sql}", params).fetchone()[0]
    return CheckOutcome(
        "has_rows",
        rows > 0,
        f"{rows} rows" if rows else "0 rows: the file has a header and no flights",
        {"row_count": int(rows)},
    )


def check_null_shares(
    con: duckdb.DuckDBPyConnection, batch_key: str, limits: Mapping[str, float], rows_table: str | None = None
) -> CheckOutcome:
    """Each limited column's null share must not exceed its limit."""
    rows_sql, params = _batch_rows(batch_key, rows_table)
    shares_sql = ", ".join(f"AVG(CASE WHEN {c} IS NULL THEN 1.0 ELSE 0.0 END) AS {c}" for c in limits)
    row = con.execute(f"SELECT {shares_sql} FROM {rows_sql}", params).fetchone()
    shares = {c: float(v or 0.0) for c, v in zip(limits, row, strict=True)}
    over = {c: s for c, s in shares.items() if s > limits[c]}
    description = (
        "null shares within limits"
        if not over
        else "; ".join(f"{c} null share {s:.2f} over limit {limits[c]:.2f}" for c, s in over.items())
    )
    metadata: dict[str, float | int | str] = {f"null_share_{c}": round(s, 6) for c, s in shares.items()}
    metadata["columns_over_limit"] = ", ".join(over) or "none"
    metadata["max_null_share"] = round(max(shares.values(), default=0.0), 6)
    return CheckOutcome("null_shares", not over, description, metadata)


def check_value_ranges(con: duckdb.DuckDBPyConnection, batch_key: str, rows_table: str | None = None) -> CheckOutcome:
    """Every non-null value must be in its column's valid range (finite, positive distance...)."""
    counts_sql = ", ".join(
        f"COUNT(*) FILTER (WHERE {c} IS NOT NULL AND NOT ({rule})) AS {c}" for c, rule in RANGE_RULES.items()
    )
    rows_sql = " OR ".join(f"({c} IS NOT NULL AND NOT ({rule}))" for c, rule in RANGE_RULES.items())
    source, params = _batch_rows(batch_key, rows_table)
    row = con.execute(f"SELECT {counts_sql}, COUNT(*) FILTER (WHERE {rows_sql}) FROM {source}", params).fetchone()
    bad = {c: int(n) for c, n in zip(RANGE_RULES, row[:-1], strict=True) if n}
    description = "all values in range" if not bad else "; ".join(f"{c}: {n} rows out of range" for c, n in bad.items())
    metadata: dict[str, float | int | str] = {f"out_of_range_{c}": n for c, n in bad.items()}
    metadata["columns_out_of_range"] = ", ".join(bad) or "none"
    metadata["out_of_range_rows_total"] = int(row[-1])
    return CheckOutcome("value_ranges", not bad, description, metadata)


def check_natural_key_unique(
    con: duckdb.DuckDBPyConnection, batch_key: str, rows_table: str | None = None
) -> CheckOutcome:
    """A flight appears once in its batch and in no other accepted batch (the batch itself excluded)."""
    key = ", ".join(NATURAL_KEY)
    rows_sql, params = _batch_rows(batch_key, rows_table)
    within = con.execute(
        f"SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM {rows_sql} "
        f"GROUP BY {key} HAVING COUNT(*) > 1)",
        params,
    ).fetchone()[0]
    across_rows = _overlapping_batches(con, batch_key, rows_sql, params)
    across = sum(n for _, n in across_rows)
    problems = []
    if within:
        problems.append(f"{within} duplicate flight keys within the batch")
    if across:
        others = ", ".join(f"{k} ({n})" for k, n in across_rows[:5])
        problems.append(f"{across} flights already loaded by other accepted batches: {others}")
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


def _overlapping_batches(
    con: duckdb.DuckDBPyConnection, batch_key: str, rows_sql: str, params: list[object]
) -> list[tuple[str, int]]:
    """Other accepted batches holding this batch's flight keys, with the count of shared distinct keys."""
    bounds = con.execute(
        f"SELECT MIN(year), MAX(year), MIN(month), MAX(month), "
        f"MIN(TRY(make_date(year, month, day))), MAX(TRY(make_date(year, month, day))) FROM {rows_sql}",
        params,
    ).fetchone()
    if bounds[0] is None:
        return []
    year_low, year_high, month_low, month_high, first_day, last_day = bounds
    # A shared key means the same (year, month, day), a real date in an accepted batch (its value
    # range check refuses a date that does not exist). So only accepted batches whose recorded date
    # span meets this batch's can share a key: found in landing_batches, without reading the history.
    if first_day is None:
        return []
    candidates = [
        str(row[0])
        for row in con.execute(
            f"SELECT batch_key FROM {BATCHES_TABLE} WHERE checks_passed AND batch_key <> ? "
            "AND (first_flight_date IS NULL OR (first_flight_date <= ? AND last_flight_date >= ?))",
            [batch_key, last_day, first_day],
        ).fetchall()
    ]
    if not candidates:
        return []
    # Only rows of the batch's own years and months can share a key: constant bounds let DuckDB
    # skip row groups of other periods instead of scanning the whole history.
    if year_low != year_high:
        month_low, month_high = 1, 12
    join = " AND ".join(f"o.{c} = b.{c}" for c in NATURAL_KEY)
    rows = con.execute(
        f"""
        WITH b AS (SELECT DISTINCT {", ".join(NATURAL_KEY)} FROM {rows_sql}),
             o AS (SELECT r.* FROM {RAW_TABLE} r
                   JOIN {BATCHES_TABLE} l ON l.batch_key = r.batch_key AND l.checks_passed
                   WHERE r.batch_key <> ? AND list_contains(?, r.batch_key)
                     AND r.year BETWEEN ? AND ? AND r.month BETWEEN ? AND ?)
        SELECT o.batch_key, COUNT(DISTINCT ({", ".join(f"b.{c}" for c in NATURAL_KEY)}))
        FROM b JOIN o ON {join} GROUP BY o.batch_key ORDER BY 2 DESC, 1
        """,
        [*params, batch_key, candidates, year_low, year_high, month_low, month_high],
    ).fetchall()
    return [(str(k), int(n)) for k, n in rows]


def check_label_derivable(
    con: duckdb.DuckDBPyConnection, batch_key: str, max_unlabelled_share: float = 0.05, rows_table: str | None = None
) -> CheckOutcome:
    """The label needs an arrival delay for every flight that departed and arrived."""
    rows_sql, params = _batch_rows(batch_key, rows_table)
    total, unlabelled, disrupted = con.execute(
        f"""SELECT COUNT(*),
                   COUNT(*) FILTER (WHERE arr_delay IS NULL AND dep_time IS NOT NULL AND arr_time IS NOT NULL),
                   COUNT(*) FILTER (WHERE arr_delay IS NULL OR arr_delay > {DELAY_THRESHOLD_MINUTES})
            FROM {rows_sql}""",
        params,
    ).fetchone()
    share = unlabelled / total if total else 0.0
    passed = share <= max_unlabelled_share
    return CheckOutcome(
        "label_derivable",
        passed,
        f"{unlabelled} flights arrived without an arrival delay (share {share:.3f}, limit {max_unlabelled_share:.2f})",
        {
            "unlabelled_rows": int(unlabelled),
            "unlabelled_share": round(share, 6),
            "disrupted_share": round(disrupted / total, 6) if total else 0.0,
        },
    )


def run_batch_checks(
    con: duckdb.DuckDBPyConnection,
    batch_key: str,
    null_limits: Mapping[str, float] | None = None,
    rows_table: str | None = None,
) -> list[CheckOutcome]:
    """Every SQL quality check of one loaded batch, in a fixed order.

    `rows_table` may name a table holding exactly the batch's rows (the staged file); the
    cross-batch key check still compares against the other batches in raw_flights.
    """
    return [
        check_has_rows(con, batch_key, rows_table),
        check_null_shares(con, batch_key, null_limits or DEFAULT_NULL_LIMITS, rows_table),
        check_value_ranges(con, batch_key, rows_table),
        check_natural_key_unique(con, batch_key, rows_table),
        check_label_derivable(con, batch_key, rows_table=rows_table),
    ]
