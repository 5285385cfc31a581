"""The values that cross the storage boundary: rows as records, and what the engine
hands storage to write. Plain frozen dataclasses; no SQL here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from batchor.results import ItemStatus, RunControlState, RunStatus
from batchor.types import Usage


class BatchState(StrEnum):
    """A local batch's lifecycle. ``planned`` .. ``in_flight`` hold budget."""

    PLANNED = "planned"  # items claimed, budget reserved, nothing sent yet
    UPLOADED = "uploaded"  # input file uploaded, batch not created
    CREATING = "creating"  # create requested: after a crash, adopt rather than create again
    IN_FLIGHT = "in_flight"  # the provider has it
    COLLECTED = "collected"  # results recorded, budget freed
    RELEASED = "released"  # never created; its items went back to pending


ACTIVE_BATCH_STATES = (
    BatchState.PLANNED,
    BatchState.UPLOADED,
    BatchState.CREATING,
    BatchState.IN_FLIGHT,
)


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_pk: int
    run_id: str
    status: RunStatus
    control_state: RunControlState
    control_reason: str | None
    provider: str | None
    model: str
    config: str
    source_identity: str | None
    source_checkpoint: str | None
    ingest_complete: bool
    item_count: int
    next_segment: int
    next_submit_at: float | None
    cost_limit_usd: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    last_error: str | None
    raw_outputs_exported_at: float | None
    created_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create: its id, job config (JSON), provider and source."""

    run_id: str
    provider: str
    model: str
    config: str
    config_fingerprint: str
    source_identity: str | None
    cost_limit_usd: float | None = None


@dataclass(frozen=True, slots=True)
class BatchRecord:
    batch_pk: int
    run_pk: int
    batch_number: int
    local_key: str
    model: str
    budget_scope: str | None
    state: BatchState
    provider_batch_id: str | None
    input_file_id: str | None
    provider_status: str | None
    request_count: int
    estimated_tokens: int
    budget_units: int
    bytes: int
    created_at: float
    output_artifact: str | None
    error_artifact: str | None


class NewItem(NamedTuple):
    """An ingested item: where its request line is, and its metadata JSON.

    A named tuple rather than a frozen dataclass: one is made per ingested item,
    and a tuple is made several times faster."""

    item_index: int
    item_id: str
    segment: int
    request_offset: int
    request_length: int
    estimated_tokens: int
    metadata_json: str | None


@dataclass(frozen=True, slots=True)
class StoredItem:
    """A terminal item as results read it."""

    item_id: str
    item_index: int
    status: ItemStatus
    attempts: int
    resubmissions: int
    sequence: int | None
    output_text: str | None
    error_code: str | None
    error_message: str | None
    error_retryable: bool | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    reasoning_tokens: int | None
    metadata_json: str | None


@dataclass(frozen=True, slots=True)
class RunCounts:
    pending: int = 0
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    estimated_input_tokens: int = 0
    estimated_pending_tokens: int = 0
    """Estimated input tokens of the items still pending."""
    estimated_submitted_tokens: int = 0
    """Estimated input tokens of the items in batches at the provider."""
    batches_in_flight: int = 0
    batches_total: int = 0

    @property
    def usage(self) -> Usage:
        """The tokens the provider reported, summed over the run."""
        return Usage(
            input_tokens=self.input_tokens,
            cached_input_tokens=self.cached_input_tokens,
            output_tokens=self.output_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )


# -- what planning reads and decides ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """What packing needs to know about a pending item."""

    item_index: int
    estimated_tokens: int
    line_bytes: int


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """The packed prefix of the pending queue.

    The batch holds every pending item with index <= ``last_index`` except the
    ``oversized`` ones, which can never fit any batch and must fail.
    ``budget_units`` is what the batch holds of its scope's budget.
    """

    last_index: int | None = None
    request_count: int = 0
    estimated_tokens: int = 0
    budget_units: int = 0
    bytes: int = 0
    oversized: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FailedItems:
    """Items to fail for good, with one error (for example: too large for any batch)."""

    item_indexes: list[int]
    error_code: str
    error_message: str


# -- what collection reads and decides ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchItemState:
    """An item of a batch being collected: how often it already ran and was resubmitted."""

    item_index: int
    item_id: str
    attempts: int
    resubmissions: int


@dataclass(frozen=True, slots=True)
class ItemUpdate:
    """The new state of one item of a collected batch, as the engine decided it.

    ``status`` is ``pending`` (submit again, not before ``not_before``),
    ``completed`` or ``failed``. Token counts are added to the item's totals.
    """

    item_index: int
    status: ItemStatus
    attempts: int
    resubmissions: int
    not_before: float | None = None
    output_text: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_retryable: bool | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
