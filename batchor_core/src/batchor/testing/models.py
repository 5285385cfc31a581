"""Settings and fault plans that every provider API of the local server shares.

These are values: immutable, validated at construction (errors name the field),
and serialisable, so a batch can carry the pace it was created with across a
restart. The provider-specific records (an OpenAI file or batch) live beside the
provider's API module, e.g. :mod:`batchor.testing.openai_records`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MalformKind = Literal["invalid_json_line", "invalid_reply_text", "missing_line", "unknown_id"]
"""How :meth:`~batchor.testing.Faults.malform_output` corrupts a request's output."""

MALFORM_KINDS: tuple[MalformKind, ...] = (
    "invalid_json_line",
    "invalid_reply_text",
    "missing_line",
    "unknown_id",
)

INVALID_REPLY_TEXT = 'Sorry, here is the JSON you asked for: {"unterminated": '
"""Reply text written for ``malform_output(kind="invalid_reply_text")``: not JSON."""

UNKNOWN_ID_SUFFIX = "-unknown"
"""Appended to a request's custom id or key by ``malform_output(kind="unknown_id")``."""


class BatchPace(BaseModel):
    """Seconds a batch spends in each phase; all 0 (the default) is instant.

    ``in_progress`` is the fixed part of processing and ``per_request`` is added for
    every request of the batch, so a batch of ``n`` requests processes for
    ``in_progress + n * per_request`` seconds, answering its requests evenly over
    that time. Even with zero pace a create returns ``validating``: a batch moves on
    only when the server is next asked about it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    validating: float = Field(default=0.0, ge=0)
    in_progress: float = Field(default=0.0, ge=0)
    finalizing: float = Field(default=0.0, ge=0)
    cancelling: float = Field(default=0.0, ge=0)
    per_request: float = Field(default=0.0, ge=0)

    def processing_seconds(self, request_count: int) -> float:
        """How long a batch of ``request_count`` requests stays ``in_progress``."""
        return self.in_progress + self.per_request * request_count


class UsageSplit(BaseModel):
    """Which share of the reported tokens are cached input and reasoning output.

    By default no token is cached and none is reasoning. With ``cached_fraction``
    each request reports ``floor(input_tokens * cached_fraction)`` of its input as
    cached; with ``reasoning_ratio`` each reply adds
    ``floor(text_tokens * reasoning_ratio)`` reasoning tokens to its output tokens
    (reasoning tokens are part of ``output_tokens``, as OpenAI reports them). Both
    are deterministic, so a test can compute the cost a client should report.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cached_fraction: float = Field(default=0.0, ge=0, le=1)
    reasoning_ratio: float = Field(default=0.0, ge=0)

    def cached_tokens(self, input_tokens: int) -> int:
        return int(input_tokens * self.cached_fraction)

    def reasoning_tokens(self, text_tokens: int) -> int:
        return int(text_tokens * self.reasoning_ratio)


MAX_FILE_BYTES = 512 * 1024 * 1024
"""OpenAI's limit on one uploaded file (any purpose): larger uploads are refused."""

MAX_BATCH_FILE_BYTES = 200 * 1024 * 1024
"""OpenAI's limit on a batch's input file (209,715,200 bytes): larger ones fail the batch."""

MAX_REQUESTS_PER_BATCH = 50_000
"""OpenAI's limit on the requests of one batch."""


class BatchLimits(BaseModel):
    """The limits a provider enforces on uploads, batches and enqueued tokens.

    The defaults are OpenAI's. ``token_limits`` maps a model to its enqueued-token
    limit; models not listed get ``default_token_limit`` (``None``: unlimited).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_limits: dict[str, int] = Field(default_factory=dict)
    default_token_limit: int | None = Field(default=None, ge=0)
    max_requests_per_batch: int = Field(default=MAX_REQUESTS_PER_BATCH, gt=0)
    max_batch_file_bytes: int = Field(default=MAX_BATCH_FILE_BYTES, gt=0)
    max_file_bytes: int = Field(default=MAX_FILE_BYTES, gt=0)

    @field_validator("token_limits")
    @classmethod
    def _non_negative(cls, limits: dict[str, int]) -> dict[str, int]:
        for model, limit in limits.items():
            if limit < 0:
                raise ValueError(f"token_limits[{model!r}] must be >= 0, got {limit!r}")
        return limits

    def token_limit(self, model: str) -> int | None:
        """The enqueued-token limit of ``model`` (``None``: unlimited)."""
        return self.token_limits.get(model, self.default_token_limit)


class RequestFault(BaseModel):
    """A planned per-request failure, reported with this HTTP status and error code."""

    status_code: int
    code: str
    message: str


class BatchFault(BaseModel):
    """A planned whole-batch outcome: ``fail`` or ``expire`` after ``completed_fraction``.

    ``expired_lines`` (expire only): the requests left unanswered get a
    ``batch_expired`` error line; without it they get no line at all.
    """

    kind: Literal["fail", "expire"]
    code: str = "batch_failed"
    message: str = ""
    completed_fraction: float = 0.0
    expired_lines: bool = True
