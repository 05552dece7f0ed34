"""The promotion gate and the promotion ledger; plain functions over metrics and DuckDB."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb
from mlflow import MlflowClient

from mlops_assets.registry import (
    CHAMPION_ALIAS,
    ModelVersion,
    champion_holders,
    champion_version,
    holdout_metrics,
    move_champion_alias,
)
from mlops_assets.warehouse import LEDGER_TABLE, Warehouse, table_exists

LOWER_IS_BETTER = frozenset({"log_loss"})
PROMOTED = "promoted"
REFUSED = "refused"
ROLLBACK = "rollback"
# The actions that move the alias; a refusal is recorded but moves nothing.
CHAMPION_MOVES = frozenset({PROMOTED, ROLLBACK})


@dataclass(frozen=True)
class Evaluation:
    """Candidate and current champion scored on the same holdout rows."""

    candidate: ModelVersion
    candidate_metrics: dict[str, float]
    base_rate_metrics: dict[str, float]
    champion: ModelVersion | None = None
    champion_metrics: dict[str, float] | None = None
    holdout_rows: int = 0
    threshold: float = 0.5


@dataclass(frozen=True)
class GateDecision:
    """Whether the candidate may become champion, and why."""

    passed: bool
    reason: str
    metric: str
    candidate_value: float
    champion_value: float | None


def _better_or_equal(metric: str, value: float, reference: float, tolerance: float) -> bool:
    if metric in LOWER_IS_BETTER:
        return value <= reference + tolerance
    return value >= reference - tolerance


def gate_decision(evaluation: Evaluation, metric: str, floor: float, tolerance: float) -> GateDecision:
    """Pass only if the candidate meets the floor and is not worse than the champion beyond tolerance."""
    if metric not in evaluation.candidate_metrics:
        raise ValueError(f"gate metric {metric!r} is not among {sorted(evaluation.candidate_metrics)}")
    value = evaluation.candidate_metrics[metric]
    champion_value = (evaluation.champion_metrics or {}).get(metric)
    name = f"v{evaluation.candidate.version}"
    if value is None or not math.isfinite(value):
        return GateDecision(False, f"candidate {name} {metric} is not a number", metric, value, champion_value)
    if not _better_or_equal(metric, value, floor, 0.0):
        direction = "at most" if metric in LOWER_IS_BETTER else "at least"
        return GateDecision(
            False,
            f"candidate {name} {metric} {value:.4f} misses the floor ({direction} {floor:.4f})",
            metric,
            value,
            champion_value,
        )
    if evaluation.champion is None or champion_value is None:
        return GateDecision(
            True,
            f"first model: candidate {name} {metric} {value:.4f} meets the floor {floor:.4f}",
            metric,
            value,
            None,
        )
    champion = f"v{evaluation.champion.version}"
    if not math.isfinite(champion_value):
        return GateDecision(
            False,
            f"champion {champion} {metric} is not a number on this holdout: the candidate cannot be compared",
            metric,
            value,
            champion_value,
        )
    if not _better_or_equal(metric, value, champion_value, tolerance):
        return GateDecision(
            False,
            f"candidate {name} {metric} {value:.4f} is worse than champion {champion} {champion_value:.4f} "
            f"beyond tolerance {tolerance:.4f}",
            metric,
            value,
            champion_value,
        )
    return GateDecision(
        True,
        f"candidate {name} {metric} {value:.4f} vs champion {champion} {champion_value:.4f} "
        f"(tolerance {tolerance:.4f}): not worse",
        metric,
        value,
        champion_value,
    )


def _finite(metrics: dict[str, float] | None) -> str | None:
    if metrics is None:
        return None
    return json.dumps({k: (v if v is not None and math.isfinite(v) else None) for k, v in metrics.items()})


def record_ledger_row(
    con: duckdb.DuckDBPyConnection,
    action: str,
    model_name: str,
    new_version: str | None,
    previous_version: str | None,
    candidate_metrics: dict[str, float] | None,
    champion_metrics: dict[str, float] | None,
    reason: str,
    actor: str,
    at: datetime | None = None,
) -> None:
    """Append one promotion, refusal or rollback to the ledger."""
    insert_ledger_row(
        con,
        LedgerRow(
            recorded_at=to_naive_utc(at or datetime.now(timezone.utc)),
            action=action,
            model_name=model_name,
            new_version=new_version,
            previous_version=previous_version,
            candidate_metrics=candidate_metrics,
            champion_metrics=champion_metrics,
            reason=reason,
            actor=actor,
        ),
    )


def insert_ledger_row(con: duckdb.DuckDBPyConnection, row: LedgerRow) -> None:
    """Write one ledger row as it stands (`recorded_at` naive UTC; non-finite metrics stored as null)."""
    con.execute(
        f"INSERT INTO {LEDGER_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            row.recorded_at,
            row.action,
            row.model_name,
            row.new_version,
            row.previous_version,
            _finite(row.candidate_metrics),
            _finite(row.champion_metrics),
            row.reason,
            row.actor,
        ],
    )


@dataclass(frozen=True)
class LedgerRow:
    """One promotion, refusal or rollback as recorded; `recorded_at` is naive UTC."""

    recorded_at: datetime
    action: str
    model_name: str
    new_version: str | None
    previous_version: str | None
    candidate_metrics: dict[str, float | None] | None
    champion_metrics: dict[str, float | None] | None
    reason: str
    actor: str


def read_ledger(con: duckdb.DuckDBPyConnection, model_name: str) -> list[LedgerRow]:
    """Every ledger row of a model, oldest first (rows of the same instant in insertion order)."""
    if not table_exists(con, LEDGER_TABLE):
        return []
    rows = con.execute(
        f"SELECT recorded_at, action, model_name, new_version, previous_version, candidate_metrics, "
        f"champion_metrics, reason, actor FROM {LEDGER_TABLE} WHERE model_name = ? ORDER BY recorded_at, rowid",
        [model_name],
    ).fetchall()
    return [
        LedgerRow(
            recorded_at=row[0],
            action=row[1],
            model_name=row[2],
            new_version=row[3],
            previous_version=row[4],
            candidate_metrics=json.loads(row[5]) if row[5] is not None else None,
            champion_metrics=json.loads(row[6]) if row[6] is not None else None,
            reason=row[7],
            actor=row[8],
        )
        for row in rows
    ]


def to_naive_utc(at: datetime) -> datetime:
    """The ledger's clock: an aware time converted to UTC, a naive time taken as UTC already."""
    return at.astimezone(timezone.utc).replace(tzinfo=None) if at.tzinfo is not None else at


def champion_at(rows: list[LedgerRow], at: datetime) -> LedgerRow | None:
    """The ledger row that made the version champion at time `at` (None before the first promotion)."""
    at = to_naive_utc(at)
    moves = [r for r in rows if r.action in CHAMPION_MOVES and r.recorded_at <= at]
    return moves[-1] if moves else None


def rollback_target(rows: list[LedgerRow], current: str) -> str | None:
    """The champion before the current one, walking the ledger as a stack of promotions.

    A promotion pushes its version, a rollback pops one, so rolling back twice walks back two
    promotions (a version promoted twice does not make two rollbacks toggle between two versions).
    """
    stack: list[str] = []
    for row in rows:
        if row.action == PROMOTED and row.new_version is not None:
            stack.append(row.new_version)
        elif row.action == ROLLBACK and stack:
            stack.pop()
    if stack and stack[-1] == current:
        return stack[-2] if len(stack) > 1 else None
    # The alias was moved outside the ledger: fall back to what made `current` champion last.
    promotions = [r for r in rows if r.action == PROMOTED and r.new_version == current]
    return promotions[-1].previous_version if promotions else None


@dataclass(frozen=True)
class ChampionMove:
    """The outcome of moving the alias: which version holds it now and which held it before."""

    new: ModelVersion
    previous: ModelVersion | None
    row: LedgerRow


def move_champion(
    client: MlflowClient,
    warehouse: Warehouse,
    version: ModelVersion,
    action: str,
    reason: str,
    actor: str,
    candidate_metrics: dict[str, float] | None = None,
    champion_metrics: dict[str, float] | None = None,
) -> ChampionMove:
    """Point `champion` at `version` and record the move in the ledger; no row, no move.

    Metrics default to the holdout metrics each version's run recorded at its evaluation.
    """
    if action not in CHAMPION_MOVES:
        raise ValueError(f"{action!r} does not move the champion; one of {sorted(CHAMPION_MOVES)}")
    previous = champion_version(client, version.name)
    if candidate_metrics is None:
        candidate_metrics = holdout_metrics(client, version.run_id)
    if champion_metrics is None and previous is not None:
        champion_metrics = holdout_metrics(client, previous.run_id)
    row = LedgerRow(
        recorded_at=to_naive_utc(datetime.now(timezone.utc)),
        action=action,
        model_name=version.name,
        new_version=version.version,
        previous_version=previous.version if previous else None,
        candidate_metrics=candidate_metrics,
        champion_metrics=champion_metrics,
        reason=reason,
        actor=actor,
    )
    move_champion_alias(client, version)
    try:
        # Short write: DuckDB has one writer, so the connection is opened, written and closed here.
        with warehouse.connect() as con:
            insert_ledger_row(con, row)
    except BaseException:
        # Every move is a ledger row: a move that could not be recorded is undone.
        if previous is not None:
            move_champion_alias(client, previous)
        else:
            client.delete_registered_model_alias(version.name, CHAMPION_ALIAS)
        raise
    holders = champion_holders(client, version.name)
    if holders != [version.version]:
        raise RuntimeError(f"`{CHAMPION_ALIAS}` is held by {holders}, expected exactly v{version.version}")
    return ChampionMove(new=version, previous=previous, row=row)
