"""The one place that assembles the Dagster definitions."""


import dagster as dg

from mlops_assets.defs import ingestion, promotion, training
from mlops_assets.resources import build_resources
from mlops_assets.settings import StatePaths

retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets(
        training.training_set, training.candidate_model, training.candidate_evaluation, promotion.champion_model
    ),
    description="Train a candidate on the current window, evaluate it against the champion, gate, promote.",
)


def build_definitions(paths: StatePaths) -> dg.Definitions:
    """Definitions bound to one state folder's stores."""
    return dg.Definitions(
        assets=[
            ingestion.raw_flights,
            ingestion.weather,
            ingestion.flight_features,
            training.training_set,
            training.candidate_model,
            training.candidate_evaluation,
            promotion.champion_model,
        ],
        asset_checks=[promotion.candidate_beats_champion],
        jobs=[ingestion.ingest_batch, retrain],
        resources=build_resources(paths),
    )


defs = build_definitions(StatePaths.from_env())
