"""The OpenAI emulator's records: files and batches, and how each renders as an API object.

Records are mutable pydantic models so they persist to JSON as they are; every
change goes through :class:`batchor.testing.openai_store.OpenAIStore`, under its
lock. Times are kept as float epoch seconds and rendered as integer seconds, as
OpenAI does. A field added later has a default, so a data directory written by an
older server still loads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from batchor.testing.models import BatchFault, BatchPace, MalformKind, RequestFault

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})
ENQUEUED_STATUSES: frozenset[str] = frozenset({"validating", "in_progress", "finalizing"})
"""Statuses whose tokens count against the model's enqueued-token limit."""


class FileRecord(BaseModel):
    """One stored file: an uploaded input, or a batch's output or error file.

    ``expires_time`` is when the file disappears (``None``: kept until deleted).
    """

    id: str
    sequence: int
    bytes: int
    created_time: float
    filename: str
    purpose: str
    expires_time: float | None = None

    def to_api(self) -> dict[str, Any]:
        """Render as OpenAI's ``file`` object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_time),
            "expires_at": None if self.expires_time is None else int(self.expires_time),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


class BatchErrorEntry(BaseModel):
    """One entry of a failed batch's ``errors.data``."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None


class BatchRecord(BaseModel):
    """Everything the server knows about one batch.

    ``custom_ids``, ``model``, ``tokens`` and ``request_count`` come from reading
    the input file at create time; ``validation_errors`` too, but they only
    become ``errors`` (and the batch ``failed``) when validation ends. The token
    totals (``input_tokens`` ... ``reasoning_tokens``) are what the answered
    requests reported, filled in when the batch ends.
    """

    id: str
    sequence: int
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    pace: BatchPace
    status: BatchStatus = "validating"
    model: str | None = None
    tokens: int = 0
    request_count: int = 0
    input_bytes: int = 0
    custom_ids: list[str] = Field(default_factory=list)
    validation_errors: list[BatchErrorEntry] = Field(default_factory=list)
    errors: list[BatchErrorEntry] | None = None
    completed_count: int = 0
    failed_count: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    output_expires_after: int | None = None
    created_time: float
    expires_time: float
    in_progress_time: float | None = None
    finalizing_time: float | None = None
    completed_time: float | None = None
    failed_time: float | None = None
    expired_time: float | None = None
    cancelling_time: float | None = None
    cancelled_time: float | None = None
    processed_at_cancel: int = 0
    batch_fault: BatchFault | None = None
    request_faults: dict[int, RequestFault] = Field(default_factory=dict)
    malformed: dict[int, MalformKind] = Field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_enqueued(self) -> bool:
        return self.status in ENQUEUED_STATUSES

    def to_api(self) -> dict[str, Any]:
        """Render as OpenAI's ``batch`` object."""

        def stamp(value: float | None) -> int | None:
            return None if value is None else int(value)

        counted = self.in_progress_time is not None or self.completed_count or self.failed_count
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": None
            if self.errors is None
            else {"object": "list", "data": [e.model_dump() for e in self.errors]},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created_time),
            "in_progress_at": stamp(self.in_progress_time),
            "expires_at": stamp(self.expires_time),
            "finalizing_at": stamp(self.finalizing_time),
            "completed_at": stamp(self.completed_time),
            "failed_at": stamp(self.failed_time),
            "expired_at": stamp(self.expired_time),
            "cancelling_at": stamp(self.cancelling_time),
            "cancelled_at": stamp(self.cancelled_time),
            "request_counts": {
                "total": self.request_count if counted else 0,
                "completed": self.completed_count,
                "failed": self.failed_count,
            },
            # The spec: "Only populated on batches created after September 7, 2025", i.e.
            # always now; zeros until the batch ends and its answers are counted.
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": self.cached_tokens},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
                "total_tokens": self.input_tokens + self.output_tokens,
            },
            "metadata": self.metadata,
        }
