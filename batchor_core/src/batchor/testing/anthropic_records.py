"""The Anthropic emulator's records: its limits, and a message batch as it renders.

A :class:`MessageBatchRecord` is a mutable pydantic model, so it persists to JSON as
it is; every change goes through :class:`batchor.testing.anthropic_store.AnthropicStore`,
under its lock. Times are float epoch seconds, rendered as Anthropic renders them
(``2026-01-01T00:00:00.000000Z``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from batchor.testing.models import BatchFault, BatchPace, MalformKind, RequestFault

MAX_REQUESTS_PER_BATCH = 100_000
"""Anthropic's limit on the requests of one batch."""

MAX_BATCH_BYTES = 256 * 1024 * 1024
"""Anthropic's limit on the body of one create call (256 MB)."""

BATCH_LIFETIME_SECONDS = 24 * 60 * 60
"""A batch not done this long after it was created expires."""

ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        "overloaded_error",
    }
)
"""The ``error.type`` values Anthropic's API documents."""

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for(status: int, code: str | None = None) -> str:
    """The ``error.type`` of an error with HTTP ``status``: ``code`` itself when it is
    one of Anthropic's types, else the type Anthropic gives that status."""
    if code in ERROR_TYPES:
        return code
    return _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class AnthropicLimits(BaseModel):
    """What Anthropic's Message Batches API limits, for the emulator.

    ``max_requests_per_batch`` (100,000) and ``max_batch_bytes`` (256 MB) bound one
    create call; ``queued_request_limit`` is the workspace's processing queue: the
    requests of every batch not yet ended, across models (``None``: unlimited;
    Anthropic's tiers allow 100,000 to 500,000).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_requests_per_batch: int = Field(default=MAX_REQUESTS_PER_BATCH, gt=0)
    max_batch_bytes: int = Field(default=MAX_BATCH_BYTES, gt=0)
    queued_request_limit: int | None = Field(default=None, gt=0)


BatchState = Literal["in_progress", "canceling", "ended"]
Ending = Literal["processed", "expired", "canceled"]
"""How a batch came to end: its requests all ran, its 24 hours ran out, it was cancelled."""


def timestamp(value: float | None) -> str | None:
    """Anthropic's rendering of a time: RFC 3339 in UTC with microseconds and ``Z``."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class MessageBatchRecord(BaseModel):
    """Everything the emulator knows about one message batch.

    ``custom_ids`` and ``models`` (one per request, in request order) are read from
    the create call's body, which is kept on disk beside the record. The outcome
    counts are set when the batch ends, from writing its results.
    """

    id: str
    sequence: int
    pace: BatchPace
    created_time: float
    expires_time: float
    request_count: int
    custom_ids: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    body_bytes: int = 0
    status: BatchState = "in_progress"
    ending: Ending | None = None
    cancel_time: float | None = None
    ended_time: float | None = None
    processed_at_cancel: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0
    batch_fault: BatchFault | None = None
    request_faults: dict[int, RequestFault] = Field(default_factory=dict)
    malformed: dict[int, MalformKind] = Field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.status == "ended"

    @property
    def processing_start(self) -> float:
        """When the batch starts answering requests (``pace.validating`` after creation)."""
        return self.created_time + self.pace.validating

    @property
    def processing_end(self) -> float:
        """When every request has been answered and the batch ends, unless it expires or
        is cancelled first."""
        return (
            self.processing_start
            + self.pace.processing_seconds(self.request_count)
            + self.pace.finalizing
        )

    def processed_at(self, at: float) -> int:
        """How many requests the batch has answered by time ``at``."""
        duration = self.pace.processing_seconds(self.request_count)
        elapsed = at - self.processing_start
        if duration <= 0:
            return self.request_count if elapsed >= 0 else 0
        return int(self.request_count * min(1.0, max(0.0, elapsed / duration)))

    def to_api(self, url_root: str) -> dict[str, Any]:
        """Render as Anthropic's ``message_batch`` object; ``url_root`` is where this
        server is reached (``http://host:port``), for the absolute ``results_url``."""
        counts = {
            "processing": 0 if self.ended else self.request_count,
            "succeeded": self.succeeded,
            "errored": self.errored,
            "canceled": self.canceled,
            "expired": self.expired,
        }
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": counts,
            "ended_at": timestamp(self.ended_time),
            "created_at": timestamp(self.created_time),
            "expires_at": timestamp(self.expires_time),
            "archived_at": None,
            "cancel_initiated_at": timestamp(self.cancel_time),
            "results_url": f"{url_root}/v1/messages/batches/{self.id}/results"
            if self.ended
            else None,
        }
