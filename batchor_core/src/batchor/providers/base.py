"""The narrow, provider-neutral protocol between the engine and a batch API.

The engine speaks only these types. Everything that differs between providers
lives behind :class:`BatchProvider`: building a request line and its token
estimate, the provider's limits, submitting (file upload + create, or inline
requests), finding a batch a crash left unrecorded, reporting a batch's state,
streaming its result files and parsing each line into a :class:`RequestOutcome`.
Provider SDK errors become :class:`~batchor.errors.ProviderError` subclasses
inside each provider module.

:class:`ProviderConfig` is the base of each provider's settings; its ``kind``
is stored with a run, so a fresh process rebuilds the right adapter.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, model_validator

from batchor.errors import Refusal
from batchor.providers.credentials import without_credentials
from batchor.types import FrozenConfig, PromptParts, Usage

# -- what the engine is told about batches ------------------------------------------------


class BatchStatus(StrEnum):
    """A provider batch's lifecycle state, in neutral terms.

    Providers map their own states onto these: an Anthropic batch that ``ended``
    is ``completed`` (its per-request results say which requests expired), a
    Gemini ``JOB_STATE_RUNNING`` batch is ``in_progress``.
    """

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
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)


@dataclass(frozen=True, slots=True)
class ProviderBatchError:
    """One entry of a failed batch's error list (``line`` is 1-based when given)."""

    code: str
    message: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderBatch:
    """What the provider says about one batch.

    ``batch_key`` is batchor's local key for it when the provider kept one (batch
    metadata, a display name); ``result_files`` are the references to download,
    in order, once it is terminal; ``refusal`` is set when the provider refused
    the batch as a whole for one of its limits.
    """

    batch_id: str
    status: BatchStatus
    created_at: float
    batch_key: str | None = None
    result_files: tuple[str, ...] = ()
    errors: tuple[ProviderBatchError, ...] = ()
    refusal: Refusal | None = None
    usage: Usage | None = None


class OutcomeKind(StrEnum):
    """What became of one request of a batch."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The provider executed the request and it failed (``retryable`` says if another
    attempt may succeed)."""
    NOT_EXECUTED = "not_executed"
    """The provider never ran it (its batch expired or was cancelled first)."""


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """One parsed line of a result file.

    ``output_text`` is set on success. On failure ``error_code`` and
    ``error_message`` explain it.
    """

    custom_id: str
    kind: OutcomeKind = OutcomeKind.SUCCEEDED
    output_text: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False
    usage: Usage = field(default_factory=Usage)

    @property
    def succeeded(self) -> bool:
        return self.kind is OutcomeKind.SUCCEEDED


def tool_calls_text(calls: list[tuple[str, Any]]) -> str:
    """The ``output_text`` of a reply that calls tools instead of answering:
    ``{"tool_calls": [{"name": ..., "arguments": {...}}]}`` (the same for every
    provider; arguments parsed from JSON text when they are)."""
    decoded = []
    for name, arguments in calls:
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments)
        decoded.append({"name": name, "arguments": arguments})
    return json.dumps({"tool_calls": decoded}, ensure_ascii=False)


def json_object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty dict (for reading result lines
    tolerantly)."""
    return value if isinstance(value, dict) else {}


def json_int(value: Any) -> int:
    """``value`` if it is an integer (not a bool), else 0 (for usage counts)."""
    return value if type(value) is int else 0


def request_target(request: Any) -> str:
    """``POST http://host:port/v1/batches``: what an SDK's (httpx) request was sent to,
    without credentials or query, for the message of a connection error."""
    if request is None:
        return "no request"
    url = request.url
    port = f":{url.port}" if url.port else ""
    return f"{request.method} {url.scheme}://{url.host}{port}{url.path}"


class ResultLineError(ValueError):
    """A result line the provider module cannot read (the engine skips and logs it;
    the item it was for then counts as missing)."""


# -- what the engine is told about the provider -------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """Hard limits of one batch: requests, bytes of its input, bytes of one request."""

    max_requests_per_batch: int
    max_batch_bytes: int
    max_request_bytes: int


class BudgetUnit(StrEnum):
    """What a provider's queue limit counts."""

    TOKENS = "tokens"
    REQUESTS = "requests"


def budget_within(limit: int, target_ratio: float, headroom: int) -> int:
    """What a configured enqueue ``limit`` lets batchor use: ``min(limit * target_ratio,
    limit - headroom)``."""
    return int(min(limit * target_ratio, limit - headroom))


@dataclass(frozen=True, slots=True)
class EnqueueBudget:
    """How much work may wait at the provider at once for one model, across every run
    sharing the storage (``total``), and at most in one batch (``per_batch``)."""

    unit: BudgetUnit
    total: int
    per_batch: int | None = None


@dataclass(frozen=True, slots=True)
class RequestLine:
    """A serialized request line and its estimated input tokens."""

    data: bytes
    estimated_tokens: int


class OutputKind(StrEnum):
    """What a successful ``output_text`` holds: text (or the JSON of a
    structured-output model), or JSON that is the output itself: an embedding
    vector, or other data (a moderation verdict)."""

    TEXT = "text"
    EMBEDDING = "embedding"
    DATA = "data"


class BatchProvider(Protocol):
    """What the engine needs from a provider, for one model.

    Submission is crash-safe in two steps: :meth:`upload_input` and
    :meth:`create_batch`. The engine stores what :meth:`upload_input` returns, then
    records its intent before creating; after a crash (or a create that failed
    without saying whether it made the batch) it asks :meth:`find_batch` for a
    batch it may already have created, giving it that stored reference too.

    A provider that refuses a batch for one of its limits says so either when
    the batch is terminal (:attr:`ProviderBatch.refusal`) or at once, by raising
    :class:`~batchor.BatchRefusedError` from :meth:`upload_input` or
    :meth:`create_batch`; either way the engine learns the limit and plans the
    next batch within it, from the next step.
    """

    @property
    def model(self) -> str: ...

    @property
    def limits(self) -> ProviderLimits: ...

    @property
    def enqueue_budget(self) -> EnqueueBudget | None: ...

    def custom_id(self, item_id: str, item_index: int) -> str:
        """The id a request line carries for this item (unique within a run)."""
        ...

    def build_request_line(self, custom_id: str, prompt: PromptParts) -> RequestLine: ...

    def upload_input(self, path: Path) -> str | None:
        """Upload a batch's input file; the reference to create it from (or None).

        A provider that takes requests inline has nothing to upload; it may return
        None, or a reference of its own that :meth:`find_batch` needs (Anthropic
        notes the newest batch listed, to look no further back than it). Either
        way the engine stores it before the create call and passes it to
        :meth:`create_batch`, :meth:`find_batch` and :meth:`cleanup`; ``path`` is
        written again for every create."""
        ...

    def create_batch(
        self, *, input_ref: str | None, path: Path, batch_key: str, metadata: Mapping[str, str]
    ) -> ProviderBatch: ...

    def find_batch(
        self,
        *,
        batch_key: str,
        created_after: float,
        request_count: int,
        input_ref: str | None,
    ) -> ProviderBatch | None:
        """The batch a crashed :meth:`create_batch` for ``batch_key`` may have made, or
        None if it made none. ``input_ref`` is what :meth:`upload_input` returned;
        ``created_after`` a time (local clock, with a margin) before the create call.

        A :class:`~batchor.TransientProviderError` means the provider cannot tell yet:
        the batch stays "creating" and the engine asks again on a later step."""
        ...

    def get_batch(self, batch_id: str) -> ProviderBatch: ...

    def cancel_batch(self, batch_id: str) -> ProviderBatch: ...

    def download(self, ref: str, destination: BinaryIO) -> None:
        """Stream one of a batch's ``result_files`` into ``destination``."""
        ...

    def cleanup(self, batch_id: str | None, refs: Sequence[str]) -> None:
        """Delete what the provider keeps of a collected (or never created) batch: the
        files ``refs`` (its input and result files) and, where the API allows, the
        batch itself. Something already gone is not an error."""
        ...

    def parse_result_line(self, line: bytes) -> RequestOutcome:
        """One result line as an outcome; :class:`ResultLineError` if unreadable."""
        ...


class EnqueueLimitConfig(FrozenConfig):
    """An enqueued-token limit for a model, and how close to run to it (any provider
    whose queue counts tokens: OpenAI's organisation limit, Gemini's per-model
    "batch enqueued tokens").

    batchor never has more than ``min(enqueued_token_limit * target_ratio,
    enqueued_token_limit - headroom)`` estimated input tokens enqueued (submitted
    and not yet collected) for the model, across every run sharing the storage,
    and never more than ``max_batch_enqueued_tokens`` in a single batch.
    """

    enqueued_token_limit: int = Field(gt=0)
    target_ratio: float = Field(default=0.7, gt=0, le=1)
    headroom: int = Field(default=0, ge=0)
    max_batch_enqueued_tokens: int | None = Field(default=None, gt=0)

    @property
    def enqueued_token_budget(self) -> int:
        """Tokens that may be enqueued at once for this model."""
        return budget_within(self.enqueued_token_limit, self.target_ratio, self.headroom)

    def budget(self) -> EnqueueBudget:
        """The budget the engine plans within, in tokens."""
        return EnqueueBudget(
            unit=BudgetUnit.TOKENS,
            total=self.enqueued_token_budget,
            per_batch=self.max_batch_enqueued_tokens,
        )

    @model_validator(mode="after")
    def _budget_is_positive(self) -> EnqueueLimitConfig:
        if self.enqueued_token_budget <= 0:
            raise ValueError(
                "headroom leaves no enqueued-token budget: "
                f"min({self.enqueued_token_limit} * {self.target_ratio}, "
                f"{self.enqueued_token_limit} - {self.headroom}) <= 0"
            )
        return self


# -- prices -------------------------------------------------------------------------------
# Every provider's batch API charges half its list price. Each provider module keeps
# a table of batch prices (USD per million tokens) for the models it knows, matched by
# the longest prefix of the model name; ``pricing=`` on a provider config extends or
# overrides it per model. A model with no price gives token counts only.


class ModelPrice(FrozenConfig):
    """A model's batch price, in USD per million tokens.

    ``cached_input`` is what input read from the provider's prompt cache costs
    (``None``: the same as ``input``). Reasoning tokens are billed as output.
    """

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _cached_is_not_dearer(self) -> ModelPrice:
        if self.cached_input is not None and self.cached_input > self.input:
            raise ValueError("cached_input may not cost more than input")
        return self

    def cost_usd(self, usage: Usage) -> float:
        """What ``usage`` costs at this price."""
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            (usage.input_tokens - cached) * self.input
            + cached * cached_price
            + usage.output_tokens * self.output
        ) / 1_000_000


def find_price(
    model: str, overrides: Mapping[str, ModelPrice], defaults: Mapping[str, ModelPrice]
) -> ModelPrice | None:
    """The price of ``model``: the longest matching prefix in ``overrides``, else in
    ``defaults``; ``None`` when neither knows it."""
    for table in (overrides, defaults):
        matches = [name for name in table if model.startswith(name)]
        if matches:
            return table[max(matches, key=len)]
    return None


def batch_prices(table: Mapping[str, tuple[float, float, float]]) -> dict[str, ModelPrice]:
    """``{model: (input, cached input, output)}`` as :class:`ModelPrice` values."""
    return {
        model: ModelPrice(input=input_price, cached_input=cached, output=output)
        for model, (input_price, cached, output) in table.items()
    }


# -- provider settings --------------------------------------------------------------------


class ProviderConfig(FrozenConfig):
    """Base of each provider's settings.

    ``api_key`` is held in memory only: it is excluded from ``model_dump()`` and
    ``repr()``, and that dump is what a run stores. A ``base_url`` that carries
    credentials (``http://user:KEY@host/v1``, ``?api-key=KEY``) is stored without
    them, and the key it carried becomes ``api_key`` when none is given (see
    :func:`~batchor.providers.credentials.without_credentials`). The fields in
    :attr:`OPERATIONAL_FIELDS` say where and how to reach the API, not what to
    ask it, so they may change between processes without making it another job.
    """

    OPERATIONAL_FIELDS: ClassVar[tuple[str, ...]] = (
        "base_url",
        "poll_interval",
        "request_timeout",
        "max_retries",
        "pricing",
    )
    DEFAULT_PRICES: ClassVar[Mapping[str, ModelPrice]] = {}
    """The provider's batch prices by model-name prefix."""
    DISPLAY_NAME: ClassVar[str] = "the provider"
    """The provider's name in messages."""
    API_KEY_ENVS: ClassVar[tuple[str, ...]] = ()
    """Environment variables the API key is read from when none is given, in order."""
    BASE_URL_ENV: ClassVar[str | None] = None
    """Environment variable the API address is read from when none is given."""

    kind: str
    model: str = Field(min_length=1)
    api_key: str | None = Field(default=None, repr=False, exclude=True)
    base_url: str | None = None
    request_options: dict[str, Any] = Field(default_factory=dict)
    poll_interval: float | None = Field(default=None, gt=0)
    request_timeout: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    """Batch prices by model-name prefix, over the provider's own table."""

    def price(self) -> ModelPrice | None:
        """This model's batch price (``None`` when neither ``pricing`` nor the
        provider's table knows it)."""
        return find_price(self.model, self.pricing, self.DEFAULT_PRICES)

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_base_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("base_url"), str):
            clean, key = without_credentials(data["base_url"])
            if clean != data["base_url"]:
                data = {**data, "base_url": clean}
                if key is not None and not data.get("api_key"):
                    data["api_key"] = key
        return data

    @property
    def output_kind(self) -> OutputKind:
        """What successful outputs hold (see :class:`OutputKind`)."""
        return OutputKind.TEXT

    @property
    def max_output_tokens(self) -> int | None:
        """The most output tokens one request may produce, when the settings say."""
        return None

    @property
    def budget_scope(self) -> str:
        """Which enqueued-work budget this model's batches share: the provider, the
        service's host and the model (never credentials)."""
        host = urlsplit(self.base_url).hostname if self.base_url else None
        return f"{self.kind}:{host or 'default'}:{self.model}"

    def output_schema(self, model: type[BaseModel]) -> dict[str, Any]:
        """The JSON schema requests ask for, after checking ``model`` against this
        provider's rules (:class:`~batchor.StructuredOutputSchemaError` names the
        offending path)."""
        raise NotImplementedError

    def create_provider(
        self, *, api_key: str | None, output_schema: dict[str, Any] | None, schema_name: str
    ) -> BatchProvider:
        """The adapter that drives this provider's API (imports its SDK lazily)."""
        raise NotImplementedError
