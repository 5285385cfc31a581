"""The OpenAI Batch API (and services that speak it): settings and the adapter.

The adapter uses the official ``openai`` client, imported on first use. Requests
are JSONL lines uploaded through the Files API; a batch's metadata carries
batchor's local batch key, which is how a batch a crash left unrecorded is found
again. Request lines use the item id as ``custom_id``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring
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
from batchor.providers.base import (
    BatchProvider,
    BatchStatus,
    BudgetUnit,
    EnqueueBudget,
    EnqueueLimitConfig,
    ModelPrice,
    OutcomeKind,
    OutputKind,
    ProviderBatch,
    ProviderBatchError,
    ProviderConfig,
    ProviderLimits,
    RequestLine,
    RequestOutcome,
    ResultLineError,
    batch_prices,
    json_int,
    json_object,
    request_target,
    tool_calls_text,
)
from batchor.providers.schema import strict_json_schema
from batchor.providers.tokens import estimate_prompt_parts_tokens, estimate_prompt_tokens
from batchor.types import (
    ContentPart,
    Message,
    PromptParts,
    RequestOptions,
    Tool,
    Usage,
    message_text,
    parse_json,
)

if TYPE_CHECKING:
    import openai

T = TypeVar("T")
QUOTA_ERROR_CODES = frozenset(
    {"insufficient_quota", "billing_not_active", "billing_hard_limit_reached"}
)
_SECRET = re.compile(r"(sk-|Bearer )[A-Za-z0-9*_\-]{4,}")

OpenAIEndpoint = Literal[
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
]
"""The batch endpoints whose requests and replies are JSON text batchor builds and reads."""

RETRYABLE_STATUS_CODES = frozenset({408, 409, 429, 500, 502, 503, 504})
RETRYABLE_ERROR_CODES = frozenset(
    {"batch_expired", "batch_cancelled", "rate_limit_exceeded", "server_error", "timeout"}
)


class OpenAIEnqueueLimitConfig(EnqueueLimitConfig):
    """The organisation's enqueued-token limit for a model, and how close to run to it
    (:class:`~batchor.EnqueueLimitConfig` under the name OpenAI configs take)."""


OPENAI_BATCH_PRICES = batch_prices(
    {  # model prefix: (input, cached input, output), USD per million tokens at batch prices
        "gpt-5": (0.625, 0.0625, 5.0),
        "gpt-5-mini": (0.125, 0.0125, 1.0),
        "gpt-5-nano": (0.025, 0.0025, 0.2),
        "gpt-4.1": (1.0, 0.25, 4.0),
        "gpt-4.1-mini": (0.2, 0.05, 0.8),
        "gpt-4.1-nano": (0.05, 0.0125, 0.2),
        "gpt-4o": (1.25, 0.625, 5.0),
        "gpt-4o-mini": (0.075, 0.0375, 0.3),
        "o3": (1.0, 0.25, 4.0),
        "o3-mini": (0.55, 0.275, 2.2),
        "o4-mini": (0.55, 0.1375, 2.2),
        "text-embedding-3-small": (0.01, 0.01, 0.0),
        "text-embedding-3-large": (0.065, 0.065, 0.0),
        "omni-moderation": (0.0, 0.0, 0.0),
    }
)
"""Half of OpenAI's list prices (its Batch API discount), by model-name prefix."""


class _OpenAIBatchApiConfig(ProviderConfig):
    """The settings every OpenAI-style Batch API shares (documented on
    :class:`OpenAIProviderConfig`); the subclasses say how to reach the service."""

    DEFAULT_PRICES: ClassVar[Mapping[str, ModelPrice]] = OPENAI_BATCH_PRICES
    OPERATIONAL_FIELDS: ClassVar[tuple[str, ...]] = (
        *ProviderConfig.OPERATIONAL_FIELDS,
        "files_expire_after",
    )

    endpoint: OpenAIEndpoint = "/v1/responses"
    completion_window: str = Field(default="24h", pattern=r"^\d+[hd]$")
    max_requests_per_batch: int = Field(default=50_000, ge=1)
    max_batch_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    files_expire_after: int | None = Field(default=7 * 86_400, ge=3_600, le=2_592_000)
    enqueue_limits: OpenAIEnqueueLimitConfig | None = None

    @model_validator(mode="after")
    def _request_options_are_json(self) -> _OpenAIBatchApiConfig:
        reserved = {"model", "input", "messages", "instructions"} & set(self.request_options)
        if reserved:
            raise ValueError(
                f"request_options may not set {sorted(reserved)}: batchor builds those from "
                "the model and build_prompt"
            )
        try:
            json.dumps(self.request_options)
        except TypeError as exc:
            raise ValueError(f"request_options must be JSON-serialisable: {exc}") from exc
        return self

    @property
    def output_kind(self) -> OutputKind:
        if self.endpoint == "/v1/embeddings":
            return OutputKind.EMBEDDING
        if self.endpoint == "/v1/moderations":
            return OutputKind.DATA
        return OutputKind.TEXT

    @property
    def max_output_tokens(self) -> int | None:
        for name in ("max_output_tokens", "max_completion_tokens", "max_tokens"):
            value = self.request_options.get(name)
            if type(value) is int:
                return value
        return None

    def output_schema(self, model: type[BaseModel]) -> dict[str, Any]:
        if self.endpoint not in ("/v1/responses", "/v1/chat/completions"):
            raise ConfigurationError(
                f"structured_output needs /v1/responses or /v1/chat/completions, not "
                f"{self.endpoint}"
            )
        return strict_json_schema(model)

    def create_provider(
        self, *, api_key: str | None, output_schema: dict[str, Any] | None, schema_name: str
    ) -> BatchProvider:
        return OpenAIBatchProvider(
            self, api_key=api_key, output_schema=output_schema, schema_name=schema_name
        )

    @property
    def line_url(self) -> str:
        """The ``url`` a request line carries, and the batch's ``endpoint`` parameter."""
        return self.endpoint

    def client(self, api_key: str | None) -> openai.OpenAI:
        """The SDK client for this service (``api_key`` wins over the config's)."""
        import openai

        key = api_key or self.api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigurationError(
                "no OpenAI API key: pass OpenAIProviderConfig(api_key=...), "
                "BatchRunner(api_key=...) or set OPENAI_API_KEY"
            )
        return openai.OpenAI(
            api_key=key,
            base_url=self.base_url or os.environ.get("OPENAI_BASE_URL") or None,
            timeout=self.request_timeout,
            max_retries=self.max_retries,
        )


class OpenAIProviderConfig(_OpenAIBatchApiConfig):
    """Which model and endpoint to call, and how: OpenAI, or any service that speaks
    its Batch API (Groq, Together, Mistral, a LiteLLM proxy...).

    ``api_key`` defaults to ``$OPENAI_API_KEY`` and ``base_url`` to
    ``$OPENAI_BASE_URL`` (then OpenAI's). ``request_options`` are merged into
    every request body (``temperature``, ``max_output_tokens``, ``reasoning``...).
    ``poll_interval`` fixes the seconds between polls; by default polling adapts
    (fast while batches are young, backing off to a minute while nothing changes).

    What services differ in: ``completion_window`` (any window the service takes,
    e.g. Groq's ``"7d"``), ``max_requests_per_batch`` and ``max_batch_file_bytes``
    (OpenAI's 50,000 requests and 200 MB by default). ``files_expire_after``:
    seconds after which uploaded input files and the batch's output files expire
    at the provider (``None``: the provider's default, 30 days at OpenAI); batchor
    deletes them itself once collected (see :class:`~batchor.ArtifactPolicy`).
    """

    DISPLAY_NAME: ClassVar[str] = "OpenAI"
    API_KEY_ENVS: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    BASE_URL_ENV: ClassVar[str | None] = "OPENAI_BASE_URL"

    kind: Literal["openai"] = "openai"


class AzureOpenAIProviderConfig(_OpenAIBatchApiConfig):
    """Azure OpenAI's Batch API, through the SDK's ``AzureOpenAI`` client.

    ``model`` is the name of a global-batch *deployment*. ``azure_endpoint``
    defaults to ``$AZURE_OPENAI_ENDPOINT`` (``https://RESOURCE.openai.azure.com``)
    and ``api_key`` to ``$AZURE_OPENAI_API_KEY``; ``api_version`` is the Azure API
    version. The other settings are :class:`OpenAIProviderConfig`'s. Prices are
    OpenAI's batch prices matched on the deployment name; give ``pricing=`` when
    deployments are named otherwise.
    """

    OPERATIONAL_FIELDS: ClassVar[tuple[str, ...]] = (
        *_OpenAIBatchApiConfig.OPERATIONAL_FIELDS,
        "azure_endpoint",
        "api_version",
    )

    DISPLAY_NAME: ClassVar[str] = "Azure OpenAI"
    API_KEY_ENVS: ClassVar[tuple[str, ...]] = ("AZURE_OPENAI_API_KEY",)

    kind: Literal["azure"] = "azure"
    endpoint: OpenAIEndpoint = "/v1/chat/completions"
    azure_endpoint: str | None = None
    api_version: str = "2025-04-01-preview"

    @property
    def budget_scope(self) -> str:
        endpoint = self.azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT") or ""
        host = urlsplit(endpoint).hostname if endpoint else None
        return f"{self.kind}:{host or 'default'}:{self.model}"

    @property
    def line_url(self) -> str:
        return self.endpoint.removeprefix("/v1")

    def client(self, api_key: str | None) -> openai.OpenAI:
        import openai

        key = api_key or self.api_key or os.environ.get("AZURE_OPENAI_API_KEY")
        endpoint = self.azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")
        if not key or not endpoint:
            raise ConfigurationError(
                "Azure OpenAI needs an endpoint and a key: pass "
                "AzureOpenAIProviderConfig(azure_endpoint=..., api_key=...) or set "
                "AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY"
            )
        return openai.AzureOpenAI(
            azure_endpoint=endpoint,
            api_key=key,
            api_version=self.api_version,
            timeout=self.request_timeout,
            max_retries=self.max_retries,
        )


class OpenAIBatchProvider:
    """Drives OpenAI's Files and Batches API for one model and endpoint."""

    def __init__(
        self,
        config: _OpenAIBatchApiConfig,
        *,
        api_key: str | None = None,
        output_schema: dict[str, Any] | None = None,
        schema_name: str = "output",
    ) -> None:
        self._config = config
        self._api_key = api_key
        self._openai_client: openai.OpenAI | None = None
        # Request lines are assembled from pre-serialised fragments: the body's
        # fixed part (model, options, schema) is encoded once, not once per item.
        self._body_template = self._request_body_template(output_schema, schema_name)
        fixed_body = _dumps(self._body_template)
        self._line_head = (
            f',"method":"POST","url":{_dumps(config.line_url)},"body":{fixed_body[:-1]}'
        )
        schema_text = json.dumps(output_schema) if output_schema else ""
        self._schema_tokens = estimate_prompt_tokens(schema_text, None) if schema_text else 0

    @property
    def _client(self) -> openai.OpenAI:
        """The SDK client, made on first use: building request lines needs no key."""
        if self._openai_client is None:
            self._openai_client = self._config.client(self._api_key)
        return self._openai_client

    @property
    def model(self) -> str:
        return self._config.model

    @property
    def limits(self) -> ProviderLimits:
        # a small margin under the byte limit: it is counted on the file as uploaded
        max_bytes = int(self._config.max_batch_file_bytes * 0.95)
        return ProviderLimits(
            max_requests_per_batch=self._config.max_requests_per_batch,
            max_batch_bytes=max_bytes,
            max_request_bytes=max_bytes,
        )

    @property
    def enqueue_budget(self) -> EnqueueBudget | None:
        limits = self._config.enqueue_limits
        if limits is None:
            return None
        return EnqueueBudget(
            unit=BudgetUnit.TOKENS,
            total=limits.enqueued_token_budget,
            per_batch=limits.max_batch_enqueued_tokens,
        )

    def _request_body_template(
        self, schema: dict[str, Any] | None, schema_name: str
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self._config.model, **self._config.request_options}
        if schema is None:
            return body
        if self._config.endpoint == "/v1/responses":
            text = dict(body.get("text") or {})
            text["format"] = {
                "type": "json_schema",
                "name": schema_name,
                "schema": schema,
                "strict": True,
            }
            body["text"] = text
        else:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            }
        return body

    def custom_id(self, item_id: str, item_index: int) -> str:
        return item_id

    def build_request_line(self, custom_id: str, prompt: PromptParts) -> RequestLine:
        if prompt.messages or prompt.options is not None:
            return self._full_request_line(custom_id, prompt)
        endpoint = self._config.endpoint
        text, system_prompt = prompt.prompt, prompt.system_prompt
        if endpoint == "/v1/responses":
            fields = f',"input":{_text_json(text)}'
            if system_prompt:
                fields += f',"instructions":{_text_json(system_prompt)}'
        elif endpoint == "/v1/chat/completions":
            messages = [{"role": "user", "content": text}]
            if system_prompt:
                messages.insert(0, {"role": "system", "content": system_prompt})
            fields = f',"messages":{_dumps(messages)}'
        else:  # embeddings, moderations and completions take one text
            joined = text if not system_prompt else f"{system_prompt}\n\n{text}"
            name = "prompt" if endpoint == "/v1/completions" else "input"
            fields = f',"{name}":{_text_json(joined)}'
        line = f'{{"custom_id":{_text_json(custom_id)}{self._line_head}{fields}}}}}'
        return RequestLine(
            data=line.encode("utf-8"),
            estimated_tokens=estimate_prompt_tokens(text, system_prompt) + self._schema_tokens,
        )

    def _full_request_line(self, custom_id: str, prompt: PromptParts) -> RequestLine:
        """A request of any shape (messages, content parts, per-request options): the
        body is encoded whole, the slower path the plain prompt avoids."""
        endpoint = self._config.endpoint
        body = {**self._body_template, **openai_input(endpoint, prompt)}
        tools_text = ""
        if prompt.options is not None:
            body.update(openai_options(endpoint, prompt.options))
            tools_text = _dumps(body["tools"]) if "tools" in body else ""
        line = _dumps(
            {"custom_id": custom_id, "method": "POST", "url": self._config.line_url, "body": body}
        )
        return RequestLine(
            data=line.encode("utf-8"),
            estimated_tokens=estimate_prompt_parts_tokens(prompt)
            + self._schema_tokens
            + (estimate_prompt_tokens(tools_text, None) if tools_text else 0),
        )

    def upload_input(self, path: Path) -> str:
        expiry = self._expiry()

        def upload() -> str:
            with path.open("rb") as handle:
                if expiry is None:
                    return self._client.files.create(file=(path.name, handle), purpose="batch").id
                return self._client.files.create(
                    file=(path.name, handle), purpose="batch", expires_after=expiry
                ).id

        return _translated(upload)

    def _expiry(self) -> Any:
        seconds = self._config.files_expire_after
        return None if seconds is None else {"anchor": "created_at", "seconds": seconds}

    def create_batch(
        self, *, input_ref: str | None, path: Path, batch_key: str, metadata: Mapping[str, str]
    ) -> ProviderBatch:
        assert input_ref is not None, "OpenAI batches are created from an uploaded file"
        options: dict[str, Any] = {}
        expiry = self._expiry()
        if expiry is not None:
            options["output_expires_after"] = expiry
        # No client-side retry here: a retried create that had reached the provider
        # would make a second batch. A failed create leaves the batch "creating",
        # and the next step finds it by its key (find_batch) or creates it then.
        batch = _translated(
            lambda: self._client.with_options(max_retries=0).batches.create(
                input_file_id=input_ref,
                endpoint=self._config.line_url,  # type: ignore[arg-type]
                completion_window=self._config.completion_window,  # type: ignore[arg-type]
                metadata={**metadata, BATCH_KEY_METADATA: batch_key},
                **options,
            )
        )
        return _provider_batch(batch)

    def find_batch(
        self,
        *,
        batch_key: str,
        created_after: float,
        request_count: int,
        input_ref: str | None,
    ) -> ProviderBatch | None:
        """The newest batch whose metadata carries ``batch_key``, looking back no
        further than ``created_after``."""

        def find() -> ProviderBatch | None:
            for batch in self._client.batches.list(limit=100):
                if batch.created_at < created_after:
                    return None
                if (batch.metadata or {}).get(BATCH_KEY_METADATA) == batch_key:
                    return _provider_batch(batch)
            return None

        return _translated(find)

    def get_batch(self, batch_id: str) -> ProviderBatch:
        return _provider_batch(_translated(lambda: self._client.batches.retrieve(batch_id)))

    def cancel_batch(self, batch_id: str) -> ProviderBatch:
        return _provider_batch(_translated(lambda: self._client.batches.cancel(batch_id)))

    def cleanup(self, batch_id: str | None, refs: Sequence[str]) -> None:
        """Delete the batch's files (a batch object itself cannot be deleted at OpenAI)."""
        import openai

        for ref in refs:
            try:
                self._client.files.delete(ref)
            except openai.NotFoundError:
                continue  # already gone
            except openai.APIError as exc:
                raise _translate_error(exc) from exc

    def download(self, ref: str, destination: BinaryIO) -> None:
        def download() -> None:
            with self._client.files.with_streaming_response.content(ref) as response:
                for chunk in response.iter_bytes(1024 * 1024):
                    destination.write(chunk)

        _translated(download)

    def parse_result_line(self, line: bytes) -> RequestOutcome:
        try:
            record = parse_json(line)
            custom_id = record["custom_id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ResultLineError(f"unparseable result line: {exc}") from exc
        return parse_openai_result(str(custom_id), record, self._config.endpoint)


def openai_input(endpoint: str, prompt: PromptParts) -> dict[str, Any]:
    """The body fields holding ``prompt``'s conversation, for ``endpoint`` (pure);
    :class:`~batchor.ItemBuildError` naming the field for what it cannot take."""
    system, messages = prompt.conversation()
    if endpoint == "/v1/responses":
        fields: dict[str, Any] = {"input": [_responses_message(m) for m in messages]}
        if system:
            fields["instructions"] = system
        return fields
    if endpoint == "/v1/chat/completions":
        chat = [_chat_message(m) for m in messages]
        return {"messages": ([{"role": "system", "content": system}] if system else []) + chat}
    texts = [system] if system else []
    for message in messages:
        if not isinstance(message.content, str) and any(
            part.kind != "text" for part in message.content
        ):
            raise ItemBuildError(f"messages: {endpoint} takes text only, not images or files")
        texts.append(message_text(message))
    name = "prompt" if endpoint == "/v1/completions" else "input"
    return {name: "\n\n".join(texts)}


def _data_url(part: ContentPart) -> str:
    if part.url is not None:
        return part.url
    if part.data is None or part.media_type is None:
        raise ItemBuildError(f"messages: an {part.kind} part needs url, or data and media_type")
    return f"data:{part.media_type};base64,{part.data}"


def _responses_message(message: Message) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    text_type = "output_text" if message.role == "assistant" else "input_text"
    content: list[dict[str, Any]] = []
    for part in message.content:
        if part.kind == "text":
            content.append({"type": text_type, "text": part.text or ""})
        elif message.role == "assistant":
            raise ItemBuildError("messages: an assistant message may hold text only")
        elif part.kind == "image":
            content.append({"type": "input_image", "image_url": _data_url(part)})
        else:
            file: dict[str, Any] = {"type": "input_file", "file_data": _data_url(part)}
            if part.filename:
                file["filename"] = part.filename
            content.append(file)
    return {"role": message.role, "content": content}


def _chat_message(message: Message) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    content: list[dict[str, Any]] = []
    for part in message.content:
        if part.kind == "text":
            content.append({"type": "text", "text": part.text or ""})
        elif message.role == "assistant":
            raise ItemBuildError("messages: an assistant message may hold text only")
        elif part.kind == "image":
            content.append({"type": "image_url", "image_url": {"url": _data_url(part)}})
        else:
            file = {"file_data": _data_url(part)}
            if part.filename:
                file["filename"] = part.filename
            content.append({"type": "file", "file": file})
    return {"role": message.role, "content": content}


def openai_options(endpoint: str, options: RequestOptions) -> dict[str, Any]:
    """The body fields of per-request ``options`` for ``endpoint`` (pure)."""
    fields: dict[str, Any] = {}
    text_endpoints = ("/v1/responses", "/v1/chat/completions", "/v1/completions")
    if options.temperature is not None:
        fields["temperature"] = options.temperature
    if options.top_p is not None:
        fields["top_p"] = options.top_p
    if options.max_output_tokens is not None:
        fields[
            {
                "/v1/responses": "max_output_tokens",
                "/v1/chat/completions": "max_completion_tokens",
            }.get(endpoint, "max_tokens")
        ] = options.max_output_tokens
    if options.stop:
        if endpoint == "/v1/responses":
            raise ItemBuildError("options.stop: /v1/responses takes no stop sequences")
        fields["stop"] = list(options.stop)
    if options.metadata and endpoint in ("/v1/responses", "/v1/chat/completions"):
        fields["metadata"] = dict(options.metadata)
    if options.tools or options.tool_choice is not None:
        if endpoint not in ("/v1/responses", "/v1/chat/completions"):
            raise ItemBuildError(f"options.tools: {endpoint} takes no tools")
        fields.update(_openai_tools(endpoint, options))
    if fields and endpoint not in text_endpoints and set(fields) - {"metadata"}:
        raise ItemBuildError(f"options: {endpoint} takes no generation options")
    return fields


def _openai_tools(endpoint: str, options: RequestOptions) -> dict[str, Any]:
    chat = endpoint == "/v1/chat/completions"
    fields: dict[str, Any] = {}
    if options.tools:
        fields["tools"] = [
            {
                "type": "function",
                **({"function": _function(tool)} if chat else {**_function(tool)}),
            }
            for tool in options.tools
        ]
    choice = options.tool_choice
    if choice in ("auto", "none", "required"):
        fields["tool_choice"] = choice
    elif choice is not None:
        if choice not in {tool.name for tool in options.tools}:
            raise ItemBuildError(f"options.tool_choice: no tool named {choice!r}")
        fields["tool_choice"] = (
            {"type": "function", "function": {"name": choice}}
            if chat
            else {"type": "function", "name": choice}
        )
    return fields


def _function(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters)}
    if tool.description:
        function["description"] = tool.description
    return function


BATCH_KEY_METADATA = "batchor_batch_key"
"""Batch metadata key holding batchor's local batch key."""

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_text_json = encode_basestring
"""``_dumps`` of a string, without the encoder's dispatch (once per request line)."""


def _translated(call: Callable[[], T]) -> T:
    """Run an SDK call, turning the SDK's errors into the provider protocol's."""
    import openai

    try:
        return call()
    except openai.APIError as exc:
        raise _translate_error(exc) from exc


def _translate_error(exc: openai.APIError) -> ProviderError:
    import openai

    code = exc.code if isinstance(exc.code, str) else None
    message = _SECRET.sub(r"\1***", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, openai.APIConnectionError):
        message += f" ({request_target(getattr(exc, 'request', None))})"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ProviderAuthenticationError(
            f"{message}; check the API key (api_key=, or the provider's key variable) and "
            "where it points (base_url / azure_endpoint)",
            code=code,
        )
    if code in QUOTA_ERROR_CODES:
        return QuotaExhaustedError(message, code=code)
    refusal = refusal_of((ProviderBatchError(code, str(exc.message)),)) if code else None
    if refusal is not None:  # an upload or create refused for a limit
        return BatchRefusedError(message, refusal=refusal, code=code)
    if isinstance(
        exc, openai.BadRequestError | openai.NotFoundError | openai.UnprocessableEntityError
    ):
        return ProviderRejectedError(message, code=code)
    return TransientProviderError(message, code=code)


def _provider_batch(batch: Any) -> ProviderBatch:
    errors: tuple[ProviderBatchError, ...] = ()
    if batch.errors is not None and batch.errors.data:
        errors = tuple(
            ProviderBatchError(
                code=error.code or "batch_failed", message=error.message or "", line=error.line
            )
            for error in batch.errors.data
        )
    return ProviderBatch(
        batch_id=batch.id,
        status=BatchStatus(batch.status),
        created_at=float(batch.created_at),
        batch_key=(batch.metadata or {}).get(BATCH_KEY_METADATA),
        result_files=tuple(ref for ref in (batch.output_file_id, batch.error_file_id) if ref),
        errors=errors,
        refusal=refusal_of(errors),
    )


_REFUSALS = {
    # code: (limit broken, how the message states it)
    "token_limit_exceeded": (
        RefusalKind.ENQUEUED_TOKENS,
        re.compile(r"Limit:\s*([\d,]+)\s*enqueued tokens", re.IGNORECASE),
    ),
    "too_many_tasks": (
        RefusalKind.REQUESTS_PER_BATCH,
        re.compile(r"than the ([\d,]+) maximum", re.IGNORECASE),
    ),
    "file_too_large": (
        RefusalKind.BATCH_BYTES,
        re.compile(r"than the ([\d,]+) maximum", re.IGNORECASE),
    ),
}
"""Batch error codes that mean "this batch breaks a limit", and where the message
states the limit (api.openai.com's wording)."""


def refusal_of(errors: tuple[ProviderBatchError, ...]) -> Refusal | None:
    """The limit a failed batch's errors say it broke, if any (pure)."""
    for error in errors:
        if error.code in _REFUSALS:
            kind, stated = _REFUSALS[error.code]
            match = stated.search(error.message)
            limit = int(match.group(1).replace(",", "")) if match else None
            return Refusal(kind, limit, error.message)
    return None


NOT_EXECUTED_ERROR_CODES = frozenset({"batch_expired", "batch_cancelled"})
"""Error-file codes of requests the batch ended before running."""


def _usage(body: dict[str, Any]) -> Usage:
    """Usage of a responses, chat-completions or embeddings body."""
    usage = json_object(body.get("usage"))
    input_details = json_object(
        usage.get("input_tokens_details", usage.get("prompt_tokens_details"))
    )
    output_details = json_object(
        usage.get("output_tokens_details", usage.get("completion_tokens_details"))
    )
    return Usage(
        input_tokens=json_int(usage.get("input_tokens", usage.get("prompt_tokens"))),
        cached_input_tokens=json_int(input_details.get("cached_tokens")),
        output_tokens=json_int(usage.get("output_tokens", usage.get("completion_tokens"))),
        reasoning_tokens=json_int(output_details.get("reasoning_tokens")),
    )


def parse_openai_result(custom_id: str, record: dict[str, Any], endpoint: str) -> RequestOutcome:
    """Turn one output- or error-file record into an outcome (pure)."""
    response = json_object(record.get("response"))
    status_code = response.get("status_code")
    body = json_object(response.get("body"))
    top_error = json_object(record.get("error"))
    if top_error or not response:
        code = str(top_error.get("code") or "request_failed")
        return RequestOutcome(
            custom_id=custom_id,
            kind=OutcomeKind.NOT_EXECUTED
            if code in NOT_EXECUTED_ERROR_CODES
            else OutcomeKind.FAILED,
            error_code=code,
            error_message=str(top_error.get("message") or "the provider returned no response"),
            retryable=code in RETRYABLE_ERROR_CODES,
        )
    if status_code != 200:
        error = json_object(body.get("error"))
        code = str(error.get("code") or error.get("type") or f"http_{status_code}")
        return RequestOutcome(
            custom_id=custom_id,
            kind=OutcomeKind.FAILED,
            error_code=code,
            error_message=str(error.get("message") or f"HTTP {status_code}"),
            retryable=(status_code in RETRYABLE_STATUS_CODES or code in RETRYABLE_ERROR_CODES),
        )
    usage = _usage(body)
    if endpoint == "/v1/embeddings":
        first = json_object((body.get("data") or [{}])[0])
        text: str | None = json.dumps(first.get("embedding"))
        problem = None if first.get("embedding") is not None else "empty_output: no embedding"
    elif endpoint == "/v1/moderations":
        first = json_object((body.get("results") or [None])[0])
        text = json.dumps(first) if first else None
        problem = None if first else "empty_output: the moderation has no result"
    elif endpoint == "/v1/completions":
        choice = json_object((body.get("choices") or [None])[0])
        text = choice.get("text") if isinstance(choice.get("text"), str) else None
        problem = None if text is not None else "empty_output: the completion has no text"
        if choice.get("finish_reason") == "length":
            text, problem = None, "incomplete_output: the completion hit its token limit"
    elif endpoint == "/v1/chat/completions":
        text, problem = _chat_text(body)
    else:
        text, problem = _responses_text(body)
    if problem is not None:
        code, message = problem.split(": ", 1) if ": " in problem else (problem, problem)
        return RequestOutcome(
            custom_id=custom_id,
            kind=OutcomeKind.FAILED,
            error_code=code,
            error_message=message,
            usage=usage,
        )
    return RequestOutcome(custom_id=custom_id, output_text=text, usage=usage)


def _responses_text(body: dict[str, Any]) -> tuple[str | None, str | None]:
    if body.get("status") not in (None, "completed"):
        reason = json_object(body.get("incomplete_details")).get("reason") or body.get("status")
        return None, f"incomplete_output: the response ended as {reason!r}"
    parts: list[str] = []
    calls: list[tuple[str, Any]] = []
    for output in body.get("output") or []:
        kind = json_object(output).get("type")
        if kind == "function_call":
            calls.append((str(output.get("name", "")), output.get("arguments")))
        if kind != "message":
            continue
        for content in output.get("content") or []:
            kind = json_object(content).get("type")
            if kind == "refusal":
                return None, f"refusal: {content.get('refusal', '')}"
            if kind == "output_text":
                parts.append(str(content.get("text", "")))
    if parts:
        return "".join(parts), None
    if calls:
        return tool_calls_text(calls), None
    return None, "empty_output: the response has no output_text"


def _chat_text(body: dict[str, Any]) -> tuple[str | None, str | None]:
    choices = body.get("choices") or []
    if not choices:
        return None, "empty_output: the completion has no choices"
    choice = json_object(choices[0])
    message = json_object(choice.get("message"))
    if message.get("refusal"):
        return None, f"refusal: {message['refusal']}"
    if choice.get("finish_reason") == "length":
        return None, "incomplete_output: the completion hit its token limit"
    content = message.get("content")
    calls = [
        (str(function.get("name", "")), function.get("arguments"))
        for call in message.get("tool_calls") or []
        if (function := json_object(json_object(call).get("function")))
    ]
    if content is None and calls:
        return tool_calls_text(calls), None
    if content is None:
        return None, "empty_output: the completion has no content"
    return str(content), None
