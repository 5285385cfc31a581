"""What the command line prints: summaries, the runs table, JSON and progress.

Convention: stdout carries the command's result (a run id, a summary, a table;
with ``--json`` exactly one JSON document), stderr carries narration and
errors. Progress is a live rich bar on an interactive terminal and plain
periodic lines otherwise, so logs and CI output stay readable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from batchor.results import JobPlan, RunControlState, RunSummary

PLAIN_PROGRESS_INTERVAL = 30.0
"""Seconds between plain progress lines while nothing changes."""
PLAIN_PROGRESS_MIN_INTERVAL = 1.0
"""Least seconds between two plain progress lines, however fast the run moves."""
PLAIN_INGEST_INTERVAL = 5.0
"""Least seconds between two plain ingestion lines after the first."""


def timestamp(epoch: float | None) -> str | None:
    """ISO 8601 UTC, to the second (``2026-03-29T12:00:00Z``)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """``H:MM:SS``."""
    whole = max(0, int(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def summary_record(summary: RunSummary) -> dict[str, Any]:
    """A run summary as JSON-ready data (times as ISO 8601 UTC)."""
    record = asdict(summary)
    record["status"] = summary.status.value
    record["control_state"] = summary.control_state.value
    record["terminal_items"] = summary.terminal_items
    record["created_at"] = timestamp(summary.created_at)
    record["finished_at"] = timestamp(summary.finished_at)
    return record


def echo_json(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def note(message: str) -> None:
    """Narration on stderr."""
    typer.echo(message, err=True)


def status_text(summary: RunSummary) -> str:
    """``running``, ``running (paused)``, ``completed_with_failures``..."""
    if summary.status.is_terminal or summary.control_state is RunControlState.RUNNING:
        return summary.status.value
    return f"{summary.status.value} ({summary.control_state.value})"


def format_summary(summary: RunSummary) -> str:
    """The human view of a run, one ``label  value`` line per fact."""
    lines = [
        ("run", summary.run_id),
        ("status", summary.status.value),
    ]
    if summary.control_state is not RunControlState.RUNNING:
        reason = f" ({summary.control_reason})" if summary.control_reason else ""
        lines.append(("control", f"{summary.control_state.value}{reason}"))
    lines += [
        ("model", summary.model),
        ("provider", summary.provider),
        (
            "items",
            f"{summary.terminal_items:,}/{summary.total_items:,} terminal: "
            f"{summary.completed_items:,} completed, {summary.failed_items:,} failed, "
            f"{summary.pending_items:,} pending, {summary.submitted_items:,} submitted",
        ),
        (
            "batches",
            f"{summary.batches_in_flight:,} in flight, {summary.batches_total:,} total",
        ),
        ("tokens", token_text(summary)),
        ("cost", cost_text(summary)),
    ]
    if summary.learned_limits:
        lines.append(
            (
                "learned limits",
                ", ".join(
                    f"{kind} {value:,}" for kind, value in sorted(summary.learned_limits.items())
                ),
            )
        )
    if not summary.ingest_complete:
        lines.append(
            (
                "ingested",
                "not yet: run the same `batchor start` again with "
                f"--run-id {summary.run_id} to finish",
            )
        )
    if summary.last_error:
        lines.append(("last error", summary.last_error))
    lines.append(("created", timestamp(summary.created_at) or "-"))
    lines.append(("finished", timestamp(summary.finished_at) or "-"))
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in lines)


def token_text(summary: RunSummary) -> str:
    """``1,200 input (300 cached), 80 output (20 reasoning)``."""
    cached = f" ({summary.cached_input_tokens:,} cached)" if summary.cached_input_tokens else ""
    reasoning = f" ({summary.reasoning_tokens:,} reasoning)" if summary.reasoning_tokens else ""
    return f"{summary.input_tokens:,} input{cached}, {summary.output_tokens:,} output{reasoning}"


def cost_text(summary: RunSummary) -> str:
    """``$0.0123 spent, $0.0400 estimated for the rest (limit $1.0000)``."""
    if summary.cost_usd is None:
        return "unknown model price (tokens only; give pricing= on the provider config)"
    text = f"${summary.cost_usd:.4f} spent"
    remaining = summary.estimated_remaining_cost_usd
    if remaining:
        text += f", ${remaining:.4f} estimated for the rest"
    if summary.cost_limit_usd is not None:
        text += f" (limit ${summary.cost_limit_usd:.4f})"
    return text


def format_plan(plan: JobPlan, cost_limit: float | None = None) -> str:
    """The human view of a :class:`~batchor.JobPlan`."""
    output = f"{plan.estimated_output_tokens:,} output"
    if plan.output_tokens_assumed:
        output += " (assumed: half the input; set max_output_tokens to bound it)"
    cost = plan.estimated_cost_usd
    lines = [
        ("provider", plan.provider),
        ("model", plan.model),
        ("items", f"{plan.item_count:,}"),
        ("batches", f"{plan.batch_count:,}"),
        ("tokens", f"{plan.estimated_input_tokens:,} input (estimated), {output}"),
        (
            "cost",
            "unknown model price (give pricing= on the provider config)"
            if cost is None
            else f"${cost:.4f} at batch prices (estimate)"
            + ("" if cost_limit is None else f"; limit ${cost_limit:.4f}"),
        ),
    ]
    if plan.oversized_items:
        lines.append(("too large", f"{plan.oversized_items:,} items fit no batch and would fail"))
    lines.append(("first request", plan.first_request_line or "-"))
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in lines)


RUNS_COLUMNS = (
    "RUN ID", "STATUS", "PROVIDER", "MODEL", "ITEMS", "FAILED", "IN FLIGHT", "CREATED"
)  # fmt: skip


def format_runs_table(summaries: Sequence[RunSummary]) -> str:
    """Runs as aligned plain-text columns (never truncated, easy to grep)."""
    rows = [RUNS_COLUMNS] + [
        (
            summary.run_id,
            status_text(summary),
            summary.provider,
            summary.model,
            f"{summary.terminal_items:,}/{summary.total_items:,}",
            f"{summary.failed_items:,}",
            f"{summary.batches_in_flight:,}",
            timestamp(summary.created_at) or "-",
        )
        for summary in summaries
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(RUNS_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def progress_line(summary: RunSummary, elapsed: float) -> str:
    """One plain progress line."""
    control = ""
    if summary.control_state is not RunControlState.RUNNING and summary.control_reason:
        control = f" [{summary.control_reason}]"
    return (
        f"[{duration(elapsed)}] {summary.run_id} {status_text(summary)}{control}: "
        f"{summary.terminal_items:,}/{summary.total_items:,} items terminal "
        f"({summary.completed_items:,} completed, {summary.failed_items:,} failed), "
        f"{summary.batches_in_flight:,} batches in flight, "
        f"tokens {summary.input_tokens:,} in / {summary.output_tokens:,} out"
    )


class _RunAgeColumn(ProgressColumn):
    """Time since the run was created (frozen once it finished)."""

    def render(self, task: Task) -> Text:
        created: float = task.fields["created_at"]
        finished: float | None = task.fields["finished_at"]
        return Text(duration((finished or time.time()) - created), style="progress.elapsed")


class WaitProgress:
    """Shows a run's progress on stderr while ``batchor wait`` polls it.

    On an interactive terminal: a live bar (items terminal / total, batches in
    flight, tokens, time since the run was created). Otherwise a plain line
    whenever the counts change (at most one a second) and every 30 s while
    they do not, plus a last line when the run ends. A paused run shows the
    pause and its reason.
    """

    def __init__(self) -> None:
        self._console = Console(stderr=True)
        self._live: Progress | None = None
        self._task_id: Any = None
        self._last_key: tuple[object, ...] | None = None
        self._last_line_at = 0.0

    def __enter__(self) -> WaitProgress:
        if self._console.is_interactive:
            self._live = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("items"),
                TextColumn("[progress.percentage]{task.fields[batches]} batches in flight"),
                TextColumn("{task.fields[tokens]}"),
                _RunAgeColumn(),
                console=self._console,
                refresh_per_second=4,
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, traceback)

    def update(self, summary: RunSummary) -> None:
        if self._live is not None:
            self._update_bar(self._live, summary)
            return
        now = time.monotonic()
        key = summary.progress_key()
        since = now - self._last_line_at
        if (
            self._last_key is None
            or summary.status.is_terminal
            or (key != self._last_key and since >= PLAIN_PROGRESS_MIN_INTERVAL)
            or since >= PLAIN_PROGRESS_INTERVAL
        ):
            elapsed = (summary.finished_at or time.time()) - summary.created_at
            typer.echo(progress_line(summary, elapsed), err=True)
            self._last_key, self._last_line_at = key, now

    def _update_bar(self, live: Progress, summary: RunSummary) -> None:
        description = f"{summary.run_id} {status_text(summary)}"
        fields: dict[str, Any] = {
            "batches": f"{summary.batches_in_flight:,}",
            "tokens": f"{summary.input_tokens + summary.output_tokens:,} tokens",
            "created_at": summary.created_at,
            "finished_at": summary.finished_at,
        }
        if self._task_id is None:
            self._task_id = live.add_task(
                description,
                total=summary.total_items,
                completed=summary.terminal_items,
                **fields,
            )
        else:
            live.update(
                self._task_id,
                description=description,
                total=summary.total_items,
                completed=summary.terminal_items,
                **fields,
            )


class IngestProgress:
    """Reports items stored while ``batchor start`` ingests its input (on stderr).

    A spinner with a running count on an interactive terminal; otherwise a line
    (``ingested 10,000 items``) for the first stored slice and then at most one
    every 5 s.
    """

    def __init__(self, run_id: str) -> None:
        self._console = Console(stderr=True)
        self._run_id = run_id
        self._live: Progress | None = None
        self._task_id: Any = None
        self._last_line_at: float | None = None

    def __enter__(self) -> IngestProgress:
        if self._console.is_interactive:
            self._live = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._live.__enter__()
            self._task_id = self._live.add_task(f"{self._run_id}: ingesting", total=None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, traceback)

    def __call__(self, stored_items: int) -> None:
        if self._live is not None:
            self._live.update(
                self._task_id, description=f"{self._run_id}: {stored_items:,} items ingested"
            )
            return
        now = time.monotonic()
        if self._last_line_at is None or now - self._last_line_at >= PLAIN_INGEST_INTERVAL:
            typer.echo(f"{self._run_id}: ingested {stored_items:,} items", err=True)
            self._last_line_at = now
