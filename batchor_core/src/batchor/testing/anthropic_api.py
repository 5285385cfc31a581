"""Anthropic's Message Batches API, as the local server speaks it.

:class:`AnthropicApi` is mounted on the shared HTTP server beside OpenAI's and
answers every path under ``/v1/messages``. Point the official ``anthropic`` SDK
at the server's root (``anthropic.Anthropic(base_url=server.url)``). Each route
maps to one :class:`~batchor.testing.anthropic_store.AnthropicStore` operation:

==========================================  =========================================
``POST /v1/messages/batches``               create (``{"requests": [...]}``)
``GET /v1/messages/batches``                list, newest first (``before_id``,
                                            ``after_id``, ``limit`` 1-1000, default 20)
``GET /v1/messages/batches/{id}``           retrieve
``POST /v1/messages/batches/{id}/cancel``   cancel
``DELETE /v1/messages/batches/{id}``        delete (once ended)
``GET /v1/messages/batches/{id}/results``   the results, JSONL (the absolute
                                            ``results_url`` of an ended batch)
==========================================  =========================================

Credentials are ``x-api-key: KEY`` or ``Authorization: Bearer KEY`` (what SDK 2.x
sends), with an ``anthropic-version`` header of any value. Errors use Anthropic's
envelope ``{"type": "error", "error": {"type", "message"}, "request_id"}``, and
every reply carries a ``request-id`` header.

The create call is checked as the API checks it, at once: a body over
``max_batch_bytes`` is 413 ``request_too_large``; no requests, more than
``max_requests_per_batch``, a ``custom_id`` that is not 1-64 characters of
``[a-zA-Z0-9_-]`` or that repeats, or ``params`` that are not an object is 400
``invalid_request_error`` with a message naming the field
(``requests.3.custom_id: ...``); a full processing queue is 429
``rate_limit_error``. What is inside ``params`` is judged only when the request
runs, as Anthropic does: a bad one ends ``errored``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from batchor.testing.anthropic_records import (
    AnthropicLimits,
    MessageBatchRecord,
    error_type_for,
)
from batchor.testing.anthropic_store import AnthropicStore
from batchor.testing.context import ServerContext
from batchor.testing.faults import InjectedHttpError
from batchor.testing.multipart import MultipartError, read_all
from batchor.testing.routing import ApiError, Call, JsonReply, Reply, Route, StreamReply, route

CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 20

_INJECTED_MESSAGES = {
    400: "Invalid request (injected by batchor.testing).",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "The requested resource could not be found.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of requests has exceeded your rate limit (injected by batchor.testing).",
    500: "Internal server error",
    504: "Request timed out",
    529: "Overloaded",
}
"""How Anthropic words an error status."""


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, type="invalid_request_error")


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIST_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(f"limit: Input should be a valid integer, got {raw!r}") from None
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise _invalid(f"limit: Input should be between 1 and {MAX_LIST_LIMIT}, got {value}")
    return value


def _check_requests(payload: object, max_requests: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The requests of a create body and each one's model, or the 400 Anthropic gives."""
    if not isinstance(payload, dict):
        raise _invalid("Input should be a valid dictionary")
    if "requests" not in payload:
        raise _invalid("requests: Field required")
    requests = payload["requests"]
    extra = sorted(set(payload) - {"requests"})
    if extra:
        raise _invalid(f"{extra[0]}: Extra inputs are not permitted")
    if not isinstance(requests, list):
        raise _invalid("requests: Input should be a valid list")
    if not requests:
        raise _invalid("requests: List should have at least 1 item after validation, not 0")
    if len(requests) > max_requests:
        raise _invalid(
            f"requests: List should have at most {max_requests} items after validation, "
            f"not {len(requests)}"
        )
    seen: set[str] = set()
    models: list[str] = []
    for index, request in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(request, dict):
            raise _invalid(f"{where}: Input should be a valid dictionary")
        custom_id = request.get("custom_id")
        if custom_id is None:
            raise _invalid(f"{where}.custom_id: Field required")
        if not isinstance(custom_id, str):
            raise _invalid(f"{where}.custom_id: Input should be a valid string")
        if len(custom_id) > 64:
            raise _invalid(f"{where}.custom_id: String should have at most 64 characters")
        if not CUSTOM_ID_PATTERN.match(custom_id):
            raise _invalid(
                f"{where}.custom_id: String should match pattern '{CUSTOM_ID_PATTERN.pattern}'"
            )
        if custom_id in seen:
            raise _invalid(
                f"{where}.custom_id: Duplicate custom_id {custom_id!r}; each request in a batch "
                "must have a unique custom_id"
            )
        seen.add(custom_id)
        params = request.get("params")
        if params is None:
            raise _invalid(f"{where}.params: Field required")
        if not isinstance(params, dict):
            raise _invalid(f"{where}.params: Input should be a valid dictionary")
        model = params.get("model")
        models.append(model if isinstance(model, str) else "")
    return requests, models


class AnthropicApi:
    """Anthropic's Message Batches routes, backed by one :class:`AnthropicStore`.

    ``api_key``: ``None`` accepts any key; a string requires exactly that key.
    """

    def __init__(
        self, context: ServerContext, *, api_key: str | None, limits: AnthropicLimits
    ) -> None:
        self.store = AnthropicStore(context, limits)
        self.api_key = api_key
        self.limits = limits
        self.routes: tuple[Route, ...] = (
            route("POST", "/v1/messages/batches", self.create_batch),
            route("GET", "/v1/messages/batches", self.list_batches),
            route("GET", "/v1/messages/batches/{id}", self.retrieve_batch),
            route("DELETE", "/v1/messages/batches/{id}", self.delete_batch),
            route("POST", "/v1/messages/batches/{id}/cancel", self.cancel_batch),
            route("GET", "/v1/messages/batches/{id}/results", self.batch_results),
        )

    @property
    def batches(self) -> dict[str, MessageBatchRecord]:
        """Every message batch, oldest first, advanced to the clock's current time (a
        new dict of the live records)."""
        with self.store.lock:
            self.store.advance()
            return dict(self.store.batches)

    # ------------------------------------------------------------ as a provider API

    def owns(self, path: str) -> bool:
        return path == "/v1/messages" or path.startswith("/v1/messages/")

    def authenticate(self, call: Call) -> None:
        key = call.headers.get("x-api-key")
        if key is None:
            scheme, _, token = (call.headers.get("Authorization") or "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not key:
            raise ApiError(401, "x-api-key header is required", type="authentication_error")
        if self.api_key is not None and key != self.api_key:
            raise ApiError(401, "invalid x-api-key", type="authentication_error")
        if not call.headers.get("anthropic-version"):
            raise _invalid("anthropic-version: header is required")

    def error_reply(self, error: ApiError) -> JsonReply:
        request_id = _request_id()
        detail: dict[str, Any] = {
            "type": error_type_for(error.status, error.type),
            "message": error.message,
        }
        if error.code is not None:
            detail["details"] = {"error_code": error.code}
        envelope = {"type": "error", "error": detail, "request_id": request_id}
        return JsonReply(envelope, error.status, {**error.headers, "request-id": request_id})

    def injected_error(self, fault: InjectedHttpError) -> ApiError:
        status = fault.status
        message = fault.message or _INJECTED_MESSAGES.get(
            status, f"Injected HTTP {status} error (batchor.testing)."
        )
        return ApiError(
            status,
            message,
            type=error_type_for(status),
            code=fault.code,
            headers=fault.retry_after_header(),
        )

    def not_found(self, method: str, path: str) -> ApiError:
        return ApiError(404, f"Not found: {method} {path}", type="not_found_error")

    # ------------------------------------------------------------------- helpers

    @staticmethod
    def _url_root(call: Call) -> str:
        """Where the caller reached this server (for the absolute ``results_url``)."""
        return f"http://{call.headers.get('Host') or 'localhost'}"

    def _reply(self, call: Call, record: MessageBatchRecord) -> Reply:
        return JsonReply(record.to_api(self._url_root(call)), headers=_ids())

    # ------------------------------------------------------------------- batches

    def create_batch(self, call: Call) -> Reply:
        limit = self.limits.max_batch_bytes
        too_large = ApiError(
            413, "Request exceeds the maximum allowed number of bytes.", type="request_too_large"
        )
        declared = call.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        try:
            body = read_all(call.body, limit)
        except MultipartError:
            raise too_large from None
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise _invalid(f"There was an error parsing the body of your request: {exc}") from None
        requests, models = _check_requests(payload, self.limits.max_requests_per_batch)
        record = self.store.create(body, requests, models)
        return self._reply(call, record)

    def list_batches(self, call: Call) -> Reply:
        before_id, after_id = call.query.get("before_id"), call.query.get("after_id")
        if before_id is not None and after_id is not None:
            raise _invalid("before_id and after_id cannot both be given")
        records, has_more = self.store.list(
            before_id=before_id, after_id=after_id, limit=_limit(call.query)
        )
        root = self._url_root(call)
        data = [record.to_api(root) for record in records]
        page = {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return JsonReply(page, headers=_ids())

    def retrieve_batch(self, call: Call) -> Reply:
        return self._reply(call, self.store.get(call.params["id"]))

    def cancel_batch(self, call: Call) -> Reply:
        return self._reply(call, self.store.cancel(call.params["id"]))

    def delete_batch(self, call: Call) -> Reply:
        self.store.delete(call.params["id"])
        return JsonReply({"id": call.params["id"], "type": "message_batch_deleted"}, headers=_ids())

    def batch_results(self, call: Call) -> Reply:
        stream, size = self.store.open_results(call.params["id"])
        return StreamReply(stream, size, "application/binary", headers=_ids())


def _ids() -> dict[str, str]:
    return {"request-id": _request_id()}
