"""OpenAI's Files and Batches API, as the local server speaks it.

:class:`OpenAIApi` is the OpenAI provider API mounted on the shared HTTP server
(:mod:`batchor.testing.server`). It maps each route to one
:class:`~batchor.testing.openai_store.OpenAIStore` operation, checks the bearer
key, validates parameters the way OpenAI does (400 ``invalid_request_error``
naming the ``param``) and renders errors in OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}``.

Batch endpoints answered: see :data:`SUPPORTED_ENDPOINTS`. The spec also lists
``/v1/videos``; a video batch produces video jobs whose content is fetched from
``/v1/videos/{id}/content``, which this server does not emulate, so creating one
is refused the way OpenAI refuses an endpoint it does not support.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from batchor.testing.context import ServerContext
from batchor.testing.faults import InjectedHttpError
from batchor.testing.multipart import boundary_of, parse_multipart, read_all
from batchor.testing.openai_bodies import ANSWERED_ENDPOINTS
from batchor.testing.openai_store import FILE_PURPOSES, OpenAIStore
from batchor.testing.routing import ApiError, Call, JsonReply, Reply, Route, StreamReply, route

SUPPORTED_ENDPOINTS: tuple[str, ...] = ANSWERED_ENDPOINTS
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_JSON_BODY_BYTES = 1024 * 1024
MIN_EXPIRES_AFTER_SECONDS = 3600
MAX_EXPIRES_AFTER_SECONDS = 2_592_000
"""``expires_after.seconds`` (files) and ``output_expires_after.seconds`` (batches):
between one hour and 30 days, as the spec says."""

_MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)

_INJECTED_ERRORS: dict[int, tuple[str, str, str | None]] = {
    429: (
        "Rate limit reached for requests (injected by batchor.testing). Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
}
"""How OpenAI words an error status: message, type, code."""


def _mask_key(key: str) -> str:
    if len(key) <= 8:
        return key[:2] + "*" * max(len(key) - 2, 0)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def _missing(param: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _unsupported_value(param: str, value: object, supported: Sequence[str]) -> ApiError:
    """OpenAI's refusal of a value outside an enum (an unsupported endpoint, say)."""
    quoted = [f"'{value}'" for value in supported]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    return _invalid(param, f"Invalid value: {value!r}. Supported values are: {listed}.")


def _int_query(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(name, f"Invalid '{name}': expected an integer, got {raw!r}.") from None
    if not low <= value <= high:
        raise _invalid(
            name,
            f"Invalid '{name}': {value} is not between {low} and {high}.",
            "integer_out_of_range",
        )
    return value


def _metadata(raw: object) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _invalid("metadata", "Invalid 'metadata': expected an object.", "invalid_type")
    if len(raw) > MAX_METADATA_PAIRS:
        raise _invalid(
            "metadata",
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{MAX_METADATA_PAIRS} properties, but got an object with {len(raw)} properties "
            "instead.",
            "object_above_max_properties",
        )
    for key, value in raw.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise _invalid(
                "metadata",
                f"Invalid 'metadata': key {key[:20]!r}... is longer than "
                f"{MAX_METADATA_KEY_CHARS} characters.",
                "string_above_max_length",
            )
        if not isinstance(value, str):
            raise _invalid(
                f"metadata.{key}", f"Invalid 'metadata.{key}': expected a string.", "invalid_type"
            )
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise _invalid(
                f"metadata.{key}",
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length {MAX_METADATA_VALUE_CHARS}, but got a string with length {len(value)} "
                "instead.",
                "string_above_max_length",
            )
    return dict(raw)


def _expires_after(name: str, anchor: object, seconds: object) -> int:
    """Validate an expiration policy ``{anchor: "created_at", seconds}``; return the seconds.

    ``seconds`` may arrive as text (a multipart form field) or a JSON integer.
    """
    if anchor is None:
        raise _missing(f"{name}.anchor")
    if anchor != "created_at":
        raise _unsupported_value(f"{name}.anchor", anchor, ["created_at"])
    if seconds is None:
        raise _missing(f"{name}.seconds")
    if isinstance(seconds, str) and seconds.strip().lstrip("-").isdigit():
        seconds = int(seconds)
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise _invalid(
            f"{name}.seconds",
            f"Invalid type for '{name}.seconds': expected an integer, but got "
            f"{type(seconds).__name__} instead.",
            "invalid_type",
        )
    if seconds < MIN_EXPIRES_AFTER_SECONDS:
        raise _invalid(
            f"{name}.seconds",
            f"Invalid '{name}.seconds': integer below minimum value. Expected a value >= "
            f"{MIN_EXPIRES_AFTER_SECONDS}, but got {seconds} instead.",
            "integer_below_min_value",
        )
    if seconds > MAX_EXPIRES_AFTER_SECONDS:
        raise _invalid(
            f"{name}.seconds",
            f"Invalid '{name}.seconds': integer above maximum value. Expected a value <= "
            f"{MAX_EXPIRES_AFTER_SECONDS}, but got {seconds} instead.",
            "integer_above_max_value",
        )
    return seconds


def _starts_as_jsonl(path: Path) -> bool:
    """Whether the file's first non-blank line is a JSON object (how an upload without
    a file extension is recognised as a batch input file)."""
    with path.open("rb") as lines:
        for raw in lines:
            if raw.strip():
                try:
                    return isinstance(json.loads(raw), dict)
                except ValueError:
                    return False
    return False


AZURE_PREFIX = "/openai"
"""Where Azure OpenAI serves the Files and Batches API."""


class OpenAIApi:
    """OpenAI's Files + Batches routes, backed by one :class:`OpenAIStore`.

    ``api_key``: ``None`` accepts any bearer key; a string requires exactly that key.
    """

    def __init__(self, context: ServerContext, *, api_key: str | None) -> None:
        self.store = OpenAIStore(context)
        self.api_key = api_key
        self._limits = context.limits
        handlers = (
            ("POST", "/files", self.upload_file),
            ("GET", "/files", self.list_files),
            ("GET", "/files/{id}", self.retrieve_file),
            ("DELETE", "/files/{id}", self.delete_file),
            ("GET", "/files/{id}/content", self.file_content),
            ("POST", "/batches", self.create_batch),
            ("GET", "/batches", self.list_batches),
            ("GET", "/batches/{id}", self.retrieve_batch),
            ("POST", "/batches/{id}/cancel", self.cancel_batch),
        )
        # Azure OpenAI serves the same API under /openai (with ?api-version=), keyed
        # by an api-key header, with batch endpoints and request urls written without
        # the /v1 (``/chat/completions``); the model of each request is a deployment.
        self.routes: tuple[Route, ...] = tuple(
            route(method, f"{prefix}{path}", handler)
            for prefix in ("/v1", AZURE_PREFIX)
            for method, path, handler in handlers
        )

    # ------------------------------------------------------------ as a provider API

    def owns(self, path: str) -> bool:
        return path == "/v1" or path.startswith(("/v1/", f"{AZURE_PREFIX}/"))

    def authenticate(self, call: Call) -> None:
        scheme, _, token = (call.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        azure_key = call.headers.get("api-key")
        if call.path.startswith(AZURE_PREFIX) and azure_key:
            scheme, token = "bearer", azure_key.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, _MISSING_KEY_MESSAGE)
        if self.api_key is not None and token != self.api_key:
            raise ApiError(
                401,
                f"Incorrect API key provided: {_mask_key(token)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def error_reply(self, error: ApiError) -> JsonReply:
        envelope = {
            "error": {
                "message": error.message,
                "type": error.type,
                "param": error.param,
                "code": error.code,
            }
        }
        return JsonReply(envelope, error.status, error.headers)

    def injected_error(self, fault: InjectedHttpError) -> ApiError:
        message, kind, code = _INJECTED_ERRORS.get(
            fault.status, (f"Injected HTTP {fault.status} error.", "server_error", None)
        )
        return ApiError(
            fault.status,
            fault.message or message,
            type=kind,
            code=fault.code or code,
            headers=fault.retry_after_header(),
        )

    def not_found(self, method: str, path: str) -> ApiError:
        return ApiError(404, f"Invalid URL ({method} {path})")

    # ------------------------------------------------------------------- helpers

    @staticmethod
    def _json_body(call: Call) -> dict[str, Any]:
        try:
            payload = json.loads(read_all(call.body, MAX_JSON_BODY_BYTES) or b"{}")
        except ValueError:
            raise ApiError(
                400,
                "We could not parse the JSON body of your request. The OpenAI API expects a "
                "JSON payload.",
            ) from None
        if not isinstance(payload, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return payload

    # --------------------------------------------------------------------- files

    def upload_file(self, call: Call) -> Reply:
        boundary = boundary_of(call.headers.get("Content-Type", ""))
        upload_path = self.store.upload_path()
        max_bytes = self._limits.max_file_bytes
        try:
            form = parse_multipart(
                call.body,
                boundary,
                file_field="file",
                file_path=upload_path,
                max_file_bytes=max_bytes,
            )
            fields = form.fields
            purpose = fields.get("purpose")
            if form.file is None:
                raise _missing("file")
            if purpose is None:
                raise _missing("purpose")
            if purpose not in FILE_PURPOSES:
                raise _unsupported_value("purpose", purpose, sorted(FILE_PURPOSES))
            expires_after = None
            if "expires_after[anchor]" in fields or "expires_after[seconds]" in fields:
                expires_after = _expires_after(
                    "expires_after",
                    fields.get("expires_after[anchor]"),
                    fields.get("expires_after[seconds]"),
                )
            if form.file.too_large:
                # api.openai.com's words; it sends param and code null, naming them
                # is a deliberate help to whoever reads a failing test.
                raise _invalid("file", "File is too large.", "file_too_large")
            filename = form.file.filename
            suffix = PurePosixPath(filename).suffix
            # The Batch API judges the content, not the name: a part named without an
            # extension (the SDK names raw bytes "upload") is accepted if it reads as
            # JSONL; a name with another extension is refused outright.
            if purpose == "batch" and (
                suffix not in ("", ".jsonl") or (suffix == "" and not _starts_as_jsonl(upload_path))
            ):
                raise _invalid(
                    "file",
                    f"Invalid file format for Batch API: {filename!r}. Must be .jsonl",
                    "invalid_file_format",
                )
            record = self.store.add_file(
                upload_path,
                filename=filename,
                purpose=purpose,
                size=form.file.size,
                expires_after=expires_after,
            )
        finally:
            upload_path.unlink(missing_ok=True)
        return JsonReply(record.to_api())

    def list_files(self, call: Call) -> Reply:
        order = call.query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _unsupported_value("order", order, ["asc", "desc"])
        return JsonReply(
            self.store.list_files(
                purpose=call.query.get("purpose"),
                after=call.query.get("after"),
                limit=_int_query(call.query, "limit", 10_000, 1, 10_000),
                order=order,
            )
        )

    def retrieve_file(self, call: Call) -> Reply:
        return JsonReply(self.store.get_file(call.params["id"]).to_api())

    def delete_file(self, call: Call) -> Reply:
        return JsonReply(self.store.delete_file(call.params["id"]))

    def file_content(self, call: Call) -> Reply:
        stream, size = self.store.open_file_content(call.params["id"])
        return StreamReply(stream, size)

    # ------------------------------------------------------------------- batches

    def create_batch(self, call: Call) -> Reply:
        body = self._json_body(call)
        for name in ("input_file_id", "endpoint", "completion_window"):
            if body.get(name) is None:
                raise _missing(name)
        input_file_id = body["input_file_id"]
        if not isinstance(input_file_id, str):
            raise _invalid(
                "input_file_id", "Invalid 'input_file_id': expected a string.", "invalid_type"
            )
        endpoint = line_url = body["endpoint"]
        if call.path.startswith(AZURE_PREFIX) and isinstance(endpoint, str):
            endpoint = endpoint if endpoint.startswith("/v1/") else f"/v1{endpoint}"
        if endpoint not in SUPPORTED_ENDPOINTS:
            raise _unsupported_value("endpoint", endpoint, SUPPORTED_ENDPOINTS)
        if body["completion_window"] != "24h":
            raise _unsupported_value("completion_window", body["completion_window"], ["24h"])
        output_expires_after = None
        policy = body.get("output_expires_after")
        if policy is not None:
            if not isinstance(policy, dict):
                raise _invalid(
                    "output_expires_after",
                    "Invalid 'output_expires_after': expected an object.",
                    "invalid_type",
                )
            output_expires_after = _expires_after(
                "output_expires_after", policy.get("anchor"), policy.get("seconds")
            )
        record = self.store.create_batch(
            input_file_id=input_file_id,
            endpoint=endpoint,
            line_url=line_url,
            completion_window="24h",
            metadata=_metadata(body.get("metadata")),
            output_expires_after=output_expires_after,
        )
        return JsonReply(record.to_api())

    def list_batches(self, call: Call) -> Reply:
        return JsonReply(
            self.store.list_batches(
                after=call.query.get("after"),
                limit=_int_query(call.query, "limit", 20, 1, 100),
            )
        )

    def retrieve_batch(self, call: Call) -> Reply:
        return JsonReply(self.store.get_batch(call.params["id"]).to_api())

    def cancel_batch(self, call: Call) -> Reply:
        return JsonReply(self.store.cancel_batch(call.params["id"]).to_api())
