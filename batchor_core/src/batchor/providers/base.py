"""The narrow protocol between the engine and a batch provider.

The engine speaks only these types. A provider builds request lines, uploads
and creates batches, reports their state, streams result files and parses each
result line into a :class:`RequestOutcome`. Nothing provider-specific leaks out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Protocol


class ProviderCallError(Exception):
    """A provider call failed. Adapters translate their SDK's errors into the
    subclasses below, so the engine decides what to do without knowing the SDK.
    Messages never carry credentials."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientProviderError(ProviderCallError):
    """Rate limits, 5xx, timeouts, connection errors: try again on a later step."""


class RejectedCallError(ProviderCallError):
    """The provider refused this call as made (400, 404, 422): retrying it unchanged fails."""


class QuotaExhaustedError(ProviderCallError):
    """The account is out of quota or billing is inactive: nothing will succeed until fixed."""


class AuthenticationFailedError(ProviderCallError):
    """The credentials are missing, wrong or lack permission."""


class ProviderBatchStatus(StrEnum):
    """A provider batch's lifecycle state (OpenAI's values)."""

    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_STATUSES


_TERMINAL_STATUSES = frozenset(
    {
        ProviderBatchStatus.COMPLETED,
        ProviderBatchStatus.FAILED,
        ProviderBatchStatus.EXPIRED,
        ProviderBatchStatus.CANCELLED,
    }
)


@dataclass(frozen=True, slots=True)
class ProviderBatchError:
    """One entry of a failed batch's error list (``line`` is 1-based when given)."""

    code: str
    message: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderBatch:
    """What the provider says about one batch."""

    batch_id: str
    status: ProviderBatchStatus
    created_at: float
    metadata: Mapping[str, str] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: tuple[ProviderBatchError, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """One parsed line of a result file.

    ``output_text`` is set on success. On failure ``error_code`` and
    ``error_message`` explain it and ``retryable`` says whether another attempt
    may succeed.
    """

    custom_id: str
    output_text: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True, slots=True)
class RequestLine:
    """A serialized request line and its estimated input tokens."""

    data: bytes
    estimated_tokens: int


class BatchProvider(Protocol):
    """What the engine needs from a provider."""

    @property
    def model(self) -> str: ...

    def build_request_line(
        self, custom_id: str, prompt: str, system_prompt: str | None
    ) -> RequestLine: ...

    def upload_batch_file(self, path: Path) -> str: ...

    def create_batch(self, input_file_id: str, metadata: Mapping[str, str]) -> ProviderBatch: ...

    def get_batch(self, batch_id: str) -> ProviderBatch: ...

    def list_batches(self, created_after: float) -> Iterator[ProviderBatch]: ...

    def cancel_batch(self, batch_id: str) -> ProviderBatch: ...

    def download_file(self, file_id: str, destination: BinaryIO) -> None: ...

    def parse_result_line(self, line: bytes) -> RequestOutcome: ...


def json_object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty dict (for tolerant parsing)."""
    return value if isinstance(value, dict) else {}
