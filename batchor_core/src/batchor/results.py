"""What a run reports: statuses, per-item results, summaries and pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class ItemStatus(StrEnum):
    """An item's state: ``pending -> submitted -> completed | failed``."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (ItemStatus.COMPLETED, ItemStatus.FAILED)


class RunStatus(StrEnum):
    """A run's state: ``running`` until every item is terminal."""

    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self is not RunStatus.RUNNING


class RunControlState(StrEnum):
    """What the operator asked of a run (durable, obeyed by whichever process drives it)."""

    RUNNING = "running"
    PAUSED = "paused"
    CANCEL_REQUESTED = "cancel_requested"


COST_LIMIT_REASON = "cost_limit"
"""``control_reason`` of a run paused because its next batch would cross its cost limit."""


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why an item failed. ``retryable`` says whether another attempt could succeed."""

    code: str
    message: str
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens the provider reported for an item, summed over its attempts.

    ``cached_input_tokens`` are the part of ``input_tokens`` read from the
    provider's prompt cache; ``reasoning_tokens`` the part of ``output_tokens``
    spent on reasoning.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The terminal result of one item.

    ``output`` is the parsed structured-output model (or the embedding vector,
    or ``None`` for plain text); ``output_text`` is the raw text it was parsed
    from. ``attempts`` counts executions by the provider; ``resubmissions`` the
    times the item was sent again because the provider never ran it (an expired
    batch, a missing line). ``sequence`` numbers terminal results 1, 2, 3... in
    the order they became terminal, without gaps.
    """

    item_id: str
    status: ItemStatus
    output: Any
    output_text: str | None
    error: ItemError | None
    attempts: int
    usage: TokenUsage
    metadata: Mapping[str, Any]
    sequence: int
    resubmissions: int = 0

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (``output`` as plain data)."""
        output = self.output
        if hasattr(output, "model_dump"):
            output = output.model_dump(mode="json")
        return {
            "item_id": self.item_id,
            "sequence": self.sequence,
            "status": self.status.value,
            "attempts": self.attempts,
            "resubmissions": self.resubmissions,
            "output": output,
            "output_text": self.output_text,
            "error": None
            if self.error is None
            else {
                "code": self.error.code,
                "message": self.error.message,
                "retryable": self.error.retryable,
            },
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "cached_input_tokens": self.usage.cached_input_tokens,
                "reasoning_tokens": self.usage.reasoning_tokens,
            },
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A snapshot of a run: counts by item status, batches, tokens and cost.

    Costs are at the provider's batch prices (``None`` for a model without a
    known price; see ``pricing=`` on the provider config): ``cost_usd`` is what
    the usage the provider reported costs; ``estimated_remaining_cost_usd`` what
    the items not yet terminal should cost (their estimated input tokens, and
    output as :class:`JobPlan` assumes it); ``estimated_cost_usd`` the two
    together. ``learned_limits`` are the limits the provider's refusals taught
    for this run's provider and model (``kind -> value``).
    """

    run_id: str
    status: RunStatus
    control_state: RunControlState
    model: str
    total_items: int
    pending_items: int
    submitted_items: int
    completed_items: int
    failed_items: int
    batches_in_flight: int
    batches_total: int
    input_tokens: int
    output_tokens: int
    estimated_cost_usd: float | None
    ingest_complete: bool
    estimated_input_tokens: int = 0
    """Input tokens of all items as estimated before submission (offline, conservative)."""
    control_reason: str | None = None
    last_error: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    provider: str = "openai"
    """Which provider the run uses (``openai``, ``anthropic``, ``gemini``...)."""
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    estimated_remaining_cost_usd: float | None = None
    cost_limit_usd: float | None = None
    learned_limits: Mapping[str, int] = field(default_factory=dict)

    @property
    def terminal_items(self) -> int:
        return self.completed_items + self.failed_items

    def progress_key(self) -> tuple[object, ...]:
        """What changes when the run makes progress (not the clock): a watcher that
        sees the same key again knows nothing happened."""
        return (
            self.status,
            self.control_state,
            self.pending_items,
            self.submitted_items,
            self.completed_items,
            self.failed_items,
            self.batches_in_flight,
            self.batches_total,
        )

    @property
    def counts(self) -> dict[ItemStatus, int]:
        """Items by status."""
        return {
            ItemStatus.PENDING: self.pending_items,
            ItemStatus.SUBMITTED: self.submitted_items,
            ItemStatus.COMPLETED: self.completed_items,
            ItemStatus.FAILED: self.failed_items,
        }


@dataclass(frozen=True, slots=True)
class JobPlan:
    """What :meth:`BatchRunner.plan` found a job would submit, without submitting it.

    ``estimated_output_tokens`` assumes ``max_output_tokens`` per request when the
    provider settings set it, else half the input (an assumption, said so by
    ``output_tokens_assumed``). ``estimated_cost_usd`` is at the provider's batch
    prices (None for a model without a known price). ``fingerprint`` changes
    when any request line, item id, metadata or the job's settings change: equal
    fingerprints mean the same requests. ``oversized_items`` can never be
    submitted (larger than any batch may be).
    """

    provider: str
    model: str
    item_count: int
    batch_count: int
    estimated_input_tokens: int
    estimated_output_tokens: int
    output_tokens_assumed: bool
    estimated_cost_usd: float | None
    first_request_line: str | None
    fingerprint: str
    oversized_items: int = 0


@dataclass(frozen=True, slots=True)
class TerminalResultsPage:
    """Terminal results after a cursor; pass ``next_after_sequence`` to read on."""

    items: list[ItemResult]
    next_after_sequence: int


@dataclass(frozen=True, slots=True)
class TerminalResultsExport:
    """What :meth:`Run.export_terminal_results` wrote."""

    path: Path
    count: int
    next_after_sequence: int


@dataclass(frozen=True, slots=True)
class ArtifactExport:
    """What :meth:`Run.export_artifacts` wrote: the files and their manifest."""

    directory: Path
    manifest_path: Path
    results_path: Path
    exported_artifact_paths: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ArtifactPrune:
    """What :meth:`Run.prune_artifacts` removed and why it kept the rest."""

    removed_artifact_paths: list[str] = field(default_factory=list)
    kept_artifact_paths: list[str] = field(default_factory=list)
