"""`make demo`: land real flight days, run the loop, print what happened."""

from __future__ import annotations

import argparse
import datetime as dt
import time
import warnings

import dagster as dg

from mlops_assets.definitions import build_definitions
from mlops_assets.instance import open_instance
from mlops_assets.landing import content_sha256, partition_key_for
from mlops_assets.landing_writer import write_landing_days
from mlops_assets.settings import StatePaths
from mlops_assets.warehouse import BATCHES_TABLE, Warehouse


def _parse_day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def ingest_new_files(defs: dg.Definitions, instance: dg.DagsterInstance, paths: StatePaths) -> list[str]:
    """Run the ingest job for every landed file whose content is not loaded yet."""
    warehouse = Warehouse(path=str(paths.warehouse))
    with warehouse.connect() as con:
        loaded = dict(con.execute(f"SELECT batch_key, content_sha256 FROM {BATCHES_TABLE}").fetchall())
    new_keys = []
    for path in sorted(paths.landing.glob("*.csv")):
        key = partition_key_for(path)
        if loaded.get(key) != content_sha256(path):
            new_keys.append(key)
    if new_keys:
        instance.add_dynamic_partitions("landing_batches", new_keys)
    job = defs.resolve_job_def("ingest_batch")
    for key in new_keys:
        job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
    return new_keys


def main(argv: list[str] | None = None) -> int:
    """Land the first stretch of days, ingest, retrain, and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--first-day", type=_parse_day, default=dt.date(2013, 1, 1))
    parser.add_argument("--last-day", type=_parse_day, default=dt.date(2013, 2, 28))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    started = time.monotonic()
    paths = StatePaths.from_env()
    instance = open_instance(paths)
    defs = build_definitions(paths)
    written = write_landing_days(paths.landing, args.first_day, args.last_day)
    print(f"landed {len(written)} day files in {paths.landing}")
    if instance.get_latest_materialization_event(dg.AssetKey("weather")) is None:
        dg.materialize([defs.resolve_assets_def("weather")], instance=instance)
    new_keys = ingest_new_files(defs, instance, paths)
    print(f"ingested {len(new_keys)} new batches")
    if new_keys:
        result = defs.resolve_job_def("retrain").execute_in_process(instance=instance, raise_on_error=False)
        print(f"retrain run {result.run_id}: {'succeeded' if result.success else 'failed'}")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
