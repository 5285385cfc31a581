"""The OpenAI Batch API: its configuration and the adapter the engine drives.

The adapter uses the official ``openai`` client. The API key is held in memory
only: :class:`OpenAIProviderConfig` excludes it from ``model_dump()`` and
``repr()``, and that dump is what a run stores.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar

from pydantic import Field, model_validator

from batchor.engine.tokens import estimate_prompt_tokens
from batchor.errors import ConfigurationError
from batchor.job import FrozenConfig
from batchor.providers.base import (
    AuthenticationFailedError,
    ProviderBatch,
    ProviderBatchError,
    ProviderBatchStatus,
    ProviderCallError,
    QuotaExhaustedError,
    RejectedCallError,
    RequestLine,
    RequestOutcome,
    TransientProviderError,
    json_object,
)

if TYPE_CHECKING:
    import openai

T = TypeVar("T")
QUOTA_ERROR_CODES = frozenset(
    {"insufficient_quota", "billing_not_active", "billing_hard_limit_reached"}
)
_SECRET = re.compile(r"(sk-|Bearer )[A-Za-z0-9*_\-]{4,}")

OpenAIEndpoint = Literal["/v1/responses", "/v1/chat/completions", "/v1/embeddings"]

RETRYABLE_STATUS_CODES = frozenset({408, 409, 429, 500, 502, 503, 504})
RETRYABLE_ERROR_CODES = frozenset(
    {"batch_expired", "batch_cancelled", "rate_limit_exceeded", "server_error", "timeout"}
)


class OpenAIEnqueueLimitConfig(FrozenConfig):
    """The organisation's enqueued-token limit for a model, and how close to run to it.

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
        return int(
            min(
                self.enqueued_token_limit * self.target_ratio,
                self.enqueued_token_limit - self.headroom,
            )
        )

    @model_validator(mode="after")
    def _budget_is_positive(self) -> OpenAIEnqueueLimitConfig:
        if self.enqueued_token_budget <= 0:
            raise ValueError(
                "headroom leaves no enqueued-token budget: "
                f"min({self.enqueued_token_limit} * {self.target_ratio}, "
                f"{self.enqueued_token_limit} - {self.headroom}) <= 0"
            )
        return self


class OpenAIProviderConfig(FrozenConfig):
    """Which model and endpoint to call, and how.

    ``api_key`` defaults to ``$OPENAI_API_KEY`` and ``base_url`` to
    ``$OPENAI_BASE_URL`` (then OpenAI's). ``request_options`` are merged into
    every request body (``temperature``, ``max_output_tokens``, ``reasoning``...).
    ``poll_interval`` fixes the seconds between polls; by default polling adapts
    (fast while batches are young, backing off to a minute while nothing changes).
    """

    model: str = Field(min_length=1)
    api_key: str | None = Field(default=None, repr=False, exclude=True)
    base_url: str | None = None
    endpoint: OpenAIEndpoint = "/v1/responses"
    completion_window: Literal["24h"] = "24h"
    request_options: dict[str, Any] = Field(default_factory=dict)
    poll_interval: float | None = Field(default=None, gt=0)
    request_timeout: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    enqueue_limits: OpenAIEnqueueLimitConfig | None = None

    @model_validator(mode="after")
    def _request_options_are_json(self) -> OpenAIProviderConfig:
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


class OpenAIBatchProvider:
    """Drives OpenAI's Files and Batches API for one model and endpoint."""

    def __init__(
        self,
        config: OpenAIProviderConfig,
        *,
        api_key: str | None = None,
        response_schema: dict[str, Any] | None = None,
        schema_name: str = "output",
    ) -> None:
        if response_schema is not None and config.endpoint == "/v1/embeddings":
            raise ConfigurationError("structured_output cannot be used with /v1/embeddings")
        self._config = config
        self._api_key = api_key
        self._openai_client: openai.OpenAI | None = None
        # Request lines are assembled from pre-serialised fragments: the body's
        # fixed part (model, options, schema) is encoded once, not once per item.
        fixed_body = _dumps(self._request_body_template(response_schema, schema_name))
        self._line_head = (
            f',"method":"POST","url":{_dumps(config.endpoint)},"body":{fixed_body[:-1]}'
        )
        schema_text = json.dumps(response_schema) if response_schema else ""
        self._schema_tokens = estimate_prompt_tokens(schema_text, None) if schema_text else 0

    @property
    def _client(self) -> openai.OpenAI:
        """The SDK client, made on first use: building request lines needs no key."""
        if self._openai_client is None:
            import openai  # imported here: it is slow to import and only drivers need it

            key = self._api_key or self._config.api_key or os.environ.get("OPENAI_API_KEY")
            if not key:
                raise ConfigurationError(
                    "no OpenAI API key: pass OpenAIProviderConfig(api_key=...), "
                    "BatchRunner(api_key=...) or set OPENAI_API_KEY"
                )
            self._openai_client = openai.OpenAI(
                api_key=key,
                base_url=self._config.base_url or os.environ.get("OPENAI_BASE_URL") or None,
                timeout=self._config.request_timeout,
                max_retries=self._config.max_retries,
            )
        return self._openai_client

    @property
    def model(self) -> str:
        return self._config.model

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

    def build_request_line(
        self, custom_id: str, prompt: str, system_prompt: str | None
    ) -> RequestLine:
        endpoint = self._config.endpoint
        if endpoint == "/v1/responses":
            fields = f',"input":{_dumps(prompt)}'
            if system_prompt:
                fields += f',"instructions":{_dumps(system_prompt)}'
        elif endpoint == "/v1/chat/completions":
            messages = [{"role": "user", "content": prompt}]
            if system_prompt:
                messages.insert(0, {"role": "system", "content": system_prompt})
            fields = f',"messages":{_dumps(messages)}'
        else:
            text = prompt if not system_prompt else f"{system_prompt}\n\n{prompt}"
            fields = f',"input":{_dumps(text)}'
        line = f'{{"custom_id":{_dumps(custom_id)}{self._line_head}{fields}}}}}'
        return RequestLine(
            data=line.encode("utf-8"),
            estimated_tokens=estimate_prompt_tokens(prompt, system_prompt) + self._schema_tokens,
        )

    def upload_batch_file(self, path: Path) -> str:
        def upload() -> str:
            with path.open("rb") as handle:
                return self._client.files.create(file=(path.name, handle), purpose="batch").id

        return _translated(upload)

    def create_batch(self, input_file_id: str, metadata: Mapping[str, str]) -> ProviderBatch:
        batch = _translated(
            lambda: self._client.batches.create(
                input_file_id=input_file_id,
                endpoint=self._config.endpoint,
                completion_window=self._config.completion_window,
                metadata=dict(metadata),
            )
        )
        return _provider_batch(batch)

    def get_batch(self, batch_id: str) -> ProviderBatch:
        return _provider_batch(_translated(lambda: self._client.batches.retrieve(batch_id)))

    def list_batches(self, created_after: float) -> Iterator[ProviderBatch]:
        """Batches newest first, stopping at the first one created before ``created_after``."""

        def recent() -> list[ProviderBatch]:
            found: list[ProviderBatch] = []
            for batch in self._client.batches.list(limit=100):
                if batch.created_at < created_after:
                    break
                found.append(_provider_batch(batch))
            return found

        return iter(_translated(recent))

    def cancel_batch(self, batch_id: str) -> ProviderBatch:
        return _provider_batch(_translated(lambda: self._client.batches.cancel(batch_id)))

    def download_file(self, file_id: str, destination: BinaryIO) -> None:
        def download() -> None:
            with self._client.files.with_streaming_response.content(file_id) as response:
                for chunk in response.iter_bytes(1024 * 1024):
                    destination.write(chunk)

        _translated(download)

    def parse_result_line(self, line: bytes) -> RequestOutcome:
        try:
            record = json.loads(line)
            custom_id = record["custom_id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unparseable result line: {exc}") from exc
        return parse_openai_result(custom_id, record, self._config.endpoint)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _translated(call: Callable[[], T]) -> T:
    """Run an SDK call, turning the SDK's errors into the provider protocol's."""
    import openai

    try:
        return call()
    except openai.APIError as exc:
        raise _translate_error(exc) from exc


def _translate_error(exc: openai.APIError) -> ProviderCallError:
    import openai

    code = exc.code if isinstance(exc.code, str) else None
    message = _SECRET.sub(r"\1***", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return AuthenticationFailedError(message, code=code)
    if code in QUOTA_ERROR_CODES:
        return QuotaExhaustedError(message, code=code)
    if isinstance(
        exc, openai.BadRequestError | openai.NotFoundError | openai.UnprocessableEntityError
    ):
        return RejectedCallError(message, code=code)
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
        status=ProviderBatchStatus(batch.status),
        created_at=float(batch.created_at),
        metadata=dict(batch.metadata or {}),
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        errors=errors,
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
            error_code=code,
            error_message=str(top_error.get("message") or "the provider returned no response"),
            retryable=code in RETRYABLE_ERROR_CODES,
        )
    if status_code != 200:
        error = json_object(body.get("error"))
        code = str(error.get("code") or error.get("type") or f"http_{status_code}")
        return RequestOutcome(
            custom_id=custom_id,
            error_code=code,
            error_message=str(error.get("message") or f"HTTP {status_code}"),
            retryable=(status_code in RETRYABLE_STATUS_CODES or code in RETRYABLE_ERROR_CODES),
        )
    usage = json_object(body.get("usage"))
    input_tokens = usage.get("input_tokens", usage.get("prompt_tokens"))
    output_tokens = usage.get("output_tokens", usage.get("completion_tokens"))
    if endpoint == "/v1/embeddings":
        data = body.get("data") or [{}]
        text: str | None = json.dumps(json_object(data[0]).get("embedding"))
        problem = None if json_object(data[0]).get("embedding") is not None else "no embedding"
    elif endpoint == "/v1/chat/completions":
        text, problem = _chat_text(body)
    else:
        text, problem = _responses_text(body)
    if problem is not None:
        code, message = problem.split(": ", 1) if ": " in problem else (problem, problem)
        return RequestOutcome(
            custom_id=custom_id,
            error_code=code,
            error_message=message,
            retryable=False,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
    return RequestOutcome(
        custom_id=custom_id,
        output_text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def _responses_text(body: dict[str, Any]) -> tuple[str | None, str | None]:
    if body.get("status") not in (None, "completed"):
        reason = json_object(body.get("incomplete_details")).get("reason") or body.get("status")
        return None, f"incomplete_output: the response ended as {reason!r}"
    parts: list[str] = []
    for output in body.get("output") or []:
        if json_object(output).get("type") != "message":
            continue
        for content in output.get("content") or []:
            kind = json_object(content).get("type")
            if kind == "refusal":
                return None, f"refusal: {content.get('refusal', '')}"
            if kind == "output_text":
                parts.append(str(content.get("text", "")))
    if not parts:
        return None, "empty_output: the response has no output_text"
    return "".join(parts), None


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
    if content is None:
        return None, "empty_output: the completion has no content"
    return str(content), None
