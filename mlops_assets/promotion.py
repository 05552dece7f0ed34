"""The promotion gate and the promotion ledger; plain functions over metrics and DuckDB."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from mlops_assets.registry import ModelVersion
from mlops_assets.warehouse import LEDGER_TABLE

LOWER_IS_BETTER = frozenset({"log_loss"})


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
        return GateDecision(
            False, f"candidate {name} {metric} {value:.4f} misses the floor {floor:.4f}", metric, value, champion_value
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
    con.execute(
        f"INSERT INTO {LEDGER_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (at or datetime.now(timezone.utc)).replace(tzinfo=None),
            action,
            model_name,
            new_version,
            previous_version,
            _finite(candidate_metrics),
            _finite(champion_metrics),
            reason,
            actor,
        ],
    )
