"""The operator CLI in-process over a real MLflow store and DuckDB ledger in a temp state folder."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from mlflow import MlflowClient

from mlops_assets import cli
from mlops_assets.promotion import PROMOTED, REFUSED, ROLLBACK, move_champion, read_ledger, record_ledger_row
from mlops_assets.registry import ModelVersion, champion_holders, champion_version, tag_gate_result
from mlops_assets.settings import StatePaths
from mlops_assets.warehouse import Warehouse
from tests.test_promotion import NAME, register_versions


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass
class Registry:
    client: MlflowClient
    warehouse: Warehouse
    versions: list[ModelVersion]
    before_any: dt.datetime
    while_v1: dt.datetime
    while_v2: dt.datetime

    def ledger(self) -> list:
        with self.warehouse.connect(read_only=True) as con:
            return read_ledger(con, NAME)


@pytest.fixture
def registry(mlflow_store: StatePaths) -> Registry:
    """v1 and v2 promoted through the gate, v3 refused by it, v4 never gated; v2 is champion."""
    state_paths = mlflow_store
    client = MlflowClient(tracking_uri=state_paths.mlflow_tracking_uri, registry_uri=state_paths.mlflow_tracking_uri)
    warehouse = Warehouse(path=str(state_paths.warehouse))
    v1, v2, v3, v4 = register_versions(client, state_paths, [0.61, 0.63, 0.40, 0.62])
    before_any = utc_now()
    for version in (v1, v2):
        tag_gate_result(client, version, True, f"v{version.version} not worse")
        move_champion(client, warehouse, version, PROMOTED, "passed the promotion gate", "promotion_gate")
        if version is v1:
            while_v1 = utc_now()
    while_v2 = utc_now()
    tag_gate_result(client, v3, False, "candidate v3 roc_auc 0.4000 misses the floor (at least 0.5500)")
    with warehouse.connect() as con:
        record_ledger_row(con, REFUSED, NAME, "3", "2", {"roc_auc": 0.4}, {"roc_auc": 0.63}, "misses", "promotion_gate")
    return Registry(client, warehouse, [v1, v2, v3, v4], before_any, while_v1, while_v2)


def test_status_names_the_champion_its_metrics_and_the_gate_results(registry: Registry) -> None:
    code, out, err = run_cli("status")
    assert code == cli.EXIT_OK, err
    assert "champion: v2, since " in out and "(promoted by promotion_gate)" in out
    assert "holdout metrics at its evaluation: roc_auc 0.6300, log_loss 0.2700" in out
    lines = out.splitlines()
    v3 = next(line for line in lines if line.startswith("  v3"))
    assert "gate refused" in v3 and "roc_auc 0.4000" in v3 and "misses the floor" in v3
    assert "gate not run" in next(line for line in lines if line.startswith("  v4"))
    assert "[champion]" in next(line for line in lines if line.startswith("  v2"))
    assert "drift: no drift report yet" in out


def test_status_shows_the_last_drift_figures(registry: Registry, state_paths: StatePaths) -> None:
    state_paths.reports.mkdir(parents=True, exist_ok=True)
    summary = {
        "share_of_drifted_columns": 0.25,
        "drifted_columns": ["temp", "dewp"],
        "generated_at": "2024-05-01T12:00Z",
    }
    (state_paths.reports / "drift_summary.json").write_text(json.dumps(summary))
    code, out, _ = run_cli("status")
    assert code == cli.EXIT_OK
    assert (
        "drift: share of drifted columns 0.2500, 2 drifted column(s): temp, dewp (report generated 2024-05-01T12:00Z)"
        in out
    )


def test_rollback_then_history_at_earlier_times_name_the_right_versions(registry: Registry) -> None:
    code, out, err = run_cli("rollback", "--reason", "latency regression")
    assert code == cli.EXIT_OK, err
    assert "champion: v2 -> v1 (rollback" in out and "flight_delay_bento" in out
    assert champion_version(registry.client, NAME) == registry.versions[0]
    assert champion_holders(registry.client, NAME) == ["1"]
    last = registry.ledger()[-1]
    assert (last.action, last.new_version, last.previous_version, last.actor) == (ROLLBACK, "1", "2", "operator")
    assert last.reason == "rollback from v2: latency regression"
    assert last.candidate_metrics == {"log_loss": pytest.approx(0.29), "roc_auc": 0.61}

    for at, expected in [(registry.while_v1, "v1"), (registry.while_v2, "v2"), (utc_now(), "v1")]:
        code, out, _ = run_cli("history", "--at", at.isoformat() + "Z")
        assert code == cli.EXIT_OK
        assert f"the champion was {expected} " in out
    # The same instant written with an offset names the same version.
    local = registry.while_v2.replace(tzinfo=dt.timezone.utc).astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert "the champion was v2 " in run_cli("history", "--at", local.isoformat())[1]

    code, _, err = run_cli("history", "--at", registry.before_any.isoformat())
    assert code == cli.EXIT_NO_CHAMPION_AT_TIME and "no version was champion" in err

    code, out, _ = run_cli("history")
    assert code == cli.EXIT_OK
    assert [line.split()[2] for line in out.splitlines() if not line.startswith(" ")] == [
        PROMOTED,
        PROMOTED,
        REFUSED,
        ROLLBACK,
    ]

    # v1 was the first champion: nothing before it.
    code, _, err = run_cli("rollback")
    assert code == cli.EXIT_NO_PREVIOUS_CHAMPION and "no previous champion" in err
    assert champion_holders(registry.client, NAME) == ["1"]


def test_promote_a_refused_version_needs_force_and_a_reason(registry: Registry) -> None:
    rows = len(registry.ledger())
    code, _, err = run_cli("promote", "3")
    assert code == cli.EXIT_GATE_NOT_PASSED
    assert "v3 gate refused: candidate v3 roc_auc 0.4000 misses the floor" in err and "--force --reason" in err
    code, _, err = run_cli("promote", "4")
    assert code == cli.EXIT_GATE_NOT_PASSED and "gate never ran" in err
    code, _, err = run_cli("promote", "3", "--force")
    assert code == cli.EXIT_USAGE and "--force needs --reason" in err
    assert champion_version(registry.client, NAME) == registry.versions[1]
    assert len(registry.ledger()) == rows

    code, out, err = run_cli("promote", "3", "--force", "--reason", "hotfix for the holiday schedule")
    assert code == cli.EXIT_OK, err
    assert "champion: v2 -> v3" in out
    assert champion_holders(registry.client, NAME) == ["3"]
    last = registry.ledger()[-1]
    assert (last.action, last.new_version, last.previous_version, last.actor) == (PROMOTED, "3", "2", "operator")
    assert last.reason == "forced past the gate (gate refused): hotfix for the holiday schedule"
    # The forced promotion is a promotion: rollback goes back to the champion it replaced.
    assert run_cli("rollback")[0] == cli.EXIT_OK
    assert champion_holders(registry.client, NAME) == ["2"]


def test_promote_a_passed_version_and_errors_on_unknown_versions(registry: Registry) -> None:
    code, out, _ = run_cli("promote", "v1")
    assert code == cli.EXIT_OK and "champion: v2 -> v1" in out
    assert registry.ledger()[-1].reason == "manual promotion of a version that passed the gate"
    code, out, _ = run_cli("promote", "1")
    assert code == cli.EXIT_OK and "already holds champion; nothing changed" in out
    for unknown in ("99", "abc"):
        code, _, err = run_cli("promote", unknown)
        assert code == cli.EXIT_UNKNOWN_VERSION
        assert f"unknown version '{unknown}' of model flight_delay (known versions: 4, 3, 2, 1)" in err
    assert champion_holders(registry.client, NAME) == ["1"]


def test_usage_errors_and_help_list_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["history", "--at", "yesterday"]) == cli.EXIT_USAGE
    assert "not an ISO 8601 time: 'yesterday'" in capsys.readouterr().err
    assert cli.main([]) == cli.EXIT_USAGE
    assert cli.main(["promote", "--help"]) == cli.EXIT_OK
    help_text = capsys.readouterr().out
    assert "exit codes:" in help_text and "needs --force --reason" in help_text


def test_a_locked_warehouse_is_a_clear_error_and_moves_nothing(
    registry: Registry, state_paths: StatePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "BUSY_WAIT_SECONDS", 1.0)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
            str(state_paths.warehouse),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        code, _, err = run_cli("promote", "1")
        assert code == cli.EXIT_WAREHOUSE_BUSY and "stayed locked" in err
        assert time.monotonic() - started < 10
        assert run_cli("status")[0] == cli.EXIT_WAREHOUSE_BUSY
    finally:
        holder.kill()
        holder.wait()
    # Refused before anything moved.
    assert champion_holders(registry.client, NAME) == ["2"]
    assert registry.ledger()[-1].action == REFUSED


def test_an_unreachable_registry_is_a_clear_error(state_paths: StatePaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    code, _, err = run_cli("status")
    assert code == cli.EXIT_STORE_ERROR
    assert err.startswith("mlops-assets status: error: MLflow at http://127.0.0.1:9 failed: ")
