"""What every benchmark shares: resampled real rows, fresh-subprocess runs, medians and spreads."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SEED = 2013
# Resampled copies of a flight get a new flight number, so a resampled file is still a set of
# distinct flights (the natural-key check passes) with the real value distributions.
FLIGHT_NUMBER_STRIDE = 10_000
VERSIONED_PACKAGES = ("duckdb", "dagster", "pandas", "scikit-learn", "mlflow", "bentoml", "evidently", "httpx")


def resample_flights(flights: pd.DataFrame, rows: int, seed: int = SEED) -> pd.DataFrame:
    """`rows` real flights drawn with replacement (fixed seed), in date order, keys kept distinct."""
    # Imported here: a child measuring a baseline must not carry pandas it does not use.
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    index = np.sort(rng.integers(0, len(flights), size=rows))
    sample = flights.iloc[index].reset_index(drop=True)
    copy_number = pd.Series(index).groupby(index).cumcount().to_numpy()
    sample["flight"] = (sample["flight"].astype(int) + FLIGHT_NUMBER_STRIDE * copy_number).astype(str)
    return sample


def write_landing_csv(frame: pd.DataFrame, path: Path) -> Path:
    """A landing file the way write_landing_days writes one (text as landed, `\\n` line ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


def _status_mib(field: str, pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/{pid}/status")


def rss_mib(pid: int | str = "self") -> float:
    """A process's resident memory now, in MiB."""
    return _status_mib("VmRSS", pid)


def peak_rss_mib(pid: int | str = "self") -> float:
    """A process's peak resident memory since it started (VmHWM: reset at exec, unlike a forked
    child's ru_maxrss, which starts from the parent's size), in MiB."""
    return _status_mib("VmHWM", pid)


def machine() -> dict[str, object]:
    """The machine and the versions a figure was measured with."""
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024**2, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        # Others may share the machine: the load at the end of the figure says how quiet it was.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def summary(values: list[float]) -> dict[str, object]:
    """Median and spread (min, max) of several runs, and the runs themselves."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def run_child(
    module: str,
    variant: str,
    params: dict[str, object],
    timeout_s: float = 900,
    env: dict[str, str] | None = None,
) -> dict[str, object]:
    """Run one variant in a fresh interpreter; its own result, with its peak RSS (VmHWM) at exit."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", module, "--child", variant, "--params", json.dumps(params), "--out", str(out)]
        child_env = {**os.environ, **(env or {})}
        returncode = subprocess.run(command, cwd=REPO_ROOT, timeout=timeout_s, env=child_env).returncode
        if returncode != 0:
            raise RuntimeError(f"{module} --child {variant} exited with {returncode}")
        return json.loads(out.read_text())


def child_main(variants: dict[str, Callable[[dict[str, object]], dict[str, object]]], argv: list[str]) -> None:
    """The child side of run_child: run one variant, write what it measured as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True, choices=sorted(variants))
    parser.add_argument("--params", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = variants[args.child](json.loads(args.params))
    result["peak_rss_mib"] = peak_rss_mib()
    Path(args.out).write_text(json.dumps(result))


class Timer:
    """Wall-clock seconds of a block (perf_counter)."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every figure script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="Smoke mode: tiny sizes, one run, goals not judged.")
    parser.add_argument("--runs", type=int, default=None, help="Runs per variant (default: 5, or 1 with --quick).")
    parser.add_argument("--workdir", type=Path, default=None, help="Scratch folder (default: a temp folder).")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="Where the figure's JSON goes (default: bench/results; --quick writes none unless given).",
    )
    return parser


def results_dir(args: argparse.Namespace) -> Path | None:
    """The folder for the results JSON, or None in quick mode without --results-dir."""
    if args.results_dir is not None:
        return args.results_dir
    return None if args.quick else RESULTS_DIR


def save_results(args: argparse.Namespace, name: str, figure: dict[str, object]) -> None:
    """Write the figure's JSON (with the machine) and print it."""
    figure = {"figure": name, "quick": bool(args.quick), "machine": machine(), **figure}
    text = json.dumps(figure, indent=2, default=str)
    folder = results_dir(args)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(text + "\n")
    print(text)


def workdir(args: argparse.Namespace) -> tempfile.TemporaryDirectory[str] | None:
    """A temp scratch folder unless --workdir names one."""
    return None if args.workdir else tempfile.TemporaryDirectory(prefix="bench-")
