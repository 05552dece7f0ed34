"""Reading one landing file against the raw contract, with DuckDB, before anything is written."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from mlops_assets.contracts import RAW_COLUMNS, REQUIRED_RAW_COLUMNS

LANDING_SUFFIXES = (".csv", ".parquet")
NULL_TOKENS = ["", "NA", "NaN", "null", "NULL"]
_SNIFF_BYTES = 64 * 1024
_CANDIDATE_DELIMITERS = (",", ";", "\t", "|")


class LandingFileError(ValueError):
    """A landing file that cannot be loaded; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path.name}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class CsvDialect:
    """How a landing CSV is written: its delimiter and decimal separator."""

    delimiter: str = ","
    decimal_separator: str = "."


@dataclass
class LandingFileProfile:
    """What reading a landing file found: its dialect, columns and content hash."""

    path: Path
    content_sha256: str
    file_format: str
    dialect: CsvDialect
    columns: list[str]
    extra_columns: list[str] = field(default_factory=list)


def content_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def partition_key_for(path: Path) -> str:
    """A partition key from a file name: lower case, letters, digits, `_` and `-` only."""
    key = re.sub(r"[^a-z0-9_-]+", "_", path.stem.lower()).strip("_")
    if not key:
        raise LandingFileError(path, "file name gives an empty partition key")
    return key[:120]


def sniff_csv_dialect(path: Path) -> tuple[CsvDialect, list[str]]:
    """The delimiter and decimal separator of a CSV, from its header and first rows."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head.strip():
        raise LandingFileError(path, "file is empty (no header line)")
    if b"\x00" in head:
        raise LandingFileError(path, "not a text CSV file (contains NUL bytes)")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # A cut in the middle of a multi-byte character at the sniff boundary is fine.
        if error.start < len(head) - 4:
            raise LandingFileError(path, f"not UTF-8 text (bad byte at offset {error.start})") from None
        text = head[: error.start].decode("utf-8-sig")
    lines = text.splitlines()
    header = lines[0]
    delimiter = max(_CANDIDATE_DELIMITERS, key=header.count)
    columns = [c.strip().strip('"') for c in header.split(delimiter)]
    if len(columns) < 2:
        raise LandingFileError(path, "header has one column only: unknown delimiter or not a CSV")
    decimal = "."
    if delimiter != ",":
        sample = [line.split(delimiter) for line in lines[1:200] if line]
        if any(re.fullmatch(r"-?\d+,\d+", value.strip()) for row in sample for value in row):
            decimal = ","
    return CsvDialect(delimiter=delimiter, decimal_separator=decimal), columns


def profile_landing_file(path: Path, hash_content: bool = True) -> LandingFileProfile:
    """Check a landing file's format and header against the contract, without loading rows.

    With `hash_content=False` the profile's content_sha256 is left empty for the caller to fill
    (load_batch hashes the file in a thread while DuckDB reads it).
    """
    if path.suffix.lower() not in LANDING_SUFFIXES:
        raise LandingFileError(path, f"unsupported file type {path.suffix!r} (expected .csv or .parquet)")
    if not path.is_file():
        raise LandingFileError(path, "file does not exist")
    if path.suffix.lower() == ".parquet":
        try:
            columns = [
                row[0] for row in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{_sql_path(path)}')").fetchall()
            ]
        except duckdb.Error as error:
            raise LandingFileError(path, f"unreadable Parquet file ({error})") from None
        dialect, file_format = CsvDialect(), "parquet"
    else:
        dialect, columns = sniff_csv_dialect(path)
        file_format = "csv"
    missing = [name for name in REQUIRED_RAW_COLUMNS if name not in columns]
    if missing:
        raise LandingFileError(path, f"required column(s) missing: {', '.join(missing)}")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise LandingFileError(path, f"column(s) appear twice in the header: {', '.join(duplicated)}")
    known = {c.name for c in RAW_COLUMNS}
    return LandingFileProfile(
        path=path,
        content_sha256=content_sha256(path) if hash_content else "",
        file_format=file_format,
        dialect=dialect,
        columns=columns,
        extra_columns=[c for c in columns if c not in known],
    )


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _source_relation(profile: LandingFileProfile) -> str:
    """A DuckDB relation over the file with every column as text, so types are ours to state."""
    path = _sql_path(profile.path)
    if profile.file_format == "parquet":
        return f"(SELECT * FROM read_parquet('{path}'))"
    nulls = ", ".join(f"'{token}'" for token in NULL_TOKENS)
    delimiter = profile.dialect.delimiter.replace("'", "''")
    return (
        f"read_csv('{path}', header = true, all_varchar = true, delim = '{delimiter}', "
        f"quote = '\"', nullstr = [{nulls}], auto_detect = false, "
        f"columns = {{{', '.join(repr(c) + ': ' + repr('VARCHAR') for c in profile.columns)}}})"
    )


def _typed_expression(name: str, sql_type: str, decimal_separator: str, present: bool) -> str:
    if not present:
        return f"CAST(NULL AS {sql_type}) AS {name}"
    text = f"CAST({name} AS VARCHAR)"
    if sql_type == "VARCHAR":
        return f"NULLIF(TRIM({text}), '') AS {name}"
    if sql_type in ("DOUBLE", "INTEGER") and decimal_separator == ",":
        text = f"REPLACE({text}, ',', '.')"
    if sql_type == "INTEGER":
        # Integers written as 2359.0 by a float-typed exporter are still integers.
        return f"CAST(TRY_CAST(TRIM({text}) AS DOUBLE) AS INTEGER) AS {name}"
    if sql_type == "TIMESTAMP":
        return f"CAST(TRY_CAST(TRIM({text}) AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP) AS {name}"
    return f"TRY_CAST(TRIM({text}) AS {sql_type}) AS {name}"


def typed_select_sql(profile: LandingFileProfile) -> str:
    """SQL selecting the contract columns, typed, from the file (absent optional ones as NULL)."""
    present = set(profile.columns)
    expressions = [
        _typed_expression(c.name, c.sql_type, profile.dialect.decimal_separator, c.name in present) for c in RAW_COLUMNS
    ]
    return f"SELECT {', '.join(expressions)} FROM {_source_relation(profile)}"


def type_violations_sql(profile: LandingFileProfile) -> str:
    """SQL counting, per typed column, the values present in the file that do not parse."""
    counts = [
        f"COUNT(*) FILTER (WHERE {raw} IS NOT NULL AND ({typed}) IS NULL) AS {name}"
        for name, raw, typed in _parsed_columns(profile)
    ]
    return f"SELECT {', '.join(counts)} FROM {_source_relation(profile)}"


def _parsed_columns(profile: LandingFileProfile) -> list[tuple[str, str, str]]:
    """(name, raw text expression, typed expression) of each present column that must parse."""
    present = set(profile.columns)
    parsed = []
    for column in RAW_COLUMNS:
        if column.name not in present or column.sql_type == "VARCHAR":
            continue
        typed = _typed_expression(column.name, column.sql_type, profile.dialect.decimal_separator, True)
        parsed.append((column.name, f"NULLIF(TRIM(CAST({column.name} AS VARCHAR)), '')", typed.rsplit(" AS ", 1)[0]))
    return parsed


def csv_error_summary(message: str) -> str:
    """DuckDB's CSV error in one line: where and what, without its advice on reader options."""
    kept = []
    for line in message.splitlines():
        line = line.strip()
        if line.startswith("Possible fixes"):
            break
        if line and not line.startswith("Original Line"):
            kept.append(line.removeprefix("Invalid Input Error: "))
    return "; ".join(kept) or message.strip()


def _raise_unreadable(profile: LandingFileProfile, error: duckdb.Error) -> None:
    kind = "Parquet" if profile.file_format == "parquet" else "CSV"
    raise LandingFileError(profile.path, f"unreadable as {kind} ({csv_error_summary(str(error))})") from None


def _raise_type_violations(profile: LandingFileProfile, bad: dict[str, tuple[int, str | None]]) -> None:
    detail = ", ".join(f"{name} ({count} values, e.g. {example!r})" for name, (count, example) in bad.items())
    hint = ""
    if (
        profile.dialect.delimiter != ","
        and profile.dialect.decimal_separator == "."
        and any(example and re.fullmatch(r"-?\d+,\d+", example) for _, example in bad.values())
    ):
        hint = " (decimal commas that the first rows did not show)"
    raise LandingFileError(profile.path, f"values that do not parse as their contract type{hint}: {detail}")


def check_types(con: duckdb.DuckDBPyConnection, profile: LandingFileProfile) -> None:
    """Raise if any value in the file does not parse as its contract type (one read of the file)."""
    parsed = _parsed_columns(profile)
    if not parsed:
        return
    examples = ", ".join(
        f"COUNT(*) FILTER (WHERE {raw} IS NOT NULL AND ({typed}) IS NULL), "
        f"MIN({raw}) FILTER (WHERE {raw} IS NOT NULL AND ({typed}) IS NULL)"
        for _, raw, typed in parsed
    )
    try:
        row = con.execute(f"SELECT {examples} FROM {_source_relation(profile)}").fetchone()
    except duckdb.Error as error:
        _raise_unreadable(profile, error)
    bad = {name: (int(row[2 * i]), row[2 * i + 1]) for i, (name, _, _) in enumerate(parsed) if row[2 * i]}
    if bad:
        _raise_type_violations(profile, bad)


STAGE_VIOLATION_PREFIX = "__unparsed_"

# DuckDB's own typed CSV reading, per contract type: integers are read as DOUBLE and cast in SQL,
# exactly as the text path does (a 2359.0 stays 2359, a 12.5 rounds the same way).
_NATIVE_READ_TYPES = {"INTEGER": "DOUBLE", "DOUBLE": "DOUBLE", "TIMESTAMP": "TIMESTAMP", "VARCHAR": "VARCHAR"}
# The landing format of time_hour (UTC, ISO 8601 with Z): any other spelling fails the fast read.
_NATIVE_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _native_select_sql(profile: LandingFileProfile) -> str | None:
    """The contract-typed SELECT through DuckDB's typed CSV reader, or None where only the text path applies.

    The typed reader fails the whole read on any value it cannot parse, and every value it does
    parse equals what the text path's TRY_CAST(TRIM(...)) gives (pinned by tests): so a read that
    succeeds holds the same rows as the text path, with no value that breaks the contract.
    """
    if profile.file_format != "csv" or profile.dialect.decimal_separator != ".":
        return None
    contract = {c.name: c.sql_type for c in RAW_COLUMNS}
    path = _sql_path(profile.path)
    nulls = ", ".join(f"'{token}'" for token in NULL_TOKENS)
    delimiter = profile.dialect.delimiter.replace("'", "''")
    types = ", ".join(
        f"{c!r}: {_NATIVE_READ_TYPES[contract[c]] if c in contract else 'VARCHAR'!r}" for c in profile.columns
    )
    source = (
        f"read_csv('{path}', header = true, delim = '{delimiter}', quote = '\"', nullstr = [{nulls}], "
        f"auto_detect = false, timestampformat = '{_NATIVE_TIMESTAMP_FORMAT}', columns = {{{types}}})"
    )
    present = set(profile.columns)
    expressions = []
    for column in RAW_COLUMNS:
        if column.name not in present:
            expressions.append(f"CAST(NULL AS {column.sql_type}) AS {column.name}")
        elif column.sql_type == "VARCHAR":
            expressions.append(f"NULLIF(TRIM({column.name}), '') AS {column.name}")
        elif column.sql_type == "INTEGER":
            expressions.append(f"CAST({column.name} AS INTEGER) AS {column.name}")
        else:
            expressions.append(column.name)
    return f"SELECT {', '.join(expressions)} FROM {source}"


def stage_landing_file(con: duckdb.DuckDBPyConnection, profile: LandingFileProfile, table: str) -> int:
    """Read the file once into a temp table of contract-typed columns; raise if a value does not parse.

    A CSV is first read with DuckDB's typed reader (no per-value SQL casts); a read that fails for
    any reason falls back to the text path, which alone decides what is wrong with the file.
    Returns the row count.
    """
    native = _native_select_sql(profile)
    if native is not None:
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {native}")
        except duckdb.Error:
            pass
        else:
            return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    return _stage_text(con, profile, table)


def _stage_text(con: duckdb.DuckDBPyConnection, profile: LandingFileProfile, table: str) -> int:
    """Stage through the text path: every column read as text and cast in SQL.

    Each parsed column has a companion `__unparsed_<name>` holding the raw text where it did not
    parse, so the type check reads the staged rows, not the file a second time.
    """
    present = set(profile.columns)
    typed = [
        _typed_expression(c.name, c.sql_type, profile.dialect.decimal_separator, c.name in present) for c in RAW_COLUMNS
    ]
    parsed = _parsed_columns(profile)
    flags = [
        f"CASE WHEN {raw} IS NOT NULL AND ({cast}) IS NULL THEN {raw} END AS {STAGE_VIOLATION_PREFIX}{name}"
        for name, raw, cast in parsed
    ]
    try:
        select = f"SELECT {', '.join(typed + flags)} FROM {_source_relation(profile)}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {select}")
    except duckdb.Error as error:
        _raise_unreadable(profile, error)
    summary = ", ".join(
        [f"COUNT({STAGE_VIOLATION_PREFIX}{name}), MIN({STAGE_VIOLATION_PREFIX}{name})" for name, _, _ in parsed]
        + ["COUNT(*)"]
    )
    row = con.execute(f"SELECT {summary} FROM {table}").fetchone()
    bad = {name: (int(row[2 * i]), row[2 * i + 1]) for i, (name, _, _) in enumerate(parsed) if row[2 * i]}
    if bad:
        _raise_type_violations(profile, bad)
    return int(row[-1])
