"""The HTTP face of the local server: routes, parameters, auth and error envelopes.

:class:`BatchApi` maps each OpenAI route to one :class:`~batchor.testing.store.BatchStore`
operation. Per call it: counts the call (by templated path), checks the bearer
key, fires any injected HTTP fault, validates parameters the way OpenAI does
(400 ``invalid_request_error`` naming the ``param``), and writes the JSON reply
or streams file content.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from batchor.testing.faults import Faults
from batchor.testing.models import ApiError
from batchor.testing.multipart import (
    BodyReader,
    ChunkedReader,
    LengthReader,
    MultipartError,
    boundary_of,
    drain,
    parse_multipart,
    read_all,
)
from batchor.testing.store import FILE_PURPOSES, BatchStore

logger = logging.getLogger("batchor.testing")

SUPPORTED_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings")
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_JSON_BODY_BYTES = 1024 * 1024

_MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


@dataclass(slots=True)
class Call:
    """One HTTP call, as a route handler sees it."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: Message
    body: BodyReader


@dataclass(slots=True)
class JsonReply:
    payload: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamReply:
    stream: BinaryIO
    size: int
    content_type: str = "application/octet-stream"


Reply = JsonReply | StreamReply


@dataclass(slots=True, frozen=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Callable[[Call], Reply]


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")


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


class BatchApi:
    """Routes HTTP calls to the store; owns the call counter and the auth rule."""

    def __init__(
        self, *, store: BatchStore, faults: Faults, api_key: str | None, max_file_bytes: int
    ) -> None:
        self.store = store
        self.faults = faults
        self.api_key = api_key
        self.max_file_bytes = max_file_bytes
        self.call_counts: Counter[str] = Counter()
        self.counts_lock = threading.Lock()
        self._routes = [
            _Route(method, template, _compile(template), handler)
            for method, template, handler in (
                ("POST", "/v1/files", self.upload_file),
                ("GET", "/v1/files", self.list_files),
                ("GET", "/v1/files/{id}", self.retrieve_file),
                ("DELETE", "/v1/files/{id}", self.delete_file),
                ("GET", "/v1/files/{id}/content", self.file_content),
                ("POST", "/v1/batches", self.create_batch),
                ("GET", "/v1/batches", self.list_batches),
                ("GET", "/v1/batches/{id}", self.retrieve_batch),
                ("POST", "/v1/batches/{id}/cancel", self.cancel_batch),
            )
        ]

    # ------------------------------------------------------------------ dispatch

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        """Answer one HTTP request (called from the request's handler thread)."""
        split = urlsplit(request.path)
        path = split.path.rstrip("/") or "/"
        route, params = self._match(method, path)
        with self.counts_lock:
            self.call_counts[f"{method} {route.template if route else path}"] += 1
        call = Call(
            method=method,
            path=path,
            params=params,
            query={k: v[-1] for k, v in parse_qs(split.query).items()},
            headers=request.headers,
            body=self._body_reader(request),
        )
        try:
            self._authenticate(call.headers)
            injected = self.faults.take_http_error(method, path)
            if injected is not None:
                raise injected
            if route is None:
                raise ApiError(404, f"Invalid URL ({method} {path})")
            self.faults.hold_if_stalled(method, path, after_processing=False)
            reply = route.handler(call)
            self.faults.hold_if_stalled(method, path, after_processing=True)
        except ApiError as error:
            reply = JsonReply(error.envelope(), error.status, error.headers)
        except MultipartError as error:
            reply = JsonReply(ApiError(400, str(error)).envelope(), 400)
        except Exception:
            logger.exception("batchor.testing: error while answering %s %s", method, path)
            failure = ApiError(
                500,
                "The local server had an error while processing your request.",
                type="server_error",
            )
            reply = JsonReply(failure.envelope(), 500)
        try:
            drain(call.body)
        except MultipartError:
            request.close_connection = True
        self._send(request, reply)

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method == method and (found := route.pattern.match(path)):
                return route, found.groupdict()
        return None, {}

    @staticmethod
    def _body_reader(request: BaseHTTPRequestHandler) -> BodyReader:
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return ChunkedReader(request.rfile)
        try:
            length = int(request.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        return LengthReader(request.rfile, max(length, 0))

    def _authenticate(self, headers: Message) -> None:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, _MISSING_KEY_MESSAGE)
        if self.api_key is not None and token != self.api_key:
            raise ApiError(
                401,
                f"Incorrect API key provided: {_mask_key(token)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, reply: Reply) -> None:
        request.send_response(reply.status if isinstance(reply, JsonReply) else 200)
        request.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        if isinstance(reply, JsonReply):
            data = json.dumps(reply.payload).encode("utf-8")
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(data)
            return
        with reply.stream:
            request.send_header("Content-Type", reply.content_type)
            request.send_header("Content-Length", str(reply.size))
            request.end_headers()
            shutil.copyfileobj(reply.stream, request.wfile, 256 * 1024)

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
        try:
            form = parse_multipart(
                call.body,
                boundary,
                file_field="file",
                file_path=upload_path,
                max_file_bytes=self.max_file_bytes,
            )
            purpose = form.fields.get("purpose")
            if form.file is None:
                raise _missing("file")
            if purpose is None:
                raise _missing("purpose")
            if purpose not in FILE_PURPOSES:
                raise _invalid(
                    "purpose",
                    f"Invalid value for 'purpose': {purpose!r}. Supported values are: "
                    + ", ".join(f"'{p}'" for p in sorted(FILE_PURPOSES))
                    + ".",
                )
            if form.file.too_large:
                raise _invalid(
                    "file",
                    f"File is too large: {form.file.size} bytes. The maximum file size for "
                    f"this server is {self.max_file_bytes} bytes.",
                    "file_too_large",
                )
            if purpose == "batch" and not form.file.filename.endswith(".jsonl"):
                raise _invalid(
                    "file",
                    f"Invalid file format for Batch API: {form.file.filename!r}. Must be .jsonl",
                    "invalid_file_format",
                )
            record = self.store.add_file(
                upload_path, filename=form.file.filename, purpose=purpose, size=form.file.size
            )
        finally:
            upload_path.unlink(missing_ok=True)
        return JsonReply(record.to_api())

    def list_files(self, call: Call) -> Reply:
        order = call.query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _invalid("order", f"Invalid value for 'order': {order!r}. Use 'asc' or 'desc'.")
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
        endpoint = body["endpoint"]
        if endpoint not in SUPPORTED_ENDPOINTS:
            raise _invalid(
                "endpoint",
                f"Invalid value: {endpoint!r}. Supported values are: "
                + ", ".join(f"'{e}'" for e in SUPPORTED_ENDPOINTS)
                + ".",
            )
        if body["completion_window"] != "24h":
            raise _invalid(
                "completion_window",
                f"Invalid value: {body['completion_window']!r}. Supported values are: '24h'.",
            )
        record = self.store.create_batch(
            input_file_id=input_file_id,
            endpoint=endpoint,
            completion_window="24h",
            metadata=_metadata(body.get("metadata")),
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
