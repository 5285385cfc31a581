"""Gemini Developer API batch mode: settings and the adapter.

The adapter uses the official ``google-genai`` SDK (the ``batchor-core[gemini]``
extra), imported on first use. A batch's requests are a JSONL file uploaded
through the Files API (the SDK's resumable upload), one
``{"key": custom_id, "request": GenerateContentRequest}`` line per item, and the
batch is created with ``models/{model}:batchGenerateContent``. Gemini batches
have no metadata: the batch's ``display_name`` carries batchor's local batch key,
which is how a batch a crash left unrecorded is found again. Request lines use
the item id as ``key``.

What the SDK does not do, the adapter does: it sets a timeout and retries
explicitly (the SDK has neither by default), never lets a create be retried,
retries downloads itself (the SDK never does), and reads a failed batch's error
from the raw operation (the SDK's ``BatchJob`` drops it).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import logging
import mimetypes
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field, field_validator, model_validator

from batchor.errors import (
    BatchorError,
    BatchRefusedError,
    ConfigurationError,
    ItemBuildError,
    ProviderAuthenticationError,
    ProviderError,
    ProviderRejectedError,
    QuotaExhaustedError,
    Refusal,
    RefusalKind,
    StructuredOutputSchemaError,
    TransientProviderError,
)
from batchor.providers.base import (
    BatchProvider,
    BatchStatus,
    EnqueueBudget,
    EnqueueLimitConfig,
    ModelPrice,
    OutcomeKind,
    ProviderBatch,
    ProviderBatchError,
    ProviderConfig,
    ProviderLimits,
    RequestLine,
    RequestOutcome,
    ResultLineError,
    batch_prices,
    tool_calls_text,
)
from batchor.providers.tokens import estimate_prompt_parts_tokens, estimate_prompt_tokens
from batchor.types import ContentPart, Message, PromptParts, RequestOptions, Usage, parse_json

if TYPE_CHECKING:
    from google import genai

logger = logging.getLogger("batchor")
T = TypeVar("T")

API_VERSION = "v1beta"
"""The API version batchor pins: the one Google documents batch mode and the Files
API under (the SDK would otherwise pick its own default)."""

MAX_BATCH_FILE_BYTES = 2 * 1024 * 1024 * 1024
"""The Files API's limit on one file, so on a batch's input file: 2 GB."""

MAX_REQUESTS_PER_BATCH = 200_000
"""Requests per batch. Google publishes no count for the Developer API (its
limits are the 2 GB input file and the enqueued tokens per model); this is the
figure it documents for Gemini batch jobs on Vertex AI."""

MAX_STOP_SEQUENCES = 5
"""``generationConfig.stopSequences`` takes at most five."""

DOWNLOAD_RETRY_SECONDS = 0.5
"""First pause before retrying a failed download; doubled on each retry, to 30 s."""

GEMINI_BATCH_PRICES = batch_prices(
    {  # model prefix: (input, cached input, output), USD per million tokens at batch prices
        "gemini-2.5-pro": (0.625, 0.15625, 5.0),
        "gemini-2.5-flash": (0.15, 0.0375, 1.25),
        "gemini-2.5-flash-lite": (0.05, 0.0125, 0.2),
        "gemini-2.0-flash": (0.05, 0.0125, 0.2),
        "gemini-2.0-flash-lite": (0.0375, 0.009375, 0.15),
    }
)
"""Half of Gemini's list prices (its batch discount), cached input at a quarter of
input, by model-name prefix (Gemini 2.5 Pro at its price for prompts up to 200k tokens)."""

REQUEST_FIELDS = frozenset(
    {"generationConfig", "safetySettings", "tools", "toolConfig", "cachedContent", "labels"}
)
"""``GenerateContentRequest`` fields that ``request_options`` may set."""

GENERATION_FIELDS = frozenset(
    {
        "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
        "presencePenalty", "frequencyPenalty", "seed", "responseMimeType", "responseSchema",
        "responseJsonSchema", "responseLogprobs", "logprobs", "thinkingConfig",
        "responseModalities", "mediaResolution", "speechConfig",
    }
)  # fmt: skip
"""``generationConfig`` fields, for telling a misplaced option where it belongs."""

_STATUSES = {
    "JOB_STATE_UNSPECIFIED": BatchStatus.VALIDATING,
    "JOB_STATE_QUEUED": BatchStatus.VALIDATING,
    "JOB_STATE_PENDING": BatchStatus.VALIDATING,
    "JOB_STATE_RUNNING": BatchStatus.IN_PROGRESS,
    "JOB_STATE_UPDATING": BatchStatus.IN_PROGRESS,
    "JOB_STATE_PAUSED": BatchStatus.IN_PROGRESS,
    "JOB_STATE_SUCCEEDED": BatchStatus.COMPLETED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": BatchStatus.COMPLETED,
    "JOB_STATE_FAILED": BatchStatus.FAILED,
    "JOB_STATE_CANCELLING": BatchStatus.CANCELLING,
    "JOB_STATE_CANCELLED": BatchStatus.CANCELLED,
    "JOB_STATE_EXPIRED": BatchStatus.EXPIRED,
}
"""The SDK's job states (it maps the API's ``BATCH_STATE_*`` onto these) in neutral terms."""

GRPC_CODES = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}  # fmt: skip
"""``google.rpc.Code`` names, for the ``error.code`` of a result line."""

RETRYABLE_ERRORS = frozenset(
    {"DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "UNAVAILABLE", "UNKNOWN"}
)
RETRYABLE_HTTP_CODES = frozenset({408, 429, 500, 502, 503, 504})
RETRYABLE_FINISH_REASONS = frozenset({"OTHER", "MALFORMED_FUNCTION_CALL"})
"""Finish reasons after which another attempt may well succeed."""


class GeminiProviderConfig(ProviderConfig):
    """Which Gemini model to call through the Developer API's batch mode, and how.

    ``api_key`` defaults to ``$GEMINI_API_KEY``, then ``$GOOGLE_API_KEY``;
    ``base_url`` to ``$GEMINI_BASE_URL`` (then Google's). ``model`` is a model
    name such as ``"gemini-2.5-flash"`` (a ``models/`` prefix is dropped).

    ``request_options`` are ``GenerateContentRequest`` fields merged into every
    request, in the API's camelCase: ``generationConfig`` (``temperature``,
    ``maxOutputTokens``, ``thinkingConfig``...), ``safetySettings``, ``tools``,
    ``toolConfig``, ``cachedContent``, ``labels``. ``max_retries`` is how often
    the SDK retries a failed call (429, 5xx, timeouts) and batchor a failed
    download; a create is never retried. ``request_timeout`` is per call, in
    seconds. ``api_version`` is the API's version segment (:data:`API_VERSION`).

    Limits: ``max_batch_file_bytes`` (the Files API's 2 GB) and
    ``max_requests_per_batch`` (:data:`MAX_REQUESTS_PER_BATCH`). Gemini limits
    the tokens of the batches waiting or running per model ("batch enqueued
    tokens", which depend on the account's tier): set ``enqueue_limits`` to
    plan within yours, or let batchor learn it from the first refusal.
    """

    DEFAULT_PRICES: ClassVar[Mapping[str, ModelPrice]] = GEMINI_BATCH_PRICES
    OPERATIONAL_FIELDS: ClassVar[tuple[str, ...]] = (
        *ProviderConfig.OPERATIONAL_FIELDS,
        "api_version",
    )

    DISPLAY_NAME: ClassVar[str] = "Gemini"
    API_KEY_ENVS: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    BASE_URL_ENV: ClassVar[str | None] = "GEMINI_BASE_URL"

    kind: Literal["gemini"] = "gemini"
    api_version: str = Field(default=API_VERSION, pattern=r"^v\d+\w*$")
    max_requests_per_batch: int = Field(default=MAX_REQUESTS_PER_BATCH, ge=1)
    max_batch_file_bytes: int = Field(default=MAX_BATCH_FILE_BYTES, ge=1024)
    enqueue_limits: EnqueueLimitConfig | None = None

    @field_validator("model")
    @classmethod
    def _bare_model_name(cls, model: str) -> str:
        name = model.removeprefix("models/")
        if not name or "/" in name:
            raise ValueError(f"expected a model name such as 'gemini-2.5-flash', got {model!r}")
        return name

    @model_validator(mode="after")
    def _request_options_are_request_fields(self) -> GeminiProviderConfig:
        check_request_options(self.request_options)
        return self

    @property
    def max_output_tokens(self) -> int | None:
        generation = self.request_options.get("generationConfig") or {}
        value = generation.get("maxOutputTokens")
        return value if type(value) is int else None

    def output_schema(self, model: type[BaseModel]) -> dict[str, Any]:
        generation = self.request_options.get("generationConfig") or {}
        set_here = sorted({"responseSchema", "responseJsonSchema"} & set(generation))
        if set_here:
            raise ConfigurationError(
                f"request_options.generationConfig sets {', '.join(set_here)}: with "
                "structured_output batchor sends the model's schema itself; remove it"
            )
        return gemini_json_schema(model)

    def create_provider(
        self, *, api_key: str | None, output_schema: dict[str, Any] | None, schema_name: str
    ) -> BatchProvider:
        require_sdk()
        return GeminiBatchProvider(self, api_key=api_key, output_schema=output_schema)


def require_sdk() -> None:
    """A :class:`~batchor.ConfigurationError` naming the extra unless ``google-genai``
    is installed (checked without importing it: the import is slow)."""
    try:
        found = importlib.util.find_spec("google.genai") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigurationError(
            "GeminiProviderConfig needs the google-genai SDK: pip install 'batchor-core[gemini]'"
        )


def check_request_options(options: Mapping[str, Any]) -> None:
    """``ValueError`` naming the first option that is not a request field batchor
    lets through (pure)."""
    for name in options:
        if name in REQUEST_FIELDS:
            continue
        camel = _camel(name)
        if name in ("contents", "systemInstruction", "system_instruction", "model"):
            raise ValueError(
                f"request_options may not set {name!r}: batchor builds it from the model "
                "and build_prompt"
            )
        if camel in GENERATION_FIELDS:
            raise ValueError(
                f"request_options.{name}: a generation setting goes under "
                f"request_options['generationConfig'][{camel!r}]"
            )
        if camel in REQUEST_FIELDS:
            raise ValueError(f"request_options.{name}: spell it {camel!r} (camelCase)")
        raise ValueError(
            f"request_options.{name} is not a GenerateContentRequest field batchor sends "
            f"(known: {', '.join(sorted(REQUEST_FIELDS))})"
        )
    generation = options.get("generationConfig", {})
    if not isinstance(generation, dict):
        raise ValueError("request_options.generationConfig must be an object")
    try:
        json.dumps(dict(options))
    except TypeError as exc:
        raise ValueError(f"request_options must be JSON-serialisable: {exc}") from exc


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# -- structured output ----------------------------------------------------------------------

_SCHEMA_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems",
        "minItems", "maxItems", "enum", "format", "minimum", "maximum", "anyOf", "oneOf",
        "$ref", "$defs", "definitions", "propertyOrdering", "nullable",
        # annotations, which constrain nothing
        "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
        "$schema", "$id", "$comment", "discriminator",
    }
)  # fmt: skip
"""The JSON Schema keywords Gemini's ``responseJsonSchema`` honours (and annotations)."""

_SCHEMA_FORMATS = frozenset({"date-time", "date", "time"})
"""The only string formats Gemini enforces."""

_MAX_SCHEMA_DEPTH = 20


def gemini_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent as ``generationConfig.responseJsonSchema`` for ``model``,
    or a :class:`~batchor.StructuredOutputSchemaError` naming the first node Gemini
    cannot honour.

    Gemini ignores keywords it does not support, so a constraint Pydantic checks
    but Gemini does not (``pattern``, ``maxLength``, a ``uuid`` format...) would
    make replies fail validation after they were paid for: it is refused here.
    ``const`` becomes a one-value ``enum``, and references into ``$defs`` are
    inlined unless the schema is recursive (older models take no ``$ref``).
    """
    schema = model.model_json_schema()
    _check_schema_node(schema, "#", 0, model.__name__)
    converted: dict[str, Any] = _consts_as_enums(schema)
    definitions = converted.get("$defs", {})
    if definitions and not _is_recursive(definitions):
        converted = _inline_references(converted, definitions)
        converted.pop("$defs", None)
    return converted


def _check_schema_node(node: Any, path: str, depth: int, model_name: str) -> None:
    if not isinstance(node, dict):
        return
    if depth > _MAX_SCHEMA_DEPTH:
        raise StructuredOutputSchemaError(
            f"{model_name}: schema nests deeper than {_MAX_SCHEMA_DEPTH} levels at {path}",
            path=path,
        )
    unsupported = sorted(set(node) - _SCHEMA_KEYWORDS - {"const"})
    if unsupported:
        raise StructuredOutputSchemaError(
            f"{model_name}: Gemini does not enforce {', '.join(unsupported)} (at {path}); "
            "replies could break it and fail validation: drop the constraint, or check it "
            "after the run",
            path=path,
        )
    fmt = node.get("format")
    if fmt is not None and fmt not in _SCHEMA_FORMATS:
        raise StructuredOutputSchemaError(
            f"{model_name}: Gemini does not enforce format {fmt!r} (at {path}); it enforces "
            f"{', '.join(sorted(_SCHEMA_FORMATS))}: use a plain str and parse it afterwards",
            path=path,
        )
    for name, child in (node.get("properties") or {}).items():
        _check_schema_node(child, f"{path}/properties/{name}", depth + 1, model_name)
    for key in ("$defs", "definitions"):
        for name, child in (node.get(key) or {}).items():
            _check_schema_node(child, f"{path}/{key}/{name}", depth, model_name)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _check_schema_node(node[key], f"{path}/{key}", depth + 1, model_name)
    for key in ("anyOf", "oneOf", "prefixItems"):
        for index, child in enumerate(node.get(key) or []):
            _check_schema_node(child, f"{path}/{key}/{index}", depth, model_name)


def _consts_as_enums(node: Any) -> Any:
    if isinstance(node, list):
        return [_consts_as_enums(value) for value in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _consts_as_enums(value) for key, value in node.items()}
    if "const" in converted:
        converted["enum"] = [converted.pop("const")]
    return converted


def _references(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_references(value) for value in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"].rpartition("/")[2]} if isinstance(node.get("$ref"), str) else set()
    return found.union(*(_references(value) for value in node.values()))


def _is_recursive(definitions: Mapping[str, Any]) -> bool:
    edges = {name: _references(body) for name, body in definitions.items()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for name in edges.get(start, ()):
            if name == target or (name not in seen and reaches(name, target, seen | {name})):
                return True
        return False

    return any(reaches(name, name, {name}) for name in edges)


def _inline_references(node: Any, definitions: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline_references(value, definitions) for value in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/$defs/"):
        target = _inline_references(definitions[reference.rpartition("/")[2]], definitions)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_inline_references(siblings, definitions)}
    return {
        key: _inline_references(value, definitions) for key, value in node.items() if key != "$defs"
    }


# -- requests ---------------------------------------------------------------------------------


def gemini_contents(prompt: PromptParts) -> dict[str, Any]:
    """The ``contents`` and ``systemInstruction`` of ``prompt`` (pure);
    :class:`~batchor.ItemBuildError` naming the field for what Gemini cannot take."""
    system, messages = prompt.conversation()
    fields: dict[str, Any] = {
        "contents": [
            {
                "role": "model" if message.role == "assistant" else "user",
                "parts": _parts(message, index),
            }
            for index, message in enumerate(messages)
        ]
    }
    if system:
        fields["systemInstruction"] = {"parts": [{"text": system}]}
    return fields


def _parts(message: Message, index: int) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"text": message.content}]
    return [_part(part, f"messages[{index}]") for part in message.content]


def _part(part: ContentPart, where: str) -> dict[str, Any]:
    if part.kind == "text":
        return {"text": part.text or ""}
    if part.url is not None and part.url.startswith("data:"):
        header, _, data = part.url.partition(",")
        inline_type = header.removeprefix("data:").partition(";")[0]
        return {"inlineData": {"mimeType": inline_type, "data": data}}
    if part.url is not None:
        file_data = {"fileUri": part.url}
        guessed = part.media_type or mimetypes.guess_type(part.url)[0]
        if guessed:
            file_data["mimeType"] = guessed
        return {"fileData": file_data}
    if part.data is None or part.media_type is None:
        raise ItemBuildError(f"{where}: an {part.kind} part needs url, or data and media_type")
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def gemini_options(options: RequestOptions) -> dict[str, Any]:
    """The request fields of per-request ``options`` (pure): ``generationConfig``
    settings, ``tools`` as ``functionDeclarations``, ``toolConfig``, and ``metadata``
    as ``labels``."""
    generation: dict[str, Any] = {}
    if options.temperature is not None:
        generation["temperature"] = options.temperature
    if options.top_p is not None:
        generation["topP"] = options.top_p
    if options.max_output_tokens is not None:
        generation["maxOutputTokens"] = options.max_output_tokens
    if options.stop:
        if len(options.stop) > MAX_STOP_SEQUENCES:
            raise ItemBuildError(
                f"options.stop: Gemini takes at most {MAX_STOP_SEQUENCES} stop sequences, "
                f"got {len(options.stop)}"
            )
        generation["stopSequences"] = list(options.stop)
    fields: dict[str, Any] = {"generationConfig": generation} if generation else {}
    if options.tools:
        declarations = []
        for tool in options.tools:
            declaration: dict[str, Any] = {
                "name": tool.name,
                "parametersJsonSchema": dict(tool.parameters),
            }
            if tool.description:
                declaration["description"] = tool.description
            declarations.append(declaration)
        fields["tools"] = [{"functionDeclarations": declarations}]
    choice = options.tool_choice
    if choice is not None:
        modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
        if choice in modes:
            calling: dict[str, Any] = {"mode": modes[choice]}
        elif choice in {tool.name for tool in options.tools}:
            calling = {"mode": "ANY", "allowedFunctionNames": [choice]}
        else:
            raise ItemBuildError(f"options.tool_choice: no tool named {choice!r}")
        fields["toolConfig"] = {"functionCallingConfig": calling}
    if options.metadata:
        for key, value in options.metadata.items():
            if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
                raise ItemBuildError(
                    f"options.metadata: Gemini sends metadata as labels, whose keys and "
                    "values are lowercase letters, digits, '_' and '-' (at most 63, a key "
                    f"starting with a letter); got {key!r}: {value!r}"
                )
        fields["labels"] = dict(options.metadata)
    return fields


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra``'s fields over it; ``generationConfig`` merged key by key."""
    merged = {**base, **extra}
    if "generationConfig" in base and "generationConfig" in extra:
        merged["generationConfig"] = {**base["generationConfig"], **extra["generationConfig"]}
    return merged


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# -- the adapter ------------------------------------------------------------------------------


class GeminiBatchProvider:
    """Drives the Gemini Developer API's Files API and batch mode for one model."""

    def __init__(
        self,
        config: GeminiProviderConfig,
        *,
        api_key: str | None = None,
        output_schema: dict[str, Any] | None = None,
    ) -> None:
        self._config = config
        self._api_key = api_key
        self._genai_client: genai.Client | None = None
        generation = dict(config.request_options.get("generationConfig") or {})
        if output_schema is not None:
            generation["responseMimeType"] = "application/json"
            generation["responseJsonSchema"] = output_schema
        fixed = {k: v for k, v in config.request_options.items() if k != "generationConfig"}
        if generation:
            fixed["generationConfig"] = generation
        self._fixed_fields = fixed
        # Plain prompts are assembled from pre-serialised fragments: the fixed part
        # of every request (options, schema) is encoded once, not once per item.
        self._line_tail = "," + _dumps(fixed)[1:-1] if fixed else ""
        schema_text = json.dumps(output_schema) if output_schema else ""
        self._schema_tokens = estimate_prompt_tokens(schema_text, None) if schema_text else 0

    @property
    def _client(self) -> genai.Client:
        """The SDK client, made on first use: building request lines needs no key."""
        if self._genai_client is None:
            from google import genai
            from google.genai import types

            key = self._key()
            if not key:
                raise ConfigurationError(
                    "no Gemini API key: pass GeminiProviderConfig(api_key=...), "
                    "BatchRunner(api_key=...) or set GEMINI_API_KEY (or GOOGLE_API_KEY)"
                )
            retries = self._config.max_retries
            self._genai_client = genai.Client(
                api_key=key,
                vertexai=False,
                http_options=types.HttpOptions(
                    base_url=self._config.base_url or os.environ.get("GEMINI_BASE_URL") or None,
                    api_version=self._config.api_version,
                    timeout=int(self._config.request_timeout * 1000),  # milliseconds
                    retry_options=types.HttpRetryOptions(attempts=retries + 1) if retries else None,
                ),
            )
        return self._genai_client

    def _key(self) -> str | None:
        return (
            self._api_key
            or self._config.api_key
            or os.environ.get("GEMINI_API_KEY")
            or os.environ.get("GOOGLE_API_KEY")
        )

    def _translated(self, call: Callable[[], T], action: str = "call") -> T:
        """Run an SDK call, turning its errors into the provider protocol's."""
        try:
            return call()
        except Exception as exc:
            error = provider_error(exc, action=action, secret=self._key())
            if error is None:
                raise
            raise error from exc

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
        return None if limits is None else limits.budget()

    def custom_id(self, item_id: str, item_index: int) -> str:
        return item_id

    def build_request_line(self, custom_id: str, prompt: PromptParts) -> RequestLine:
        if prompt.messages or prompt.options is not None:
            return self._full_request_line(custom_id, prompt)
        text, system_prompt = prompt.prompt, prompt.system_prompt
        fields = f'"contents":[{{"role":"user","parts":[{{"text":{_dumps(text)}}}]}}]'
        if system_prompt:
            fields += f',"systemInstruction":{{"parts":[{{"text":{_dumps(system_prompt)}}}]}}'
        line = f'{{"key":{_dumps(custom_id)},"request":{{{fields}{self._line_tail}}}}}'
        return RequestLine(
            data=line.encode("utf-8"),
            estimated_tokens=estimate_prompt_tokens(text, system_prompt) + self._schema_tokens,
        )

    def _full_request_line(self, custom_id: str, prompt: PromptParts) -> RequestLine:
        """A request of any shape (messages, content parts, per-request options)."""
        request = _merged(gemini_contents(prompt), self._fixed_fields)
        tools_text = ""
        if prompt.options is not None:
            request = _merged(request, gemini_options(prompt.options))
            tools_text = _dumps(request["tools"]) if "tools" in request else ""
        line = _dumps({"key": custom_id, "request": request})
        return RequestLine(
            data=line.encode("utf-8"),
            estimated_tokens=estimate_prompt_parts_tokens(prompt)
            + self._schema_tokens
            + (estimate_prompt_tokens(tools_text, None) if tools_text else 0),
        )

    def upload_input(self, path: Path) -> str:
        from google.genai import types

        def upload() -> str:
            uploaded = self._client.files.upload(
                file=str(path),
                # "jsonl" is the MIME type Google's batch-mode guide uploads with
                config=types.UploadFileConfig(mime_type="jsonl", display_name=path.name),
            )
            if not uploaded.name:
                raise TransientProviderError("the Files API returned a file without a name")
            return uploaded.name

        return self._translated(upload, action="upload")

    def create_batch(
        self, *, input_ref: str | None, path: Path, batch_key: str, metadata: Mapping[str, str]
    ) -> ProviderBatch:
        """Create the batch from the uploaded file; ``display_name`` carries
        ``batch_key``. Gemini batches have no metadata, so ``metadata`` is not sent."""
        from google.genai import types

        assert input_ref is not None, "Gemini batches are created from an uploaded file"
        # No client-side retry here: a retried create that had reached the provider
        # would make a second batch (Gemini's creates are not idempotent). A failed
        # create leaves the batch "creating", and the next step finds it by its key
        # (find_batch) or creates it then.
        config = types.CreateBatchJobConfig(
            display_name=batch_key,
            http_options=types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1)),
        )
        job = self._translated(
            lambda: self._client.batches.create(
                model=self._config.model, src=input_ref, config=config
            ),
            action="create",
        )
        return self._provider_batch(job)

    def find_batch(
        self,
        *,
        batch_key: str,
        created_after: float,
        request_count: int,
        input_ref: str | None = None,
    ) -> ProviderBatch | None:
        """The newest batch whose display name is ``batch_key``, looking back no
        further than ``created_after`` (the list is newest first)."""

        def find() -> ProviderBatch | None:
            # Paged by hand: the SDK's iterator fails on an empty page that still
            # carries a next-page token.
            pager = self._client.batches.list(config={"page_size": 100})
            while True:
                for job in pager.page:
                    if job.create_time is not None and job.create_time.timestamp() < (
                        created_after
                    ):
                        return None
                    if job.display_name == batch_key:
                        return self._provider_batch(job)
                if not pager.config.get("page_token"):
                    return None
                pager.next_page()

        return self._translated(find)

    def get_batch(self, batch_id: str) -> ProviderBatch:
        return self._provider_batch(
            self._translated(lambda: self._client.batches.get(name=batch_id))
        )

    def cancel_batch(self, batch_id: str) -> ProviderBatch:
        self._translated(lambda: self._client.batches.cancel(name=batch_id))
        return self.get_batch(batch_id)

    def _provider_batch(self, job: Any) -> ProviderBatch:
        state = str(getattr(job.state, "value", job.state) or "JOB_STATE_UNSPECIFIED")
        status = _STATUSES.get(state)
        if status is None:
            logger.warning("Gemini batch %s is in an unknown state %r", job.name, state)
            status = BatchStatus.IN_PROGRESS
        destination = job.dest
        result_files: tuple[str, ...] = ()
        # An expired batch has no results at all: every request in it is left to
        # be resubmitted, whatever a destination may say.
        if status is not BatchStatus.EXPIRED and destination is not None:
            if destination.file_name:
                result_files = (destination.file_name,)
            elif destination.inlined_responses:
                logger.warning(
                    "Gemini batch %s returned its results inline, which batchor does not "
                    "read; its requests count as missing and are resubmitted",
                    job.name,
                )
        errors: tuple[ProviderBatchError, ...] = ()
        if status is BatchStatus.FAILED:
            errors = self._failure_of(str(job.name))
        return ProviderBatch(
            batch_id=str(job.name),
            status=status,
            created_at=job.create_time.timestamp() if job.create_time else 0.0,
            batch_key=job.display_name,
            result_files=result_files,
            errors=errors,
        )

    def _failure_of(self, batch_id: str) -> tuple[ProviderBatchError, ...]:
        """Why a batch failed: the SDK's ``BatchJob`` drops the operation's ``error``,
        so it is read from the raw operation (through the SDK's own transport)."""
        try:
            response = self._client._api_client.request(
                "get", f"batches/{batch_id.removeprefix('batches/')}", {}
            )
            error = json.loads(response.body or "{}").get("error") or {}
        except Exception as exc:  # the reason is a nicety: never fail the poll for it
            logger.warning("could not read why Gemini batch %s failed: %s", batch_id, exc)
            error = {}
        if not isinstance(error, dict):
            error = {}
        return (
            ProviderBatchError(
                code=_status_name(error.get("status"), error.get("code")) or "batch_failed",
                message=str(error.get("message") or "the provider failed the batch"),
            ),
        )

    def download(self, ref: str, destination: BinaryIO) -> None:
        """Stream a result file into ``destination``, retrying transient failures (the
        SDK never retries a download); a retry skips the bytes already written."""
        writer = _ResumingWriter(destination)
        attempt = 0
        while True:
            writer.restart()
            try:
                self._client.files.download(file=ref, destination=writer)
                return
            except Exception as exc:
                error = provider_error(exc, action="download", secret=self._key())
                if error is None:
                    raise
                if not isinstance(error, TransientProviderError) or (
                    attempt >= self._config.max_retries
                ):
                    raise error from exc
                pause = min(DOWNLOAD_RETRY_SECONDS * 2**attempt, 30.0)
                logger.info("download of %s failed (%s); retrying in %.1f s", ref, error, pause)
                time.sleep(pause)
                attempt += 1

    def cleanup(self, batch_id: str | None, refs: Sequence[str]) -> None:
        """Delete the batch's files (one the API refuses to delete, as it may a
        generated result file, is left to expire after 48 hours), then the batch."""
        from google.genai import errors

        for ref in refs:
            try:
                self._client.files.delete(name=ref)
            except errors.APIError as exc:
                if exc.code == 404:
                    continue  # already gone
                if exc.code in (400, 403):  # a generated file may not be deletable
                    logger.info("Gemini keeps file %s until it expires: %s", ref, exc)
                    continue
                raise _translated_error(exc, "cleanup", self._key()) from exc
            except Exception as exc:
                error = provider_error(exc, action="cleanup", secret=self._key())
                if error is None:
                    raise
                raise error from exc
        if batch_id is not None:
            try:
                self._client.batches.delete(name=batch_id)
            except errors.APIError as exc:
                if exc.code != 404:
                    raise _translated_error(exc, "cleanup", self._key()) from exc

    def parse_result_line(self, line: bytes) -> RequestOutcome:
        try:
            record = parse_json(line)
            key = record["key"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ResultLineError(f"unparseable result line: {exc}") from exc
        return parse_gemini_result(str(key), record)


class _ResumingWriter(io.RawIOBase):
    """Writes a download into ``destination``; after :meth:`restart` it drops the
    bytes already written, so a retried download continues where the last stopped
    (a result file never changes)."""

    def __init__(self, destination: BinaryIO) -> None:
        super().__init__()
        self._destination = destination
        self._written = 0
        self._position = 0

    def restart(self) -> None:
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        skip = max(0, self._written - self._position)
        self._position += len(chunk)
        if skip < len(chunk):
            self._destination.write(chunk[skip:])
            self._written += len(chunk) - skip
        return len(chunk)


# -- errors -----------------------------------------------------------------------------------

_SECRETS = (
    re.compile(r"([?&]key=)[^&\s'\"]+"),
    re.compile(r"()AIza[0-9A-Za-z_\-]{8,}"),
)
_LIMIT_IN_MESSAGE = re.compile(r"[Ll]imit:?\s*([\d,]+)")
_BYTES_IN_MESSAGE = re.compile(r"([\d,]+)\s*bytes")
_REQUESTS_IN_MESSAGE = re.compile(r"([\d,]+)\s*requests")


def scrubbed(text: str, secret: str | None = None) -> str:
    """``text`` without API keys (a key may appear in a URL as ``key=``)."""
    if secret:
        text = text.replace(secret, "***")
    for pattern in _SECRETS:
        text = pattern.sub(r"\1***", text)
    return text


def provider_error(exc: BaseException, *, action: str, secret: str | None) -> ProviderError | None:
    """``exc`` from the SDK (or its HTTP client) as a :class:`~batchor.ProviderError`;
    ``None`` when it is not a provider failure (a bug to let through).

    ``action`` says what was being done (``upload``, ``create``...): a 429 on a
    create is Gemini refusing the batch for its enqueued-token limit, elsewhere a
    rate limit to wait out.
    """
    from google.genai import errors

    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, BatchorError):
        return None  # batchor's own (no key configured...): not the provider's doing
    if isinstance(exc, errors.APIError):
        return _translated_error(exc, action, secret)
    if isinstance(exc, _transport_errors()):
        return TransientProviderError(
            scrubbed(f"{type(exc).__name__} ({action}): {exc} ({_where(exc)})", secret)
        )
    if isinstance(exc, (ValueError, KeyError)) and action == "upload":
        # the resumable upload's protocol failing (no upload URL, not finalised)
        return TransientProviderError(scrubbed(f"the upload failed: {exc}", secret))
    return None


def _translated_error(exc: Any, action: str, secret: str | None) -> ProviderError:
    status_code = exc.code if isinstance(exc.code, int) else 0
    status = _status_name(exc.status, None) or f"HTTP_{status_code}"
    details = _details(exc)
    message = scrubbed(f"Gemini {action}: {status_code} {status}: {exc.message or ''}", secret)
    text = f"{exc.message} {json.dumps(details)}"
    if (
        status_code in (401, 403)
        or status in ("UNAUTHENTICATED", "PERMISSION_DENIED")
        or ("API key not valid" in text or "API_KEY_INVALID" in text)
    ):
        return ProviderAuthenticationError(
            f"{message}; check GEMINI_API_KEY (or GOOGLE_API_KEY, or api_key=) and base_url",
            code=status,
        )
    quota = _quota_violations(details)
    if status == "FAILED_PRECONDITION" and "billing" in text.lower():
        return QuotaExhaustedError(message, code=status)
    if status_code == 429 and any("PerDay" in v.get("quotaId", "") for v in quota):
        return QuotaExhaustedError(message, code=status)
    if (
        status_code == 429
        and action == "create"
        and not any(
            "PerMinute" in v.get("quotaId", "") or "oncurrent" in v.get("quotaId", "")
            for v in quota
        )
    ):
        limit = next((_int(v.get("quotaValue")) for v in quota if v.get("quotaValue")), None)
        if limit is None:
            limit = _number(_LIMIT_IN_MESSAGE, str(exc.message or ""))
        return BatchRefusedError(
            message, refusal=Refusal(RefusalKind.ENQUEUED_TOKENS, limit, message), code=status
        )
    if action in ("upload", "create") and status_code in (400, 413):
        lowered = str(exc.message or "").lower()
        if "too large" in lowered or ("size" in lowered and "exceed" in lowered):
            limit = _number(_BYTES_IN_MESSAGE, str(exc.message))
            refusal = Refusal(RefusalKind.BATCH_BYTES, limit, message)
            return BatchRefusedError(message, refusal=refusal, code=status)
        if "requests" in lowered and ("too many" in lowered or "more than" in lowered):
            limit = _number(_REQUESTS_IN_MESSAGE, str(exc.message))
            refusal = Refusal(RefusalKind.REQUESTS_PER_BATCH, limit, message)
            return BatchRefusedError(message, refusal=refusal, code=status)
    if status_code in RETRYABLE_HTTP_CODES or status_code >= 500:
        return TransientProviderError(message, code=status)
    return ProviderRejectedError(message, code=status)


def _details(exc: Any) -> list[dict[str, Any]]:
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _quota_violations(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        violation
        for detail in details
        if str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure")
        for violation in detail.get("violations") or []
        if isinstance(violation, dict)
    ]


def _number(pattern: re.Pattern[str], text: str) -> int | None:
    found = pattern.search(text)
    return int(found.group(1).replace(",", "")) if found else None


def _int(value: Any) -> int | None:
    try:
        return int(str(value).replace(",", ""))
    except ValueError:
        return None


def _status_name(status: Any, code: Any) -> str | None:
    """A canonical status name from ``status`` ("RESOURCE_EXHAUSTED") or a gRPC
    ``code`` (8)."""
    if isinstance(status, str) and status:
        return status.upper().replace(" ", "_")
    if isinstance(code, int) and not isinstance(code, bool):
        return GRPC_CODES.get(code, f"HTTP_{code}" if code >= 100 else f"CODE_{code}")
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP clients' transport errors (the SDK runs on ``httpx`` or ``httpx2``)."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found.append(module.TransportError)
    return tuple(found)


def _where(exc: BaseException) -> str:
    """``POST http://host:port/path``: what a transport error tried to reach, without
    query (where a key may be)."""
    try:
        request = exc.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return "no request"
    url = request.url
    port = f":{url.port}" if url.port else ""
    return f"{request.method} {url.scheme}://{url.host}{port}{url.path}"


# -- results ----------------------------------------------------------------------------------


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    return value if type(value) is int else 0


def gemini_usage(response: Mapping[str, Any]) -> Usage:
    """Usage of a ``GenerateContentResponse``: prompt (and tool-use prompt) tokens in,
    candidates and thoughts tokens out."""
    usage = _object(response.get("usageMetadata"))
    thoughts = _count(usage.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=_count(usage.get("promptTokenCount"))
        + _count(usage.get("toolUsePromptTokenCount")),
        cached_input_tokens=_count(usage.get("cachedContentTokenCount")),
        output_tokens=_count(usage.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
    )


def parse_gemini_result(key: str, record: Mapping[str, Any]) -> RequestOutcome:
    """Turn one results-file record (``{"key", "response"}`` or ``{"key", "error"}``)
    into an outcome (pure)."""
    error = record.get("error")
    response = _object(record.get("response"))
    if error or not response:
        error = _object(error)
        code = _status_name(error.get("status"), error.get("code")) or "request_failed"
        return RequestOutcome(
            custom_id=key,
            kind=OutcomeKind.FAILED,
            error_code=code,
            error_message=str(error.get("message") or "the provider returned no response"),
            retryable=code in RETRYABLE_ERRORS or error.get("code") in RETRYABLE_HTTP_CODES,
        )
    usage = gemini_usage(response)

    def failed(code: str, message: str, retryable: bool = False) -> RequestOutcome:
        return RequestOutcome(
            custom_id=key,
            kind=OutcomeKind.FAILED,
            error_code=code,
            error_message=message,
            retryable=retryable,
            usage=usage,
        )

    blocked = _object(response.get("promptFeedback")).get("blockReason")
    if blocked:
        return failed("prompt_blocked", f"the prompt was blocked ({blocked})")
    candidates = response.get("candidates") or []
    if not candidates:
        return failed("empty_output", "the response has no candidates")
    candidate = _object(candidates[0])
    reason = candidate.get("finishReason") or "STOP"
    if reason == "MAX_TOKENS":
        return failed("incomplete_output", "the reply hit its token limit (MAX_TOKENS)")
    if reason not in ("STOP", "FINISH_REASON_UNSPECIFIED"):
        return failed(
            f"finish_{str(reason).lower()}",
            f"the reply ended with {reason}",
            retryable=reason in RETRYABLE_FINISH_REASONS,
        )
    texts: list[str] = []
    calls: list[tuple[str, Any]] = []
    for part in _object(candidate.get("content")).get("parts") or []:
        part = _object(part)
        if isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
        call = _object(part.get("functionCall"))
        if call:
            calls.append((str(call.get("name", "")), call.get("args", {})))
    if texts:
        return RequestOutcome(custom_id=key, output_text="".join(texts), usage=usage)
    if calls:
        return RequestOutcome(custom_id=key, output_text=tool_calls_text(calls), usage=usage)
    return failed("empty_output", "the reply has no text")
