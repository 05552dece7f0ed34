"""The one place that assembles the Dagster definitions."""

import importlib
import pkgutil

import dagster as dg

from mlops_assets import defs as defs_package
from mlops_assets.resources import build_resources
from mlops_assets.settings import StatePaths


def domain_definitions() -> list[dg.Definitions]:
    """The `defs` of every domain module under mlops_assets/defs (ingestion, training, ...)."""
    found = []
    for module_info in sorted(pkgutil.iter_modules(defs_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{defs_package.__name__}.{module_info.name}")
        if isinstance(getattr(module, "defs", None), dg.Definitions):
            found.append(module.defs)
    return found


def build_definitions(paths: StatePaths) -> dg.Definitions:
    """Definitions bound to one state folder's stores."""
    return dg.Definitions.merge(*domain_definitions(), dg.Definitions(resources=build_resources(paths)))


defs = build_definitions(StatePaths.from_env())
