"""The server's records and settings: files, batches, the pace, and the API error.

Records are mutable pydantic models so they persist to JSON as they are; every
change goes through :class:`batchor.testing.store.BatchStore`, under its lock.
Times are kept as float epoch seconds and rendered as integer seconds, as
OpenAI does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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

MalformKind = Literal["invalid_json_line", "invalid_reply_text"]


class BatchPace(BaseModel):
    """Seconds a batch spends in each phase; all 0 (the default) is instant.

    Even with zero pace a create returns ``validating``: a batch moves on only
    when the server is next asked about it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    validating: float = Field(default=0.0, ge=0)
    in_progress: float = Field(default=0.0, ge=0)
    finalizing: float = Field(default=0.0, ge=0)
    cancelling: float = Field(default=0.0, ge=0)


class ApiError(Exception):
    """An HTTP error answered with OpenAI's envelope ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class FileRecord(BaseModel):
    """One stored file: an uploaded input, or a batch's output or error file."""

    id: str
    sequence: int
    bytes: int
    created_time: float
    filename: str
    purpose: str

    def to_api(self) -> dict[str, Any]:
        """Render as OpenAI's ``file`` object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_time),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


class BatchErrorEntry(BaseModel):
    """One entry of a failed batch's ``errors.data``."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None


class RequestFault(BaseModel):
    """A planned per-request failure, written to the error file with this status and code."""

    status_code: int
    code: str
    message: str


class BatchFault(BaseModel):
    """A planned whole-batch outcome: ``fail`` or ``expire`` after ``completed_fraction``."""

    kind: Literal["fail", "expire"]
    code: str = "batch_failed"
    message: str = ""
    completed_fraction: float = 0.0


class BatchRecord(BaseModel):
    """Everything the server knows about one batch.

    ``custom_ids``, ``model``, ``tokens`` and ``request_count`` come from reading
    the input file at create time; ``validation_errors`` too, but they only
    become ``errors`` (and the batch ``failed``) when validation ends.
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
    custom_ids: list[str] = Field(default_factory=list)
    validation_errors: list[BatchErrorEntry] = Field(default_factory=list)
    errors: list[BatchErrorEntry] | None = None
    completed_count: int = 0
    failed_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
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
        usage = None
        if self.status == "completed" or self.input_tokens or self.output_tokens:
            usage = {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            }
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
            "usage": usage,
            "metadata": self.metadata,
        }
