"""Anthropic's Message Batches API: settings and the adapter.

The adapter uses the official ``anthropic`` SDK (the ``batchor-core[anthropic]``
extra), imported on first use. Requests go inline: there is no file to upload,
and ``create_batch`` streams the batch's stored request lines as
``{"requests": [...]}``, joined as bytes rather than decoded and encoded again.

**Custom ids.** Anthropic takes 1-64 characters of ``[A-Za-z0-9_-]``, and
batchor sends each id behind an 11-character batch tag (below), which leaves 53.
An item id that fits is its own custom id; any other is mapped to
``<the id with other characters as "_", cut short>--<item index>``. An id that
already ends in ``--<digits>`` counts as one that does not fit, so a mapped id
never equals an id that fits, and two mapped ids differ by their index.

**A crash between "create" and "record the id".** An Anthropic batch carries no
metadata, name or key: once it exists, the API shows its id, its times and its
request counts, and its custom ids only in its results, once it has ended. So
batchor makes the batch recognisable in two ways, and adopts one only on proof:

1. *A marker.* Before the create call, :meth:`AnthropicBatchProvider.upload_input`
   (there is nothing to upload) notes the newest batch the API lists, and the
   engine stores that marker durably, with the intent to create, as the batch's
   input reference. Every batch listed before the marker (the API lists the
   newest first) was created after it.
2. *A tag.* Every custom id is sent as ``<tag>-<custom id>``, the tag being 10
   characters of the SHA-256 of batchor's local batch key (run id and batch
   number); result lines are read back without it.

:meth:`~AnthropicBatchProvider.find_batch` then lists the batches newer than the
marker that hold exactly as many requests as the local batch. One that has ended
is this batch if the first line of its results carries this batch's tag, and is
adopted. One that has not ended cannot be told apart yet, so the step waits for
it (a :class:`~batchor.TransientProviderError`; the batch stays "creating" and
holds its budget, and its results could not have been collected any sooner).
When no candidate is left, no batch was made, and it is created. The create call
itself is never retried by the client, so one call makes at most one batch. A
batch that was created is therefore adopted once, and one that was not is
created once: the same requests are never submitted twice.

Cleanup deletes a collected batch (``DELETE``), which also removes its results
at Anthropic; batchor keeps them as raw artifacts unless the
:class:`~batchor.ArtifactPolicy` says not to.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, model_validator

from batchor.errors import (
    BatchRefusedError,
    ConfigurationError,
    ItemBuildError,
    ProviderAuthenticationError,
    ProviderError,
    ProviderRejectedError,
    QuotaExhaustedError,
    Refusal,
    RefusalKind,
    TransientProviderError,
)
from batchor.providers.anthropic_schema import anthropic_json_schema
from batchor.providers.base import (
    BatchProvider,
    BatchStatus,
    BudgetUnit,
    EnqueueBudget,
    ModelPrice,
    OutcomeKind,
    ProviderBatch,
    ProviderConfig,
    ProviderLimits,
    RequestLine,
    RequestOutcome,
    ResultLineError,
    batch_prices,
    budget_within,
    json_int,
    json_object,
    request_target,
    tool_calls_text,
)
from batchor.providers.tokens import estimate_prompt_parts_tokens, estimate_prompt_tokens
from batchor.types import (
    ContentPart,
    FrozenConfig,
    Message,
    PromptParts,
    RequestOptions,
    Usage,
    parse_json,
)

if TYPE_CHECKING:
    import anthropic
    from anthropic.types.messages import MessageBatch

T = TypeVar("T")

MAX_REQUESTS_PER_BATCH = 100_000
"""Anthropic's limit on the requests of one batch."""
MAX_BATCH_BYTES = 256 * 1024 * 1024
"""Anthropic's limit on the body of one create call (256 MB)."""

ANTHROPIC_BATCH_PRICES = batch_prices(
    {  # model prefix: (input, cache read, output), USD per million tokens at batch prices
        "claude-opus-4": (7.5, 0.75, 37.5),
        "claude-opus-4-5": (2.5, 0.25, 12.5),
        "claude-sonnet-4": (1.5, 0.15, 7.5),
        "claude-haiku-4-5": (0.5, 0.05, 2.5),
        "claude-3-7-sonnet": (1.5, 0.15, 7.5),
        "claude-3-5-sonnet": (1.5, 0.15, 7.5),
        "claude-3-5-haiku": (0.4, 0.04, 2.0),
        "claude-3-haiku": (0.125, 0.0125, 0.625),
    }
)
"""Half of Anthropic's list prices (its Message Batches discount), by model-name prefix;
reading the prompt cache costs a tenth of input. Writing it (1.25 times input at
Anthropic) is priced as input."""

RETRYABLE_ERROR_TYPES = frozenset(
    {"api_error", "overloaded_error", "rate_limit_error", "timeout_error"}
)
"""Error types of an errored request that another attempt may get past."""
QUOTA_ERROR_CODES = frozenset(
    {"enforced_spend_limit_reached", "contract_spend_limit_reached", "organization_on_hold"}
)

_SECRET = re.compile(r"(sk-ant-|sk-|Bearer )[A-Za-z0-9*_\-]{4,}")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class AnthropicEnqueueLimitConfig(FrozenConfig):
    """The workspace's Message Batches processing-queue limit, and how close to run to it.

    Anthropic counts requests, not tokens: every request of a batch that is not
    yet processed counts, across all models. batchor never has more than
    ``min(enqueued_request_limit * target_ratio, enqueued_request_limit - headroom)``
    requests enqueued (submitted and not yet collected) across every run sharing
    the storage, and never more than ``max_batch_requests`` in a single batch.
    """

    enqueued_request_limit: int = Field(gt=0)
    target_ratio: float = Field(default=0.7, gt=0, le=1)
    headroom: int = Field(default=0, ge=0)
    max_batch_requests: int | None = Field(default=None, gt=0)

    @property
    def enqueued_request_budget(self) -> int:
        """Requests that may be enqueued at once."""
        return budget_within(self.enqueued_request_limit, self.target_ratio, self.headroom)

    @model_validator(mode="after")
    def _budget_is_positive(self) -> AnthropicEnqueueLimitConfig:
        if self.enqueued_request_budget <= 0:
            raise ValueError(
                "headroom leaves no enqueued-request budget: "
                f"min({self.enqueued_request_limit} * {self.target_ratio}, "
                f"{self.enqueued_request_limit} - {self.headroom}) <= 0"
            )
        return self


class AnthropicProviderConfig(ProviderConfig):
    """Which Claude model to call through Anthropic's Message Batches API, and how.

    ``api_key`` defaults to ``$ANTHROPIC_API_KEY`` and ``base_url`` to
    ``$ANTHROPIC_BASE_URL`` (then Anthropic's). ``max_tokens`` is each request's
    output limit, which Anthropic requires. ``request_options`` are merged into
    every request's ``params`` (``temperature``, ``top_k``, ``thinking``,
    ``output_config``...). ``enqueue_limits`` keeps batchor within the
    workspace's processing queue (see :class:`AnthropicEnqueueLimitConfig`);
    without it, batchor learns the limit from the API's refusals.
    ``poll_interval`` fixes the seconds between polls; by default polling adapts.
    """

    DEFAULT_PRICES: ClassVar[Mapping[str, ModelPrice]] = ANTHROPIC_BATCH_PRICES

    DISPLAY_NAME: ClassVar[str] = "Anthropic"
    API_KEY_ENVS: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    BASE_URL_ENV: ClassVar[str | None] = "ANTHROPIC_BASE_URL"

    kind: Literal["anthropic"] = "anthropic"
    max_tokens: int = Field(default=1024, ge=1)
    enqueue_limits: AnthropicEnqueueLimitConfig | None = None

    @model_validator(mode="after")
    def _request_options_are_json(self) -> AnthropicProviderConfig:
        reserved = {"model", "messages", "system", "max_tokens", "stream"} & set(
            self.request_options
        )
        if reserved:
            raise ValueError(
                f"request_options may not set {sorted(reserved)}: batchor builds those from "
                "the model, max_tokens and build_prompt (and batches cannot stream)"
            )
        try:
            json.dumps(self.request_options)
        except TypeError as exc:
            raise ValueError(f"request_options must be JSON-serialisable: {exc}") from exc
        return self

    @property
    def max_output_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def budget_scope(self) -> str:
        """Anthropic's processing queue is shared by every model of a workspace, so the
        scope is the provider and the host, without the model."""
        host = urlsplit(self.base_url).hostname if self.base_url else None
        return f"{self.kind}:{host or 'default'}:*"

    def output_schema(self, model: type[BaseModel]) -> dict[str, Any]:
        return anthropic_json_schema(model)

    def create_provider(
        self, *, api_key: str | None, output_schema: dict[str, Any] | None, schema_name: str
    ) -> BatchProvider:
        return AnthropicBatchProvider(self, api_key=api_key, output_schema=output_schema)


# -- custom ids and batch tags ------------------------------------------------------------

CUSTOM_ID_MAX_CHARS = 64
"""What Anthropic takes (of ``[A-Za-z0-9_-]``)."""
TAG_CHARS = 10
"""Characters of a batch tag (``[a-z2-7]``), sent with a ``-`` before each custom id."""
ITEM_CUSTOM_ID_CHARS = CUSTOM_ID_MAX_CHARS - TAG_CHARS - 1
"""What is left for an item's own custom id (53)."""

_FITS = re.compile(rf"[A-Za-z0-9_-]{{1,{ITEM_CUSTOM_ID_CHARS}}}")
_MAPPED_SHAPE = re.compile(r"--\d+\Z")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TAGGED = re.compile(rf"[a-z2-7]{{{TAG_CHARS}}}-")
_CUSTOM_ID_PREFIX = b'{"custom_id":"'
_CUSTOM_ID_TEXT = re.compile(r'"custom_id"\s*:\s*"([^"\\]*)"')


def anthropic_custom_id(item_id: str, item_index: int) -> str:
    """The custom id of an item (pure; see the module docstring)."""
    if _FITS.fullmatch(item_id) and not _MAPPED_SHAPE.search(item_id):
        return item_id
    suffix = f"--{item_index}"
    return _UNSAFE.sub("_", item_id)[: ITEM_CUSTOM_ID_CHARS - len(suffix)] + suffix


def batch_tag(batch_key: str) -> str:
    """The tag sent before every custom id of the batch with local key ``batch_key``."""
    digest = hashlib.sha256(batch_key.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii")[:TAG_CHARS].lower()


def untagged(custom_id: str) -> str:
    """A result line's custom id without the batch tag batchor sent it with."""
    return custom_id[TAG_CHARS + 1 :] if _TAGGED.match(custom_id) else custom_id


_MARKER_PREFIX = "batches-after:"
"""How an input reference of this provider starts: the marker noted before a create."""


def _marker(newest: MessageBatch | None) -> str:
    if newest is None:
        return _MARKER_PREFIX
    return f"{_MARKER_PREFIX}{newest.id}@{_epoch(newest.created_at):.6f}"


def _parse_marker(text: str | None) -> tuple[str | None, float | None] | None:
    """``(newest batch id, its created_at)`` of a marker (both None: none was listed),
    or None when ``text`` is no marker."""
    if text is None or not text.startswith(_MARKER_PREFIX):
        return None
    batch_id, _, created = text.removeprefix(_MARKER_PREFIX).rpartition("@")
    if not batch_id:
        return None, None
    try:
        return batch_id, float(created)
    except ValueError:
        return batch_id, None


# -- the adapter --------------------------------------------------------------------------


class AnthropicBatchProvider:
    """Drives Anthropic's Message Batches API for one model."""

    def __init__(
        self,
        config: AnthropicProviderConfig,
        *,
        api_key: str | None = None,
        output_schema: dict[str, Any] | None = None,
    ) -> None:
        self._config = config
        self._api_key = api_key
        self._sdk: anthropic.Anthropic | None = None
        self._params = self._fixed_params(output_schema)
        # The plain prompt's request line is assembled from pre-serialised fragments:
        # the fixed params (model, max_tokens, options, schema) are encoded once.
        self._params_head = _dumps(self._params)[1:-1]
        schema_text = json.dumps(output_schema) if output_schema else ""
        self._schema_tokens = estimate_prompt_tokens(schema_text, None) if schema_text else 0
        self._structured = output_schema is not None

    def _fixed_params(self, schema: dict[str, Any] | None) -> dict[str, Any]:
        config = self._config
        params: dict[str, Any] = {
            "model": config.model,
            "max_tokens": config.max_tokens,
            **config.request_options,
        }
        if schema is not None:
            output_config = dict(params.get("output_config") or {})
            output_config["format"] = {"type": "json_schema", "schema": schema}
            params["output_config"] = output_config
        return params

    @property
    def _client(self) -> anthropic.Anthropic:
        """The SDK client, made on first use: building request lines needs neither the
        SDK nor a key."""
        if self._sdk is None:
            try:
                import anthropic  # imported here: only drivers need it
            except ImportError as exc:
                raise ConfigurationError(
                    "AnthropicProviderConfig needs the anthropic SDK: "
                    "pip install 'batchor-core[anthropic]'"
                ) from exc
            key = self._api_key or self._config.api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise ConfigurationError(
                    "no Anthropic API key: pass AnthropicProviderConfig(api_key=...), "
                    "BatchRunner(api_key=...) or set ANTHROPIC_API_KEY"
                )
            self._sdk = anthropic.Anthropic(
                api_key=key,
                base_url=self._config.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
                timeout=self._config.request_timeout,
                max_retries=self._config.max_retries,
            )
        return self._sdk

    @property
    def model(self) -> str:
        return self._config.model

    @property
    def limits(self) -> ProviderLimits:
        # a margin under the byte limit: it counts the whole body of the create call
        max_bytes = int(MAX_BATCH_BYTES * 0.95)
        return ProviderLimits(
            max_requests_per_batch=MAX_REQUESTS_PER_BATCH,
            max_batch_bytes=max_bytes,
            max_request_bytes=max_bytes,
        )

    @property
    def enqueue_budget(self) -> EnqueueBudget | None:
        limits = self._config.enqueue_limits
        if limits is None:
            return None
        return EnqueueBudget(
            unit=BudgetUnit.REQUESTS,
            total=limits.enqueued_request_budget,
            per_batch=limits.max_batch_requests,
        )

    # -- request lines ------------------------------------------------------------------

    def custom_id(self, item_id: str, item_index: int) -> str:
        return anthropic_custom_id(item_id, item_index)

    def build_request_line(self, custom_id: str, prompt: PromptParts) -> RequestLine:
        if prompt.messages or prompt.options is not None:
            return self._full_request_line(custom_id, prompt)
        text, system_prompt = prompt.prompt, prompt.system_prompt
        fields = f',"system":{_dumps(system_prompt)}' if system_prompt else ""
        fields += f',"messages":[{{"role":"user","content":{_dumps(text)}}}]'
        line = f'{{"custom_id":{_dumps(custom_id)},"params":{{{self._params_head}{fields}}}}}'
        return RequestLine(
            data=line.encode("utf-8"),
            estimated_tokens=estimate_prompt_tokens(text, system_prompt) + self._schema_tokens,
        )

    def _full_request_line(self, custom_id: str, prompt: PromptParts) -> RequestLine:
        """A request of any shape (messages, content parts, per-request options): the
        params are encoded whole, the slower path the plain prompt avoids."""
        params = {**self._params, **anthropic_input(prompt)}
        tools_text = ""
        if prompt.options is not None:
            params.update(anthropic_options(prompt.options))
            tools_text = _dumps(params["tools"]) if "tools" in params else ""
        if self._structured and params["messages"][-1]["role"] == "assistant":
            raise ItemBuildError(
                "messages: structured output cannot continue an assistant message (prefill)"
            )
        line = _dumps({"custom_id": custom_id, "params": params})
        return RequestLine(
            data=line.encode("utf-8"),
            estimated_tokens=estimate_prompt_parts_tokens(prompt)
            + self._schema_tokens
            + (estimate_prompt_tokens(tools_text, None) if tools_text else 0),
        )

    # -- submission ---------------------------------------------------------------------

    def upload_input(self, path: Path) -> str:
        """Nothing to upload: note the newest batch listed (the marker ``find_batch``
        looks back to), for the engine to store before the create call."""

        def newest() -> str:
            page = self._client.messages.batches.list(limit=1)
            return _marker(page.data[0] if page.data else None)

        return _translated(newest)

    def create_batch(
        self, *, input_ref: str | None, path: Path, batch_key: str, metadata: Mapping[str, str]
    ) -> ProviderBatch:
        """Post the request lines of ``path`` as one batch, each custom id behind the
        batch's tag. ``metadata`` has nowhere to go: Anthropic batches carry none."""
        body = _BatchBody(path, batch_tag(batch_key))

        def create() -> MessageBatch:
            client = self._client
            from anthropic.types.messages import MessageBatch as Created

            # No client-side retry: a retried create that had reached the API would
            # make a second batch. A failed create leaves the batch "creating", and
            # the next step asks find_batch before creating it again.
            return client.with_options(max_retries=0).post(
                "/v1/messages/batches",
                cast_to=Created,
                content=body,
                options={
                    "headers": {
                        "Content-Type": "application/json",
                        "Content-Length": str(len(body)),
                    }
                },
            )

        return _provider_batch(_translated(create, creating=True))

    def find_batch(
        self,
        *,
        batch_key: str,
        created_after: float,
        request_count: int,
        input_ref: str | None = None,
    ) -> ProviderBatch | None:
        """The batch a crashed create for ``batch_key`` made, proven by its tag; None
        when none was made; a TransientProviderError while a candidate has yet to
        end (see the module docstring)."""
        marker = _parse_marker(input_ref)
        tag = batch_tag(batch_key)

        def find() -> ProviderBatch | None:
            undecided: list[str] = []
            for batch in self._client.messages.batches.list(limit=100):
                created = _epoch(batch.created_at)
                if marker is None:
                    if created < created_after:
                        break
                elif batch.id == marker[0] or (marker[1] is not None and created < marker[1]):
                    break
                if _request_total(batch) != request_count:
                    continue
                if batch.processing_status != "ended":
                    undecided.append(batch.id)
                elif batch.results_url is None:
                    continue  # its results are archived: it is weeks old, and not this one
                elif tag_of(self._first_custom_id(batch.id)) == tag:
                    return _provider_batch(batch)
            if undecided:
                raise TransientProviderError(
                    f"batch {batch_key}: {len(undecided)} batch(es) of {request_count} requests "
                    f"were created since its create call ({', '.join(undecided[:3])}); "
                    "Anthropic shows whose they are only once they end, so batchor waits for "
                    "them before adopting one or creating the batch",
                    code="batch_lookup_pending",
                )
            return None

        return _translated(find)

    def _first_custom_id(self, batch_id: str) -> str | None:
        """The custom id of the first readable line of an ended batch's results."""
        with self._client.messages.batches.with_streaming_response.results(batch_id) as response:
            for number, line in enumerate(response.iter_lines()):
                if number >= 100:
                    break
                found = _CUSTOM_ID_TEXT.search(line)
                if found:
                    return found.group(1)
        return None

    def get_batch(self, batch_id: str) -> ProviderBatch:
        return _provider_batch(
            _translated(lambda: self._client.messages.batches.retrieve(batch_id))
        )

    def cancel_batch(self, batch_id: str) -> ProviderBatch:
        return _provider_batch(_translated(lambda: self._client.messages.batches.cancel(batch_id)))

    def download(self, ref: str, destination: BinaryIO) -> None:
        """Stream the results of batch ``ref`` (its id: the SDK looks up its
        ``results_url``)."""

        def download() -> None:
            with self._client.messages.batches.with_streaming_response.results(ref) as response:
                for chunk in response.iter_bytes(1024 * 1024):
                    destination.write(chunk)

        _translated(download)

    def cleanup(self, batch_id: str | None, refs: Sequence[str]) -> None:
        """Delete the batch, and its results with it (``refs`` hold no files here: an
        Anthropic batch's input reference is its marker)."""
        if batch_id is None:
            return
        client = self._client
        import anthropic

        try:
            client.messages.batches.delete(batch_id)
        except anthropic.NotFoundError:
            return  # already gone
        except anthropic.APIError as exc:
            raise _translate_error(exc) from exc

    def parse_result_line(self, line: bytes) -> RequestOutcome:
        try:
            record = parse_json(line)
            custom_id = record["custom_id"]
            result = record["result"]
            kind = result["type"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ResultLineError(f"unparseable result line: {exc}") from exc
        if not isinstance(custom_id, str) or not isinstance(result, dict):
            raise ResultLineError("unparseable result line: custom_id or result of another type")
        return parse_anthropic_result(untagged(custom_id), kind, result)


def tag_of(custom_id: str | None) -> str | None:
    """The batch tag a result's custom id was sent with, if it has one."""
    if custom_id is None or not _TAGGED.match(custom_id):
        return None
    return custom_id[:TAG_CHARS]


class _BatchBody:
    """``{"requests": [...]}`` streamed from the request lines in ``path`` (one per line,
    each starting ``{"custom_id":"``), each custom id behind ``tag``: the lines are
    joined as bytes, never decoded, and never all held in memory. ``len()`` is the
    body's size, measured by a first read, so it is sent with a ``Content-Length``."""

    _HEAD = b'{"requests":['
    _CHUNK_BYTES = 1024 * 1024

    def __init__(self, path: Path, tag: str) -> None:
        self._path = path
        self._prefix = _CUSTOM_ID_PREFIX + f"{tag}-".encode("ascii")
        count = size = 0
        for line in self._lines():
            count += 1
            size += len(line)
        if count == 0:
            raise ItemBuildError(f"{path.name}: a batch without requests")
        extra = len(self._prefix) - len(_CUSTOM_ID_PREFIX)
        self._size = len(self._HEAD) + size + count * extra + (count - 1) + 2

    def _lines(self) -> Iterator[bytes]:
        with self._path.open("rb") as lines:
            for line in lines:
                line = line.rstrip(b"\r\n")
                if not line:
                    continue
                if not line.startswith(_CUSTOM_ID_PREFIX):
                    raise ItemBuildError(
                        f"{self._path.name}: a request line does not start with custom_id"
                    )
                yield line

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        chunk = bytearray(self._HEAD)
        separator = b""
        for line in self._lines():
            chunk += separator
            separator = b","
            chunk += self._prefix
            chunk += memoryview(line)[len(_CUSTOM_ID_PREFIX) :]
            if len(chunk) >= self._CHUNK_BYTES:
                yield bytes(chunk)
                chunk.clear()
        chunk += b"]}"
        yield bytes(chunk)


# -- translating requests -----------------------------------------------------------------

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
"""Image types the Messages API takes."""


def anthropic_input(prompt: PromptParts) -> dict[str, Any]:
    """The params holding ``prompt``'s conversation: ``system`` and ``messages`` (pure);
    :class:`~batchor.ItemBuildError` naming the field for what Anthropic cannot take."""
    system, messages = prompt.conversation()
    fields: dict[str, Any] = {"messages": [_message(message) for message in messages]}
    if system:
        fields["system"] = system
    return fields


def _message(message: Message) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    content: list[dict[str, Any]] = []
    for part in message.content:
        if part.kind == "text":
            content.append({"type": "text", "text": part.text or ""})
        elif message.role == "assistant":
            raise ItemBuildError("messages: an assistant message may hold text only")
        elif part.kind == "image":
            content.append({"type": "image", "source": _image_source(part)})
        else:
            content.append(_document(part))
    return {"role": message.role, "content": content}


def _image_source(part: ContentPart) -> dict[str, Any]:
    url = part.url
    if url is not None and not url.startswith("data:"):
        return {"type": "url", "url": url}
    media_type, data = part.media_type, part.data
    if url is not None:  # a data: URL holds the image itself
        header, _, data = url.partition(",")
        media_type = header.removeprefix("data:").removesuffix(";base64")
    if data is None or media_type is None:
        raise ItemBuildError("messages: an image part needs url, or data and media_type")
    if media_type not in IMAGE_MEDIA_TYPES:
        raise ItemBuildError(
            f"messages: Anthropic takes images of type {', '.join(sorted(IMAGE_MEDIA_TYPES))}, "
            f"not {media_type}"
        )
    return {"type": "base64", "media_type": media_type, "data": data}


def _document(part: ContentPart) -> dict[str, Any]:
    """A file part as a ``document`` block: a PDF (base64 or URL) or plain text."""
    if part.url is not None:
        source: dict[str, Any] = {"type": "url", "url": part.url}
    elif part.data is None:
        raise ItemBuildError("messages: a file part needs data and media_type, or url")
    elif part.media_type == "application/pdf":
        source = {"type": "base64", "media_type": "application/pdf", "data": part.data}
    elif part.media_type == "text/plain":
        try:
            text = base64.b64decode(part.data, validate=True).decode("utf-8")
        except ValueError as exc:
            raise ItemBuildError(
                f"messages: a text/plain file part is not base64 UTF-8: {exc}"
            ) from exc
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        raise ItemBuildError(
            f"messages: Anthropic takes PDF or plain-text files, not {part.media_type}"
        )
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.filename:
        block["title"] = part.filename
    return block


def anthropic_options(options: RequestOptions) -> dict[str, Any]:
    """The params of per-request ``options`` (pure)."""
    fields: dict[str, Any] = {}
    if options.temperature is not None:
        fields["temperature"] = options.temperature
    if options.top_p is not None:
        fields["top_p"] = options.top_p
    if options.max_output_tokens is not None:
        fields["max_tokens"] = options.max_output_tokens
    if options.stop:
        fields["stop_sequences"] = list(options.stop)
    if options.metadata:
        unknown = sorted(set(options.metadata) - {"user_id"})
        if unknown:
            raise ItemBuildError(
                f"options.metadata: Anthropic takes only user_id per request, not {unknown}"
            )
        fields["metadata"] = dict(options.metadata)
    if options.tools:
        fields["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": dict(tool.parameters),
            }
            for tool in options.tools
        ]
    choice = options.tool_choice
    if choice is not None:
        named = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
        if choice in named:
            fields["tool_choice"] = named[choice]
        elif choice in {tool.name for tool in options.tools}:
            fields["tool_choice"] = {"type": "tool", "name": choice}
        else:
            raise ItemBuildError(f"options.tool_choice: no tool named {choice!r}")
    return fields


# -- reading batches and results ----------------------------------------------------------

_STATUSES = {
    "in_progress": BatchStatus.IN_PROGRESS,
    "canceling": BatchStatus.CANCELLING,
    "ended": BatchStatus.COMPLETED,
}


def _epoch(value: object) -> float:
    """Epoch seconds of an SDK timestamp (a datetime, naive ones read as UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, str):
        return _epoch(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return 0.0


def _request_total(batch: MessageBatch) -> int:
    counts = batch.request_counts
    return counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired


def _provider_batch(batch: MessageBatch) -> ProviderBatch:
    """A batch in neutral terms: an ended one is ``cancelled`` if a cancel was asked
    for, ``expired`` if some requests expired, else ``completed``; its results are
    its one result file, named by the batch id."""
    status = _STATUSES.get(batch.processing_status, BatchStatus.IN_PROGRESS)
    ended = status is BatchStatus.COMPLETED
    if ended and batch.cancel_initiated_at is not None:
        status = BatchStatus.CANCELLED
    elif ended and batch.request_counts.expired:
        status = BatchStatus.EXPIRED
    return ProviderBatch(
        batch_id=batch.id,
        status=status,
        created_at=_epoch(batch.created_at),
        result_files=(batch.id,) if ended and batch.results_url else (),
    )


def _usage(message: dict[str, Any]) -> Usage:
    """Usage of a message: input counts what the cache wrote and read, too."""
    usage = json_object(message.get("usage"))
    cache_read = json_int(usage.get("cache_read_input_tokens"))
    return Usage(
        input_tokens=json_int(usage.get("input_tokens"))
        + json_int(usage.get("cache_creation_input_tokens"))
        + cache_read,
        cached_input_tokens=cache_read,
        output_tokens=json_int(usage.get("output_tokens")),
    )


_INCOMPLETE_STOPS = {
    "max_tokens": "the reply hit max_tokens",
    "model_context_window_exceeded": "the reply hit the model's context window",
    "pause_turn": "the model paused its turn",
}


def parse_anthropic_result(custom_id: str, kind: object, result: dict[str, Any]) -> RequestOutcome:
    """Turn one result (``custom_id`` already without its tag) into an outcome (pure)."""
    if kind == "expired":
        return RequestOutcome(
            custom_id, kind=OutcomeKind.NOT_EXECUTED, error_code="batch_expired",
            error_message="the batch expired before this request ran",
        )  # fmt: skip
    if kind == "canceled":
        return RequestOutcome(
            custom_id, kind=OutcomeKind.NOT_EXECUTED, error_code="batch_cancelled",
            error_message="the batch was cancelled before this request ran",
        )  # fmt: skip
    if kind == "errored":
        error = json_object(json_object(result.get("error")).get("error"))
        error_type = str(error.get("type") or "api_error")
        return RequestOutcome(
            custom_id,
            kind=OutcomeKind.FAILED,
            error_code=error_type,
            error_message=str(error.get("message") or "the request failed"),
            retryable=error_type in RETRYABLE_ERROR_TYPES,
        )
    if kind != "succeeded":
        raise ResultLineError(f"result of unknown type {kind!r} for custom_id {custom_id!r}")
    message = json_object(result.get("message"))
    usage = _usage(message)
    stop_reason = message.get("stop_reason")
    texts: list[str] = []
    calls: list[tuple[str, Any]] = []
    for block in message.get("content") or []:
        block = json_object(block)
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append((str(block.get("name", "")), block.get("input")))
    problem: tuple[str, str] | None = None
    if stop_reason == "refusal":
        problem = ("refusal", "the model refused to answer")
    elif stop_reason in _INCOMPLETE_STOPS:
        problem = ("incomplete_output", _INCOMPLETE_STOPS[str(stop_reason)])
    elif not texts and not calls:
        problem = ("empty_output", "the reply has no text")
    if problem is not None:
        return RequestOutcome(
            custom_id,
            kind=OutcomeKind.FAILED,
            error_code=problem[0],
            error_message=problem[1],
            usage=usage,
        )
    text = "".join(texts) if texts else tool_calls_text(calls)
    return RequestOutcome(custom_id, output_text=text, usage=usage)


# -- errors -------------------------------------------------------------------------------


def _translated(call: Callable[[], T], *, creating: bool = False) -> T:
    """Run an SDK call, turning the SDK's errors into the provider protocol's."""
    try:
        import anthropic
    except ImportError:  # the call fails first, saying which extra to install
        return call()
    try:
        return call()
    except anthropic.AnthropicError as exc:
        raise _translate_error(exc, creating=creating) from exc


def _translate_error(exc: anthropic.AnthropicError, *, creating: bool = False) -> ProviderError:
    import anthropic

    message = _SECRET.sub(r"\1***", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, anthropic.APIConnectionError):
        return TransientProviderError(f"{message} ({request_target(exc.request)})")
    if not isinstance(exc, anthropic.APIStatusError):
        return TransientProviderError(message)  # e.g. results asked for too early
    status, kind, code = exc.status_code, exc.type, exc.error_code
    if status in (401, 403) or kind in ("authentication_error", "permission_error"):
        return ProviderAuthenticationError(
            f"{message}; check ANTHROPIC_API_KEY (or api_key=) and base_url", code=kind
        )
    if status == 402 or kind == "billing_error" or code in QUOTA_ERROR_CODES:
        return QuotaExhaustedError(message, code=code or kind)
    refusal = refusal_of(status, exc.api_message or "") if creating else None
    if refusal is not None:
        return BatchRefusedError(message, refusal=refusal, code=kind)
    if status in (408, 409, 429) or status >= 500:
        return TransientProviderError(message, code=kind)
    return ProviderRejectedError(message, code=kind)


_LIMIT_OF = re.compile(r"limit of ([\d,]+)", re.IGNORECASE)
_AT_MOST = re.compile(r"at most ([\d,]+)", re.IGNORECASE)
_BYTES = re.compile(r"([\d,]+) bytes", re.IGNORECASE)


def refusal_of(status: int, message: str) -> Refusal | None:
    """The limit a refused create broke, from its status and message (pure): a full
    processing queue (429 naming the queue), too many requests (400 naming the
    requests and a maximum), or too many bytes (413)."""

    def number(pattern: re.Pattern[str]) -> int | None:
        found = pattern.search(message)
        return int(found.group(1).replace(",", "")) if found else None

    if status == 429 and "queue" in message.lower():
        return Refusal(RefusalKind.ENQUEUED_REQUESTS, number(_LIMIT_OF), message)
    if status == 413:
        return Refusal(RefusalKind.BATCH_BYTES, number(_BYTES), message)
    if status == 400 and message.startswith("requests") and _AT_MOST.search(message):
        return Refusal(RefusalKind.REQUESTS_PER_BATCH, number(_AT_MOST), message)
    return None
