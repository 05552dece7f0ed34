"""Feature code as plain functions: the contract, derived features, no leaks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.contracts import LEAKING_COLUMNS, MODEL_INPUT_NAMES
from mlops_assets.features import MODEL_FEATURES, ScheduleFeatures, derive_schedule_features
from mlops_assets.modeling import TrainingParams, build_pipeline


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "year": [2013, 2013],
            "month": [1, 2],
            "day": [1, 3],
            "sched_dep_time": [515, 2359],
            "sched_arr_time": [819, 437],
            "carrier": ["UA", "B6"],
            "origin": ["EWR", "JFK"],
            "dest": ["IAH", "BQN"],
            "distance": [1400.0, 1576.0],
            "temp": [39.0, np.nan],
            "dewp": [26.0, np.nan],
            "humid": [59.4, np.nan],
            "wind_dir": [270.0, np.nan],
            "wind_speed": [10.4, np.nan],
            "wind_gust": [np.nan, np.nan],
            "precip": [0.0, np.nan],
            "pressure": [1012.0, np.nan],
            "visib": [10.0, np.nan],
        }
    )


def test_no_leaking_column_is_a_model_input_or_feature() -> None:
    assert not LEAKING_COLUMNS & set(MODEL_INPUT_NAMES)
    assert not LEAKING_COLUMNS & set(MODEL_FEATURES)
    assert "arr_delay" not in MODEL_FEATURES and "disrupted" not in MODEL_FEATURES


def test_derived_schedule_features_have_the_right_values() -> None:
    derived = derive_schedule_features(_rows())
    assert list(derived.columns) == list(MODEL_FEATURES)
    # 2013-01-01 was a Tuesday (Monday is 0); 2013-02-03 a Sunday.
    assert derived["day_of_week"].tolist() == [1.0, 6.0]
    assert derived["dep_hour"].tolist() == [5.0, 23.0]
    assert derived["dep_minute_of_day"].tolist() == [5 * 60 + 15, 23 * 60 + 59]
    assert derived["arr_minute_of_day"].tolist() == [8 * 60 + 19, 4 * 60 + 37]
    assert derived["overnight"].tolist() == [0.0, 1.0]


def test_pipeline_steps_see_only_contract_inputs() -> None:
    pipeline = build_pipeline(TrainingParams(max_iter=5))
    assert isinstance(pipeline.steps[0][1], ScheduleFeatures)
    frame = _rows()
    frame["arr_delay"] = [100.0, -5.0]
    assert "arr_delay" not in derive_schedule_features(frame).columns
