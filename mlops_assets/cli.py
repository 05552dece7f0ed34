"""`mlops-assets`: the operator's command line for the champion (status, promote, rollback, history)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NoReturn, TextIO, TypeVar

import duckdb
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops_assets.promotion import (
    PROMOTED,
    ROLLBACK,
    ChampionMove,
    LedgerRow,
    champion_at,
    move_champion,
    read_ledger,
    rollback_target,
    to_naive_utc,
)
from mlops_assets.registry import (
    GATE_PASSED,
    VersionSummary,
    champion_holders,
    champion_version,
    find_model_version,
    recent_versions,
    version_summary,
)
from mlops_assets.settings import REGISTERED_MODEL_NAME, StatePaths
from mlops_assets.warehouse import Warehouse

EXIT_OK = 0
EXIT_UNKNOWN_VERSION = 2
EXIT_GATE_NOT_PASSED = 3
EXIT_NO_PREVIOUS_CHAMPION = 4
EXIT_WAREHOUSE_BUSY = 5
EXIT_NO_CHAMPION_AT_TIME = 6
EXIT_STORE_ERROR = 7
EXIT_USAGE = 64

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}   success (also: promote of the version that already is champion, nothing changed)
  {EXIT_UNKNOWN_VERSION}   unknown model version (or no model registered yet)
  {EXIT_GATE_NOT_PASSED}   promote: the version's gate was refused or never ran; needs --force --reason
  {EXIT_NO_PREVIOUS_CHAMPION}   rollback: no champion, or no previous champion in the ledger
  {EXIT_WAREHOUSE_BUSY}   the DuckDB warehouse stayed locked by another writer; nothing changed, retry
  {EXIT_NO_CHAMPION_AT_TIME}   history --at: no version was champion at that time
  {EXIT_STORE_ERROR}   the MLflow registry or the DuckDB warehouse failed (unreachable, unreadable); message names it
  {EXIT_USAGE}  usage error (bad arguments, unparseable --at time, --force without --reason)

times: the ledger records UTC. --at takes ISO 8601; a time with an offset (+02:00 or Z) is converted
to UTC, a time without one is read as UTC. Every time printed is UTC, marked Z.
state: MLOPS_STATE_DIR names the state folder (default ./.mlops); MLFLOW_TRACKING_URI, if set, wins
over the MLflow store in it."""

BENTO_HINT = (
    "the served bento follows the alias once rebuilt: materialize flight_delay_bento (Dagster UI, or `make serve`)"
)
SHOWN_METRICS = ("roc_auc", "log_loss", "precision", "recall", "f1")
# A Dagster step holds the DuckDB file only for one short write; waiting this long outlasts it.
BUSY_WAIT_SECONDS = 10.0

T = TypeVar("T")


class CliError(Exception):
    """An operator-facing failure: a message and the process exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with every command and the exit codes in --help."""
    parser = _Parser(
        prog="mlops-assets",
        description="Operate the champion model: see it, promote a version, roll back, ask who served when.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=REGISTERED_MODEL_NAME, help="registered model name (default %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    status = commands.add_parser(
        "status",
        help="champion, recent candidates with their gate results, last drift figures",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--recent", type=int, default=5, help="how many recent versions to list (default 5)")

    promote = commands.add_parser(
        "promote",
        help="make VERSION the champion (recorded in the ledger, actor operator)",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    promote.add_argument("version", help="model version number, e.g. 3")
    promote.add_argument("--force", action="store_true", help="promote although the gate refused it or never ran")
    promote.add_argument("--reason", help="why; required with --force, recorded in the ledger")

    rollback = commands.add_parser(
        "rollback",
        help="bring back the previous champion (the one before the current champion's promotion)",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rollback.add_argument("--reason", help="why, recorded in the ledger")

    history = commands.add_parser(
        "history",
        help="the promotion ledger; with --at TIME, which version was champion then",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.add_argument("--at", type=parse_time, help="ISO 8601 time; no offset means UTC (e.g. 2024-05-01T12:00Z)")
    return parser


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as naive UTC; an offset is converted, no offset means UTC already."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2024-05-01T12:00:00Z)") from error
    return to_naive_utc(parsed)


def utc_text(at: datetime) -> str:
    """A naive-UTC or aware time printed as UTC with a Z."""
    return to_naive_utc(at).isoformat(sep=" ", timespec="microseconds") + "Z"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command; returns the process exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    if args.command == "promote" and args.force and not (args.reason and args.reason.strip()):
        print("mlops-assets promote: error: --force needs --reason TEXT (it is recorded in the ledger)", file=err)
        return EXIT_USAGE
    paths = StatePaths.from_env()
    context = _Context(paths=paths, model=args.model, out=out)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "status": context.status,
        "promote": context.promote,
        "rollback": context.rollback,
        "history": context.history,
    }
    try:
        return commands[args.command](args)
    except CliError as error:
        print(f"mlops-assets {args.command}: error: {error}", file=err)
        return error.code
    except MlflowException as error:
        print(f"mlops-assets {args.command}: error: MLflow at {paths.mlflow_tracking_uri} failed: {error}", file=err)
        return EXIT_STORE_ERROR
    except duckdb.Error as error:
        print(f"mlops-assets {args.command}: error: the warehouse {paths.warehouse} failed: {error}", file=err)
        return EXIT_STORE_ERROR


class _Context:
    """The stores of one state folder, and the commands over them."""

    def __init__(self, paths: StatePaths, model: str, out: TextIO) -> None:
        self.paths = paths
        self.model = model
        self.out = out
        self.client = MlflowClient(tracking_uri=paths.mlflow_tracking_uri, registry_uri=paths.mlflow_tracking_uri)
        self.warehouse = Warehouse(path=str(paths.warehouse))

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def ledger(self) -> list[LedgerRow]:
        def read() -> list[LedgerRow]:
            with self.warehouse.connect(read_only=True) as con:
                return read_ledger(con, self.model)

        return _while_busy(read, self.paths, read_only=True)

    def status(self, args: argparse.Namespace) -> int:
        self.say(f"state folder: {self.paths.root}")
        self.say(f"model: {self.model} (MLflow {self.paths.mlflow_tracking_uri})")
        champion = champion_version(self.client, self.model)
        if champion is None:
            self.say("champion: none yet (no version has passed the gate)")
        else:
            summary = version_summary(self.client, self.model, champion.version)
            since = [r for r in self.ledger() if r.new_version == champion.version and r.action in (PROMOTED, ROLLBACK)]
            when = (
                f", since {utc_text(since[-1].recorded_at)} ({since[-1].action} by {since[-1].actor})" if since else ""
            )
            self.say(f"champion: v{champion.version}{when}")
            self.say(f"  holdout metrics at its evaluation: {_metrics_text(summary.holdout_metrics)}")
        versions = recent_versions(self.client, self.model, max(args.recent, 0))
        self.say("recent candidates (newest first):" if versions else "recent candidates: none registered yet")
        for summary in versions:
            self.say(_version_line(summary))
        self.say(_drift_text(self.paths))
        return EXIT_OK

    def promote(self, args: argparse.Namespace) -> int:
        version = find_model_version(self.client, self.model, args.version.removeprefix("v"))
        if version is None:
            raise CliError(
                f"unknown version {args.version!r} of model {self.model}{self._known()}", EXIT_UNKNOWN_VERSION
            )
        current = champion_version(self.client, self.model)
        if current is not None and current.version == version.version:
            self.say(f"v{version.version} already holds champion; nothing changed")
            return EXIT_OK
        summary = version_summary(self.client, self.model, version.version)
        gate = summary.gate or "never ran"
        if summary.gate != GATE_PASSED and not args.force:
            why = f": {summary.gate_reason}" if summary.gate_reason else ""
            raise CliError(
                f"v{version.version} gate {gate}{why}; to promote it anyway pass --force --reason TEXT",
                EXIT_GATE_NOT_PASSED,
            )
        reason = (args.reason or "").strip()
        if summary.gate != GATE_PASSED:
            recorded = f"forced past the gate (gate {gate}): {reason}"
        else:
            recorded = f"manual promotion: {reason}" if reason else "manual promotion of a version that passed the gate"
        move = _while_busy(
            lambda: move_champion(self.client, self.warehouse, version, PROMOTED, recorded, "operator"), self.paths
        )
        self._report(move)
        return EXIT_OK

    def rollback(self, args: argparse.Namespace) -> int:
        current = champion_version(self.client, self.model)
        if current is None:
            raise CliError(f"model {self.model} has no champion yet: nothing to roll back", EXIT_NO_PREVIOUS_CHAMPION)
        target = rollback_target(self.ledger(), current.version)
        if target is None:
            raise CliError(
                f"champion v{current.version} has no previous champion in the ledger: nothing to roll back to",
                EXIT_NO_PREVIOUS_CHAMPION,
            )
        version = find_model_version(self.client, self.model, target)
        if version is None:
            raise CliError(f"previous champion v{target} no longer exists in the registry", EXIT_UNKNOWN_VERSION)
        reason = (args.reason or "").strip()
        recorded = f"rollback from v{current.version}" + (f": {reason}" if reason else "")
        move = _while_busy(
            lambda: move_champion(self.client, self.warehouse, version, ROLLBACK, recorded, "operator"), self.paths
        )
        self._report(move)
        return EXIT_OK

    def history(self, args: argparse.Namespace) -> int:
        rows = self.ledger()
        if args.at is None:
            if not rows:
                self.say("the promotion ledger is empty")
            for row in rows:
                self.say(_ledger_line(row))
            return EXIT_OK
        row = champion_at(rows, args.at)
        if row is None:
            first = next((r for r in rows if r.action in (PROMOTED, ROLLBACK)), None)
            later = f" (first promotion at {utc_text(first.recorded_at)})" if first else " (no promotion recorded yet)"
            raise CliError(f"no version was champion at {utc_text(args.at)}{later}", EXIT_NO_CHAMPION_AT_TIME)
        self.say(
            f"at {utc_text(args.at)} the champion was v{row.new_version} "
            f"({row.action} at {utc_text(row.recorded_at)} by {row.actor}: {row.reason})"
        )
        return EXIT_OK

    def _known(self) -> str:
        known = [s.version for s in recent_versions(self.client, self.model, 20)]
        return f" (known versions: {', '.join(known)})" if known else " (no version registered yet)"

    def _report(self, move: ChampionMove) -> None:
        holders = champion_holders(self.client, self.model)
        previous = f"v{move.previous.version}" if move.previous else "none"
        recorded = utc_text(move.row.recorded_at)
        self.say(f"champion: {previous} -> v{move.new.version} ({move.row.action}, recorded {recorded})")
        self.say(f"  reason: {move.row.reason}")
        self.say(f"  versions holding champion: {', '.join(f'v{v}' for v in holders)}")
        self.say(f"hint: {BENTO_HINT}")


def _while_busy(action: Callable[[], T], paths: StatePaths, read_only: bool = False) -> T:
    """Run a warehouse action once no other process holds the DuckDB file, waiting a few seconds at most.

    Warehouse.connect itself waits minutes for a lock (right for a pipeline step); an operator gets a
    clear answer instead, before anything is changed.
    """
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    while paths.warehouse.exists():
        try:
            duckdb.connect(str(paths.warehouse), read_only=read_only).close()
            break
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            if time.monotonic() >= deadline:
                raise CliError(
                    f"the warehouse {paths.warehouse} stayed locked by another process for "
                    f"{BUSY_WAIT_SECONDS:.0f} s (a Dagster run writing?); nothing changed, try again",
                    EXIT_WAREHOUSE_BUSY,
                ) from error
            time.sleep(0.25)
    return action()


def _metrics_text(metrics: dict[str, float | None] | None) -> str:
    if not metrics:
        return "none recorded"
    shown = [k for k in SHOWN_METRICS if k in metrics] or sorted(metrics)
    return ", ".join(f"{k} {metrics[k]:.4f}" if metrics[k] is not None else f"{k} n/a" for k in shown)


def _version_line(summary: VersionSummary) -> str:
    champion = " [champion]" if summary.is_champion else ""
    gate = summary.gate or "not run"
    metric = summary.holdout_metrics.get("roc_auc")
    auc = f"roc_auc {metric:.4f}" if metric is not None else "roc_auc n/a"
    reason = f"  ({summary.gate_reason})" if summary.gate_reason else ""
    return f"  v{summary.version}{champion}  registered {utc_text(summary.created_at)}  gate {gate}  {auc}{reason}"


def _ledger_line(row: LedgerRow) -> str:
    previous = f"v{row.previous_version}" if row.previous_version else "none"
    new = f"v{row.new_version}" if row.new_version else "none"
    return (
        f"{utc_text(row.recorded_at)}  {row.action:<8}  {new:<5} (champion before: {previous})  by {row.actor}: "
        f"{row.reason}\n    candidate: {_metrics_text(row.candidate_metrics)}\n"
        f"    champion:  {_metrics_text(row.champion_metrics)}"
    )


def _drift_text(paths: StatePaths) -> str:
    summary_path = paths.reports / "drift_summary.json"
    if not summary_path.exists():
        return "drift: no drift report yet"
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as error:
        return f"drift: {summary_path} is not valid JSON ({error})"
    share = summary.get("share_of_drifted_columns")
    drifted = summary.get("drifted_columns")
    if isinstance(drifted, list | dict):
        columns = f"{len(drifted)} drifted column(s)" + (f": {', '.join(map(str, drifted))}" if drifted else "")
    elif drifted is None:
        columns = "drifted columns not recorded"
    else:
        columns = f"{drifted} drifted column(s)"
    share_text = f"{float(share):.4f}" if isinstance(share, int | float) else "n/a"
    generated = summary.get("generated_at", "unknown time")
    return f"drift: share of drifted columns {share_text}, {columns} (report generated {generated})"


if __name__ == "__main__":
    sys.exit(main())
