"""Every benchmark script runs end to end in its --quick mode (tiny sizes, one run): the scripts
do not rot. The figures themselves are measured by `make bench`, never in CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _run_quick(module: str, tmp_path: Path) -> dict:
    work = tmp_path / "work"
    work.mkdir()
    results = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--workdir", str(work), "--results-dir", str(results)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    [written] = list(results.glob("*.json"))
    figure = json.loads(written.read_text())
    assert figure["quick"] is True and figure["machine"]["cores"] >= 1
    return figure


@pytest.mark.slow
def test_fig1_ingestion_quick_loads_every_row_through_each_variant(tmp_path: Path) -> None:
    figure = _run_quick("bench.fig1_ingestion", tmp_path)
    variants = figure["variants"]
    for name in ("duckdb_read_csv", "pandas_then_duckdb", "product_load_batch"):
        assert variants[name]["last"]["rows"] == figure["rows"] == 20_000
    assert variants["product_load_batch"]["last"]["checks_passed"] is True
    assert variants["product_dagster_asset"]["last"]["success"] is True
    ratio = figure["ratios"]["product_load_batch"]
    assert ratio["speed_vs_limit"] > 0 and ratio["peak_memory_vs_limit"] > 0


@pytest.mark.slow
def test_fig2_incremental_quick_loads_the_same_batch_onto_both_histories(tmp_path: Path) -> None:
    figure = _run_quick("bench.fig2_incremental", tmp_path)
    small, large = figure["variants"]["history_3_batches"], figure["variants"]["history_10_batches"]
    assert small["new_batch_rows"] == large["new_batch_rows"] > 0
    assert large["history_rows"] > small["history_rows"] > 0
    assert small["checks_passed"] and large["checks_passed"]
    assert figure["ratios"]["large_vs_small_history"] > 0


@pytest.mark.slow
def test_fig3_orchestration_quick_trains_and_promotes_both_ways(tmp_path: Path) -> None:
    figure = _run_quick("bench.fig3_orchestration", tmp_path)
    plain, dagster = figure["variants"]["plain_script"], figure["variants"]["through_dagster"]
    assert plain["batches"] == dagster["batches"] == figure["batches"] == 2
    # Same data, same seed, same library functions: the same model.
    assert plain["holdout_rows"] == dagster["holdout_rows"] > 0
    assert plain["roc_auc"] == pytest.approx(dagster["roc_auc"])
    assert figure["ratios"]["dagster_vs_plain"] > 0


@pytest.mark.slow
def test_fig5_drift_quick_gives_evidentlys_verdict_on_every_column(tmp_path: Path) -> None:
    figure = _run_quick("bench.fig5_drift", tmp_path)
    product, evidently = figure["variants"]["product_drift_summary"], figure["variants"]["evidently_default"]
    assert figure["current_rows"] == 30_000 and len(figure["columns"]) == 16
    assert figure["verdict_disagreements"] == []
    assert product["drifted_columns"] == evidently["drifted_columns"]
    assert figure["ratios"]["speed_vs_evidently"] > 0


@pytest.mark.slow
def test_fig4_serving_quick_answers_through_both_servers_and_in_process(tmp_path: Path) -> None:
    figure = _run_quick("bench.fig4_serving", tmp_path)
    assert figure["in_process"]["batch_rows"] == 1000 and figure["in_process"]["single_row_p50_ms"] > 0
    for server in ("bentoml", "mlflow"):
        levels = figure["servers"][server]["single_row"]
        assert set(levels) == {"1", "8", "32"}
        assert all(sum(level["requests"]) > 0 for level in levels.values())
        assert figure["servers"][server]["memory_after_load"]["rss_mib"] > 0
    assert figure["servers"]["bentoml"]["batch"]["rows_per_second"]["median"] > 0
    assert figure["ratios"]["throughput_vs_mlflow"]["32"] > 0
