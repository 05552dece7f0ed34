"""Drift of model inputs and the candidate's classification report, with Evidently 0.7.

Large frames are compared on a seeded uniform sample of at most `max_rows` rows per side, with a
bound that makes the per-column verdict the same as Evidently's on the full frames:

- The test of each column is chosen from the FULL frames by Evidently's own default rule
  (reference > 1000 non-null values: normed Wasserstein for numbers with more than 5 distinct
  values, else Jensen-Shannon distance; smaller references: p-value tests) and pinned, so a
  sample never switches the method.
- Both distances are metrics, so by the triangle inequality the full-frame distance lies within
  `W(ref_s, ref) + W(cur_s, cur)` of the sampled one (W1 for Wasserstein, divided by the full
  reference's std as Evidently does; the JS distance of the value distributions for Jensen-Shannon).
  Those two sample-to-full distances are computed exactly from value counts, which is cheap.
- A column whose interval [score - bound, score + bound] contains the threshold, and every column
  judged by a p-value test (a p-value depends on the row count and has no such bound), is re-scored
  by Evidently on the full frames. Every other verdict is certain.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from mlops_assets.contracts import CATEGORICAL_FEATURES, LABEL, MODEL_INPUT_NAMES
from mlops_assets.warehouse import BATCHES_TABLE, FEATURES_TABLE, INFERENCE_TABLE, table_exists

DEFAULT_MAX_ROWS = 20_000
DEFAULT_SEED = 13
SUMMARY_FILE = "drift_summary.json"

# Evidently's default rule (evidently.legacy.calculations.stattests.registry._get_default_stattest).
_DISTANCE_REFERENCE_ROWS = 1000
_FEW_VALUES = 5
DISTANCE_METHODS = frozenset({"wasserstein", "jensenshannon"})
# The threshold Evidently uses by default for each method.
DEFAULT_THRESHOLDS = {"wasserstein": 0.1, "jensenshannon": 0.1, "ks": 0.05, "chisquare": 0.05, "z": 0.05}
# Evidently's display names, as they come back in a snapshot.
_METHOD_NAMES = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
}


@dataclass(frozen=True)
class ColumnPlan:
    """How one column is judged: its kind, Evidently method, and its full-frame value summaries."""

    name: str
    numerical: bool
    method: str | None
    reference_counts: pd.Series
    current_counts: pd.Series

    @property
    def empty_side(self) -> bool:
        return self.reference_counts.empty or self.current_counts.empty


def drift_exceeds(summary: dict[str, Any], threshold: float) -> bool:
    """Whether the share of drifted columns (0-1) in a drift summary is over `threshold`."""
    return float(summary["share_of_drifted_columns"]) > threshold


def _numerical(name: str, reference: pd.Series, current: pd.Series) -> bool:
    """Contract codes are categories; otherwise numbers when each side is numeric or has no values."""
    if name in CATEGORICAL_FEATURES:
        return False
    return all(pd.api.types.is_numeric_dtype(s) or s.isna().all() for s in (reference, current))


def _clean(series: pd.Series, numerical: bool) -> pd.Series:
    if numerical:
        values = pd.to_numeric(series, errors="raise").astype("float64")
        return values.replace([np.inf, -np.inf], np.nan).dropna()
    return series.dropna()


def _default_method(plan_ref: pd.Series, plan_cur: pd.Series, numerical: bool) -> str:
    """Evidently's default test for this pair of (non-null) value-count summaries."""
    n_values = len(plan_ref.index.union(plan_cur.index))
    if int(plan_ref.sum()) > _DISTANCE_REFERENCE_ROWS:
        if numerical and n_values > _FEW_VALUES:
            return "wasserstein"
        return "jensenshannon"
    if numerical and n_values > _FEW_VALUES:
        return "ks"
    return "chisquare" if n_values > 2 else "z"


def plan_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> list[ColumnPlan]:
    """Kind, pinned method and value counts of each column, from the full frames."""
    plans = []
    for name in columns:
        numerical = _numerical(name, reference[name], current[name])
        ref_counts = _clean(reference[name], numerical).value_counts(sort=False)
        cur_counts = _clean(current[name], numerical).value_counts(sort=False)
        method = None if ref_counts.empty or cur_counts.empty else _default_method(ref_counts, cur_counts, numerical)
        plans.append(ColumnPlan(name, numerical, method, ref_counts, cur_counts))
    return plans


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index()


def _w1(a: pd.Series, b: pd.Series) -> float:
    """Exact first Wasserstein distance between two value-count summaries."""
    return float(stats.wasserstein_distance(a.index.to_numpy(), b.index.to_numpy(), a.to_numpy(), b.to_numpy()))


def _js(a: pd.Series, b: pd.Series) -> float:
    """Jensen-Shannon distance (natural log) between two value-count summaries."""
    keys = a.index.union(b.index)
    return float(distance.jensenshannon(a.reindex(keys, fill_value=0).to_numpy(), b.reindex(keys, fill_value=0)))


def _weighted_std(counts: pd.Series) -> float:
    values = counts.index.to_numpy(dtype="float64")
    weights = counts.to_numpy(dtype="float64")
    mean = np.average(values, weights=weights)
    return float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))


def _score_interval(plan: ColumnPlan, sample_plan: ColumnPlan, score: float) -> tuple[float, float] | None:
    """Where the full-frame score lies given the sampled one; None when no bound exists."""
    if plan.method == "wasserstein":
        # Evidently divides W1 by max(std of the reference, 0.001); undo the sample's norm first.
        sample_norm = max(_weighted_std(sample_plan.reference_counts), 0.001)
        full_norm = max(_weighted_std(plan.reference_counts), 0.001)
        w_sample = score * sample_norm
        slack = _w1(sample_plan.reference_counts, plan.reference_counts) + _w1(
            sample_plan.current_counts, plan.current_counts
        )
        return max(w_sample - slack, 0.0) / full_norm, (w_sample + slack) / full_norm
    if plan.method == "jensenshannon":
        slack = _js(sample_plan.reference_counts, plan.reference_counts) + _js(
            sample_plan.current_counts, plan.current_counts
        )
        return max(score - slack, 0.0), score + slack
    return None


def _evidently_frame(frame: pd.DataFrame, plans: list[ColumnPlan]) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for plan in plans:
        values = frame[plan.name]
        if plan.numerical:
            out[plan.name] = pd.to_numeric(values, errors="raise").astype("float64")
        else:
            out[plan.name] = values.astype(object).where(values.notna(), None)
    return out


def _dataset(frame: pd.DataFrame, plans: list[ColumnPlan]) -> Any:
    from evidently import DataDefinition, Dataset

    definition = DataDefinition(
        numerical_columns=[p.name for p in plans if p.numerical],
        categorical_columns=[p.name for p in plans if not p.numerical],
    )
    return Dataset.from_pandas(_evidently_frame(frame, plans), data_definition=definition)


def _value_drift_results(snapshot: Any) -> dict[str, dict[str, Any]]:
    """Per column: score, method, threshold and verdict of every ValueDrift in a snapshot."""
    exported = snapshot.dict()
    scores = {m["id"]: m["value"] for m in exported["metrics"]}
    results = {}
    for test in exported["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        score = float(scores[test["metric_config"]["metric_id"]])
        if not math.isfinite(score):
            raise ValueError(f"Evidently gave a non-finite drift score for column {params['column']!r}")
        results[params["column"]] = {
            "score": score,
            "method": _METHOD_NAMES.get(params["method"], params["method"]),
            "threshold": float(params["threshold"]),
            "drifted": test["status"] == "FAIL",
        }
    return results


def _score_with_evidently(
    reference: pd.DataFrame, current: pd.DataFrame, plans: list[ColumnPlan], with_presets: bool
) -> tuple[dict[str, dict[str, Any]], Any]:
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    methods = {p.name: p.method for p in plans}
    if with_presets:
        metrics: list[Any] = [
            DataDriftPreset(columns=list(methods), per_column_method=methods),
            DataSummaryPreset(columns=list(methods)),
        ]
    else:
        metrics = [ValueDrift(column=name, method=method) for name, method in methods.items()]
    snapshot = Report(metrics, include_tests=True).run(
        current_data=_dataset(current, plans), reference_data=_dataset(reference, plans)
    )
    return _value_drift_results(snapshot), snapshot


def exact_score(plan: ColumnPlan) -> float:
    """Evidently's distance score of a column on the full frames, from its value counts.

    The same formula as Evidently's `wasserstein` (W1 over max(reference std, 0.001)) and
    `jensenshannon` (natural-log JS distance of the value shares) tests; tests check equality.
    """
    if plan.method == "wasserstein":
        return _w1(plan.reference_counts, plan.current_counts) / max(_weighted_std(plan.reference_counts), 0.001)
    if plan.method == "jensenshannon":
        return _js(plan.reference_counts, plan.current_counts)
    raise ValueError(f"no exact count-based score for method {plan.method!r}")


def _rescore_on_full_frames(
    reference: pd.DataFrame, current: pd.DataFrame, plans: list[ColumnPlan]
) -> dict[str, dict[str, Any]]:
    """Full-frame verdicts: distances exactly from value counts, p-value tests by Evidently."""
    verdicts = {}
    for plan in plans:
        if plan.method in DISTANCE_METHODS:
            score = exact_score(plan)
            threshold = DEFAULT_THRESHOLDS[plan.method]
            verdicts[plan.name] = {
                "score": score,
                "method": plan.method,
                "threshold": threshold,
                "drifted": score >= threshold,
            }
    by_test = [p for p in plans if p.method not in DISTANCE_METHODS]
    if by_test:
        verdicts.update(_score_with_evidently(reference, current, by_test, with_presets=False)[0])
    return verdicts


def _null_side_verdict(plan: ColumnPlan) -> dict[str, Any]:
    # Evidently refuses a column with no values on a side. Values on one side only is a broken
    # feed, which is drift; no values on either side is no evidence of change.
    drifted = plan.reference_counts.empty != plan.current_counts.empty
    return {"score": 1.0 if drifted else 0.0, "method": "all_null", "threshold": 0.5, "drifted": drifted}


@dataclass
class DriftRun:
    """The drift summary (JSON-ready) and, when built, the Evidently snapshot of the sample."""

    summary: dict[str, Any]
    snapshot: Any = None

    def save_html(self, path: Path) -> Path:
        """Write the Evidently report as HTML (only when a snapshot was built)."""
        if self.snapshot is None:
            raise ValueError("no Evidently report to save: current data was empty or no column had values")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.snapshot.save_html(str(path))
        return path


def run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = DEFAULT_SEED,
    with_presets: bool = False,
) -> DriftRun:
    """Drift of `current` against `reference` per column, Evidently's verdicts, on bounded samples.

    `with_presets` also builds the full DataDriftPreset + DataSummaryPreset report (for HTML).
    """
    if reference.empty:
        raise ValueError("the drift reference is empty: there is nothing to compare against")
    # The feature contract by default; frames without it (benchmarks, tests) are compared as they are.
    columns = list(columns or [c for c in MODEL_INPUT_NAMES if c in reference.columns] or reference.columns)
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"drift column(s) missing from the data: {', '.join(missing)}")
    summary: dict[str, Any] = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "reference_rows": len(reference),
        "current_rows": len(current),
        "sampled_reference_rows": min(len(reference), max_rows),
        "sampled_current_rows": min(len(current), max_rows),
        "max_rows": max_rows,
        "seed": seed,
        "columns": columns,
        "notes": [],
    }
    if current.empty:
        summary.update(
            share_of_drifted_columns=0.0,
            number_of_drifted_columns=0,
            drifted_columns=[],
            column_scores={},
            column_methods={},
            column_thresholds={},
            rescored_columns=[],
        )
        summary["notes"].append("current data is empty: no rows to compare, no drift measured")
        return DriftRun(summary)

    plans = plan_columns(reference, current, columns)
    ref_sample, cur_sample = _sample(reference, max_rows, seed), _sample(current, max_rows, seed)
    sampled = len(ref_sample) < len(reference) or len(cur_sample) < len(current)
    verdicts: dict[str, dict[str, Any]] = {}
    testable = []
    for plan in plans:
        if plan.empty_side:
            verdicts[plan.name] = _null_side_verdict(plan)
            side = "both sides" if plan.reference_counts.empty and plan.current_counts.empty else "one side"
            summary["notes"].append(f"{plan.name}: no values on {side}; judged by presence, not by Evidently")
        else:
            testable.append(plan)

    snapshot = None
    if testable:
        sample_plans = {p.name: p for p in plan_columns(ref_sample, cur_sample, [p.name for p in testable])}
        usable = [p for p in testable if not sample_plans[p.name].empty_side]
        bounds: dict[str, list[float]] = {}
        rescore = [p for p in testable if sample_plans[p.name].empty_side]
        if usable:
            results, snapshot = _score_with_evidently(ref_sample, cur_sample, usable, with_presets)
            for plan in usable:
                result = results[plan.name]
                if not sampled:
                    verdicts[plan.name] = result
                    continue
                interval = _score_interval(plan, sample_plans[plan.name], result["score"])
                if interval is None or interval[0] < result["threshold"] <= interval[1]:
                    rescore.append(plan)
                    continue
                bounds[plan.name] = [interval[0], interval[1]]
                verdicts[plan.name] = {**result, "drifted": interval[0] >= result["threshold"]}
        if rescore:
            verdicts.update(_rescore_on_full_frames(reference, current, rescore))
        summary["rescored_columns"] = [p.name for p in rescore]
        summary["column_score_bounds"] = bounds
    else:
        summary["rescored_columns"] = []
        summary["notes"].append("no column has values on both sides: no Evidently report")

    drifted = [c for c in columns if verdicts[c]["drifted"]]
    summary.update(
        share_of_drifted_columns=len(drifted) / len(columns) if columns else 0.0,
        number_of_drifted_columns=len(drifted),
        drifted_columns=drifted,
        column_scores={c: float(verdicts[c]["score"]) for c in columns},
        column_methods={c: verdicts[c]["method"] for c in columns},
        column_thresholds={c: float(verdicts[c]["threshold"]) for c in columns},
    )
    return DriftRun(summary, snapshot)


def drift_summary(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = DEFAULT_SEED,
    columns: list[str] | None = None,
) -> dict[str, Any]:
    """The drift summary only (no HTML): share and list of drifted columns, per-column scores."""
    return run_drift(reference, current, columns=columns, max_rows=max_rows, seed=seed).summary


def write_summary(summary: dict[str, Any], reports_dir: Path) -> Path:
    """Write `drift_summary.json` (read by the CLI's `status`) atomically."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    target = reports_dir / SUMMARY_FILE
    tmp = target.with_suffix(".json.part")
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False))
    tmp.replace(target)
    return target


def classification_report(
    frame: pd.DataFrame, probability: np.ndarray, threshold: float, html_path: Path
) -> dict[str, float]:
    """Evidently's classification report of predictions on labelled rows, saved as HTML.

    Returns the headline metrics of the report (fractions 0-1) as Evidently computed them.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    if frame.empty:
        raise ValueError("no labelled rows to build a classification report on")
    data = pd.DataFrame(
        {
            "target": frame[LABEL].astype(int).to_numpy(),
            "prediction": (np.asarray(probability) >= threshold).astype(int),
            "probability": np.asarray(probability, dtype="float64"),
        }
    )
    definition = DataDefinition(
        classification=[
            BinaryClassification(target="target", prediction_labels="prediction", prediction_probas="probability")
        ],
        numerical_columns=["probability"],
        categorical_columns=["target", "prediction"],
    )
    snapshot = Report([ClassificationPreset()]).run(
        current_data=Dataset.from_pandas(data, data_definition=definition), reference_data=None
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    metrics = {}
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"].split("(")[0]
        value = metric["value"]
        if name in {"Accuracy", "Precision", "Recall", "F1Score", "RocAuc", "LogLoss"} and isinstance(
            value, (int, float)
        ):
            if math.isfinite(value):
                metrics[name.lower()] = float(value)
    return metrics


def recent_batch_rows(con: duckdb.DuckDBPyConnection, days: int) -> pd.DataFrame:
    """Feature rows of accepted batches in the last `days` flight days (empty when there are none)."""
    if not table_exists(con, FEATURES_TABLE):
        return pd.DataFrame(columns=list(MODEL_INPUT_NAMES))
    accepted = f"""
        SELECT f.* FROM {FEATURES_TABLE} f
        JOIN {BATCHES_TABLE} b ON b.batch_key = f.batch_key AND b.checks_passed
    """
    return con.execute(
        f"""SELECT * FROM ({accepted})
            WHERE flight_date > (SELECT MAX(flight_date) FROM ({accepted})) - ?::INTEGER
            ORDER BY flight_date, sched_dep_time, carrier, flight, origin, batch_key""",
        [days],
    ).df()


def recent_traffic_rows(con: duckdb.DuckDBPyConnection, days: int) -> pd.DataFrame:
    """Model inputs the service answered in the last `days` days of the inference log."""
    if not table_exists(con, INFERENCE_TABLE):
        raise LookupError(
            f"no table {INFERENCE_TABLE!r} in the warehouse: no live traffic has been ingested yet "
            "(serve the model and materialize the inference_log asset, or use current_source='batches')"
        )
    present = {row[0] for row in con.execute(f"DESCRIBE {INFERENCE_TABLE}").fetchall()}
    missing = [c for c in (*MODEL_INPUT_NAMES, "logged_at") if c not in present]
    if missing:
        raise LookupError(f"table {INFERENCE_TABLE!r} lacks column(s): {', '.join(missing)}")
    return con.execute(
        f"""SELECT * FROM {INFERENCE_TABLE}
            WHERE logged_at > (SELECT MAX(logged_at) FROM {INFERENCE_TABLE}) - to_days(?::INTEGER)
            ORDER BY logged_at""",
        [days],
    ).df()
