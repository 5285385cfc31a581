"""What a provider API of the local server is made of: calls, replies, routes, errors.

The HTTP server (:mod:`batchor.testing.server`) turns each request into a
:class:`Call`, finds the :class:`Route` that matches it among the mounted provider
APIs (each a :class:`ProviderApi`), and sends the :data:`Reply` the route's handler
returns. A handler raises :class:`ApiError` for an HTTP error; the provider API that
owns the path renders it in that provider's error envelope, so the same fault looks
like OpenAI's error on an OpenAI route and like Anthropic's on an Anthropic one.

Nothing here knows any provider; it imports nothing of the server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, BinaryIO, Protocol

from batchor.testing.faults import InjectedHttpError
from batchor.testing.multipart import BodyReader


@dataclass(slots=True)
class Call:
    """One HTTP call, as a route handler sees it.

    ``path`` has no query string and no trailing slash; ``params`` holds the values
    of the route template's ``{placeholders}``; ``query`` keeps the last value of
    each query parameter. ``body`` is a stream: read it at most once.
    """

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
    """A file streamed back as it is (the server closes ``stream`` once sent)."""

    stream: BinaryIO
    size: int
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)


Reply = JsonReply | StreamReply


class ApiError(Exception):
    """An HTTP error a handler answers with; the owning API renders its envelope.

    The fields are those every provider's envelope has some form of: OpenAI's is
    ``{"error": {message, type, param, code}}``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}


Handler = Callable[[Call], Reply]


@dataclass(slots=True, frozen=True)
class Route:
    """``method`` + ``template`` (e.g. ``"/v1/files/{id}"``) answered by ``handler``.

    The template doubles as the key of the server's call counts.
    """

    method: str
    template: str
    handler: Handler
    pattern: re.Pattern[str]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The template's values if this route answers ``method path``, else None."""
        if method != self.method:
            return None
        found = self.pattern.match(path)
        return found.groupdict() if found else None


def route(method: str, template: str, handler: Handler) -> Route:
    """A :class:`Route`; each ``{name}`` in ``template`` matches one path segment."""
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
    return Route(method, template, handler, pattern)


class ProviderApi(Protocol):
    """One provider's API, mounted on the shared HTTP server.

    The server asks each mounted API, in order, for a route matching a call; an
    unmatched call goes to the first API that :meth:`owns` its path, which answers
    with its own 404. Everything an API needs beyond the call (clock, pace, faults,
    responder, limits, counters) comes from the
    :class:`~batchor.testing.context.ServerContext` it was built with.
    """

    @property
    def routes(self) -> Sequence[Route]:
        """Every route this API answers."""
        ...

    def owns(self, path: str) -> bool:
        """True if unmatched calls to ``path`` are this API's to refuse."""
        ...

    def authenticate(self, call: Call) -> None:
        """Raise :class:`ApiError` (401) unless the call carries acceptable credentials."""
        ...

    def error_reply(self, error: ApiError) -> JsonReply:
        """``error`` in this provider's error envelope."""
        ...

    def injected_error(self, fault: InjectedHttpError) -> ApiError:
        """The error a fault from :meth:`~batchor.testing.Faults.http_error` answers with,
        worded as this provider words that status."""
        ...

    def not_found(self, method: str, path: str) -> ApiError:
        """The error for a path this API owns but has no route for."""
        ...


def unknown_route_owner(apis: Sequence[ProviderApi], path: str) -> ProviderApi:
    """The API that answers an unmatched call: the first that owns ``path``, else the first."""
    return next((api for api in apis if api.owns(path)), apis[0])
