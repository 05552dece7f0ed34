"""The model: an sklearn Pipeline with its preprocessing inside, and its holdout metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score, log_loss, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from mlops_assets.contracts import CATEGORICAL_FEATURES, LABEL
from mlops_assets.features import MODEL_FEATURES, ScheduleFeatures, coerce_model_input

# Types the skops format must trust to load the pipeline; only what the pipeline uses.
SKOPS_TRUSTED_TYPES: list[str] = [
    "mlops_assets.features.ScheduleFeatures",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn.compose._column_transformer._RemainderColsList",
    "numpy.dtype",
    "builtins.slice",
    # Gradient boosting with categorical features wraps check_array in a partial; the wrapped
    # function is audited separately, so trusting partial does not trust arbitrary callables.
    "functools.partial",
    "sklearn.utils.validation.check_array",
]


@dataclass(frozen=True)
class TrainingParams:
    """The knobs of one training run."""

    max_iter: int = 200
    learning_rate: float = 0.08
    max_leaf_nodes: int = 31
    l2_regularization: float = 1.0
    seed: int = 13


def build_pipeline(params: TrainingParams) -> Pipeline:
    """Schedule features, category codes (unknown codes as missing), gradient boosting."""
    codes = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=-1,
        encoded_missing_value=-1,
        dtype=np.float64,
    )
    columns = ColumnTransformer(
        [("codes", codes, list(CATEGORICAL_FEATURES))],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    n_categorical = len(CATEGORICAL_FEATURES)
    classifier = HistGradientBoostingClassifier(
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        l2_regularization=params.l2_regularization,
        categorical_features=list(range(n_categorical)),
        early_stopping=False,
        random_state=params.seed,
    )
    return Pipeline(
        [
            ("schedule", ScheduleFeatures()),
            ("columns", columns),
            ("classifier", classifier),
        ]
    )


def split_xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Model input columns and the 0/1 label of a feature frame."""
    return coerce_model_input(frame), frame[LABEL].astype(int).to_numpy()


def train_model(train: pd.DataFrame, params: TrainingParams) -> Pipeline:
    """Fit the pipeline on a feature frame."""
    x, y = split_xy(train)
    if len(np.unique(y)) < 2:
        raise ValueError(f"training data holds one class only ({LABEL}={int(y[0])}): refusing to train")
    return build_pipeline(params).fit(x, y)


def classification_metrics(y_true: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    """Holdout metrics as fractions: ROC AUC, log loss, and precision/recall/F1 at the threshold."""
    probability = np.clip(np.asarray(probability, dtype=float), 1e-6, 1 - 1e-6)
    decision = (probability >= threshold).astype(int)
    two_classes = len(np.unique(y_true)) == 2
    metrics = {
        "roc_auc": float(roc_auc_score(y_true, probability)) if two_classes else math.nan,
        "log_loss": float(log_loss(y_true, probability, labels=[0, 1])),
        "precision": float(precision_score(y_true, decision, zero_division=0)),
        "recall": float(recall_score(y_true, decision, zero_division=0)),
        "f1": float(f1_score(y_true, decision, zero_division=0)),
        "positive_share": float(np.mean(y_true)) if len(y_true) else math.nan,
        "rows": float(len(y_true)),
    }
    return metrics


def base_rate_metrics(train_y: np.ndarray, holdout_y: np.ndarray, threshold: float) -> dict[str, float]:
    """The metrics of a model that always predicts the training set's disruption rate."""
    rate = float(np.mean(train_y))
    return classification_metrics(holdout_y, np.full(len(holdout_y), rate), threshold)


def predict_probability(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """Disruption probabilities for model-input rows."""
    return model.predict_proba(coerce_model_input(frame))[:, 1]


def feature_names() -> list[str]:
    """The columns the classifier sees, in order."""
    return list(MODEL_FEATURES)
