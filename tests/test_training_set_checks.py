"""Training-set checks: two classes, enough rows, enough rows per class; a refusal says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_assets.contracts import LABEL
from mlops_assets.training_data import TrainingSet, TrainingSetMinimums, check_training_set

MINIMUMS = TrainingSetMinimums(min_train_rows=100, min_rows_per_class=10, min_holdout_rows=20)


def frame(rows: int, disrupted_share: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.zeros(rows, dtype=bool)
    labels[: round(rows * disrupted_share)] = True
    return pd.DataFrame({"distance": rng.uniform(100, 2500, rows), LABEL: rng.permutation(labels)})


def outcomes(data: TrainingSet) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.passed, c.description) for c in check_training_set(data, MINIMUMS)}


def test_a_balanced_window_passes_every_check_with_its_counts() -> None:
    data = TrainingSet(train=frame(200, 0.25, 1), holdout=frame(40, 0.25, 2))
    checks = check_training_set(data, MINIMUMS)
    assert all(c.passed for c in checks)
    assert checks[0].metadata == {
        "train_rows": 200,
        "holdout_rows": 40,
        "train_on_time_rows": 150,
        "train_disrupted_rows": 50,
        "holdout_on_time_rows": 30,
        "holdout_disrupted_rows": 10,
    }


def test_one_class_in_training_is_refused_saying_so() -> None:
    data = TrainingSet(train=frame(200, 0.0, 3), holdout=frame(40, 0.25, 4))
    result = outcomes(data)
    assert result["training_set_has_two_classes"] == (
        False,
        "training refused: the training rows hold on time flights only (200 on time, 0 disrupted); "
        "a classifier needs both classes",
    )
    assert result["training_set_has_enough_rows_per_class"] == (
        False,
        "training refused: training rows: 200 on time, 0 disrupted (minimum 10 of each class)",
    )
    assert result["training_set_has_enough_rows"][0]


def test_one_class_in_the_holdout_is_refused_saying_so() -> None:
    data = TrainingSet(train=frame(200, 0.3, 5), holdout=frame(40, 1.0, 6))
    passed, reason = outcomes(data)["training_set_has_two_classes"]
    assert not passed and "the holdout holds disrupted flights only (0 on time, 40 disrupted)" in reason


@pytest.mark.parametrize(
    ("train_rows", "holdout_rows", "reason"),
    [
        (99, 40, "training refused: 99 training rows (minimum 100), 40 holdout rows (minimum 20)"),
        (200, 19, "training refused: 200 training rows (minimum 100), 19 holdout rows (minimum 20)"),
    ],
)
def test_too_few_rows_are_refused_with_the_counts(train_rows: int, holdout_rows: int, reason: str) -> None:
    data = TrainingSet(train=frame(train_rows, 0.3, 7), holdout=frame(holdout_rows, 0.3, 8))
    assert outcomes(data)["training_set_has_enough_rows"] == (False, reason)


def test_too_few_rows_of_one_class_are_refused() -> None:
    data = TrainingSet(train=frame(200, 0.045, 9), holdout=frame(40, 0.3, 10))
    result = outcomes(data)
    assert result["training_set_has_two_classes"][0]
    assert result["training_set_has_enough_rows_per_class"] == (
        False,
        "training refused: training rows: 191 on time, 9 disrupted (minimum 10 of each class)",
    )


def test_an_empty_window_is_refused_without_a_crash() -> None:
    result = outcomes(TrainingSet(train=pd.DataFrame(), holdout=pd.DataFrame()))
    assert not any(passed for passed, _ in result.values())
    assert "the training rows hold no flights (0 on time, 0 disrupted)" in result["training_set_has_two_classes"][1]
