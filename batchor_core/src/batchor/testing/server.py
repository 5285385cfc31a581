""":class:`LocalBatchServer`: one real HTTP server for the provider batch APIs it emulates.

Point the official ``openai`` client at ``server.base_url``, or the official
``anthropic`` client at ``server.url``, and it works unchanged; tests then inspect
what the server saw (``batches``, ``files``, ``anthropic.batches``, ``counters``)
and make it misbehave through ``faults``. See ``docs/local-server.md`` for a
walk-through.

How the pieces fit: the server builds one
:class:`~batchor.testing.context.ServerContext` (clock, pace, faults, responder,
usage split, limits, counters, data directory) and mounts each provider API on
it. A request is matched against the routes of every mounted API in turn; the
matching API authenticates it and answers, and its envelope carries any error
(an injected fault included). To add a provider, write a module
``batchor/testing/<provider>_api.py`` with a class that follows
:class:`~batchor.testing.routing.ProviderApi`, built from the context and keeping
its state under ``context.data_dir / "<provider>"``; then, in
:class:`LocalBatchServer`, build it beside ``self.openai`` and put it in
``self._apis`` before the OpenAI API, which owns every ``/v1`` path no other API
answers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from batchor.testing.anthropic_api import AnthropicApi
from batchor.testing.anthropic_records import AnthropicLimits
from batchor.testing.clock import Clock, system_clock
from batchor.testing.context import ServerContext
from batchor.testing.counters import Counters, CounterSnapshot
from batchor.testing.faults import Faults
from batchor.testing.gemini_api import PREFIX as GEMINI_PREFIX
from batchor.testing.gemini_api import GeminiApi
from batchor.testing.models import (
    MAX_BATCH_FILE_BYTES,
    MAX_FILE_BYTES,
    MAX_REQUESTS_PER_BATCH,
    BatchLimits,
    BatchPace,
    UsageSplit,
)
from batchor.testing.multipart import (
    BodyReader,
    ChunkedReader,
    LengthReader,
    MultipartError,
    drain,
)
from batchor.testing.openai_api import OpenAIApi
from batchor.testing.openai_records import BatchRecord, FileRecord
from batchor.testing.replies import Responder, default_responder
from batchor.testing.routing import (
    ApiError,
    Call,
    JsonReply,
    ProviderApi,
    Reply,
    Route,
    unknown_route_owner,
)

logger = logging.getLogger("batchor.testing")

DEFAULT_MAX_FILE_BYTES = MAX_FILE_BYTES
DEFAULT_MAX_BATCH_FILE_BYTES = MAX_BATCH_FILE_BYTES
DEFAULT_MAX_REQUESTS_PER_BATCH = MAX_REQUESTS_PER_BATCH


class _Dispatcher:
    """Answers one HTTP request: find the route, authenticate, fire faults, handle."""

    def __init__(self, apis: Sequence[ProviderApi], context: ServerContext) -> None:
        self._apis = apis
        self._faults = context.faults
        self._counters = context.counters

    def _resolve(self, method: str, path: str) -> tuple[ProviderApi, Route | None, dict[str, str]]:
        for api in self._apis:
            for candidate in api.routes:
                params = candidate.match(method, path)
                if params is not None:
                    return api, candidate, params
        return unknown_route_owner(self._apis, path), None, {}

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        """Answer one HTTP request (called from the request's handler thread)."""
        split = urlsplit(request.path)
        path = split.path.rstrip("/") or "/"
        api, found, params = self._resolve(method, path)
        self._counters.count_call(f"{method} {found.template if found else path}")
        call = Call(
            method=method,
            path=path,
            params=params,
            query={k: v[-1] for k, v in parse_qs(split.query).items()},
            headers=request.headers,
            body=self._body_reader(request),
        )
        reply: Reply
        try:
            api.authenticate(call)
            injected = self._faults.take_http_error(method, path)
            if injected is not None:
                raise api.injected_error(injected)
            if found is None:
                raise api.not_found(method, path)
            self._faults.hold_if_stalled(method, path, after_processing=False)
            reply = found.handler(call)
            self._faults.hold_if_stalled(method, path, after_processing=True)
        except ApiError as error:
            reply = api.error_reply(error)
        except MultipartError as error:
            reply = api.error_reply(ApiError(400, str(error)))
        except Exception:
            logger.exception("batchor.testing: error while answering %s %s", method, path)
            failure = ApiError(
                500,
                "The local server had an error while processing your request.",
                type="server_error",
            )
            reply = api.error_reply(failure)
        try:
            drain(call.body)
        except MultipartError:
            request.close_connection = True
        self._send(request, reply)

    @staticmethod
    def _body_reader(request: BaseHTTPRequestHandler) -> BodyReader:
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return ChunkedReader(request.rfile)
        try:
            length = int(request.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        return LengthReader(request.rfile, max(length, 0))

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
            for name, value in reply.headers.items():
                request.send_header(name, value)
            request.end_headers()
            shutil.copyfileobj(reply.stream, request.wfile, 256 * 1024)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def do_GET(self) -> None:
        self.server.dispatcher.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.dispatcher.handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.dispatcher.handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)


class _HttpServer(ThreadingHTTPServer):
    """A threading HTTP server that can drop its open keep-alive connections on stop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], dispatcher: _Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("batchor.testing: connection error from %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class LocalBatchServer:
    """A local server for provider batch APIs (OpenAI's Files + Batches, Anthropic's
    Message Batches, Gemini's batch mode under :attr:`gemini_url`), for tests and demos.

    All arguments are keyword-only:

    * ``pace``: seconds per phase and per request (:class:`BatchPace`); default all 0,
      so a batch created as ``validating`` is ``completed`` the next time it is looked at.
    * ``token_limits`` / ``default_token_limit``: enqueued-token limit per model (models
      not listed use the default; ``None`` = unlimited). A batch that would push its
      model's enqueued tokens above the limit fails with ``token_limit_exceeded`` (a
      Gemini create is refused with 429 ``RESOURCE_EXHAUSTED``).
    * ``responder``: ``callable(request_body) -> str | dict`` producing reply text
      (a dict is sent as JSON text); default :func:`default_responder`. If it raises,
      that request fails with status 500 in the error file.
    * ``usage``: which share of the tokens replies report as cached input and as
      reasoning output (:class:`UsageSplit`); default none.
    * ``clock``: epoch-seconds callable, e.g. a :class:`ManualClock`; default wall clock.
    * ``data_dir``: where files and batch state live; a new server on the same directory
      sees the old files and batches. ``None``: a temporary directory removed on stop.
    * ``host``, ``port``: where to listen; port 0 picks a free port.
    * ``max_file_bytes``: the largest upload accepted (OpenAI: 512 MB); a larger one is
      refused with 400 ``file_too_large``.
    * ``max_batch_file_bytes``, ``max_requests_per_batch``: the largest batch input file
      (OpenAI: 200 MB) and the most requests in one batch (OpenAI: 50,000); a batch over
      either fails when validation ends, as OpenAI's does. (These three are OpenAI's;
      Gemini's limits are on ``server.gemini.store``.)
    * ``anthropic_limits``: the Anthropic API's limits (:class:`AnthropicLimits`:
      100,000 requests and 256 MB per batch, and the processing-queue limit, none by
      default).
    * ``api_key``: ``None`` accepts any key; a string requires exactly that key (of
      every provider API).

    Use it as a context manager (``with LocalBatchServer() as server:``) or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        pace: BatchPace | None = None,
        token_limits: Mapping[str, int] | None = None,
        default_token_limit: int | None = None,
        responder: Responder | None = None,
        usage: UsageSplit | None = None,
        clock: Clock | None = None,
        data_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_batch_file_bytes: int = DEFAULT_MAX_BATCH_FILE_BYTES,
        max_requests_per_batch: int = DEFAULT_MAX_REQUESTS_PER_BATCH,
        anthropic_limits: AnthropicLimits | None = None,
        api_key: str | None = None,
    ) -> None:
        limits = BatchLimits(
            token_limits=dict(token_limits or {}),
            default_token_limit=default_token_limit,
            max_requests_per_batch=max_requests_per_batch,
            max_batch_file_bytes=max_batch_file_bytes,
            max_file_bytes=max_file_bytes,
        )
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be within 0-65535, got {port!r}")
        self.pace = pace or BatchPace()
        self.clock: Clock = clock or system_clock
        self.host = host
        self._requested_port = port
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="batchor-server-")
            data_dir = self._temporary.name
        self.data_dir = Path(data_dir)
        self.faults = Faults()
        self.context = ServerContext(
            clock=self.clock,
            pace=self.pace,
            faults=self.faults,
            responder=responder or default_responder,
            usage=usage or UsageSplit(),
            limits=limits,
            counters=Counters(),
            data_dir=self.data_dir,
        )
        self.openai = OpenAIApi(self.context, api_key=api_key)
        """The OpenAI Files + Batches API (its ``store`` holds the files and batches)."""
        self.anthropic = AnthropicApi(
            self.context, api_key=api_key, limits=anthropic_limits or AnthropicLimits()
        )
        """Anthropic's Message Batches API (``anthropic.batches`` lists its batches)."""
        self.gemini = GeminiApi(self.context, api_key=api_key)
        """The Gemini Files API and batch mode, under :attr:`gemini_url` (its ``store``
        holds the files and batches)."""
        self._apis: tuple[ProviderApi, ...] = (self.anthropic, self.gemini, self.openai)
        """Every mounted provider API, most specific paths first."""
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -------------------------------------------------------------------- running

    def start(self) -> LocalBatchServer:
        """Bind and serve from a daemon thread; returns ``self``."""
        if self._http is not None:
            raise RuntimeError("LocalBatchServer is already running")
        if self._stopped and self._temporary is not None:
            raise RuntimeError(
                "this LocalBatchServer was stopped and its temporary data_dir removed; "
                "create a new one (or pass data_dir= to keep state across restarts)"
            )
        dispatcher = _Dispatcher(self._apis, self.context)
        self._http = _HttpServer((self.host, self._requested_port), dispatcher)
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"batchor-local-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, and remove a temporary ``data_dir``."""
        if self._http is not None:
            self._http.shutdown()
            self._http.close_connections()
            self._http.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._http = None
            self._thread = None
        self._stopped = True
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> LocalBatchServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._http is not None

    @property
    def port(self) -> int:
        """The port actually listened on (only while running)."""
        if self._http is None:
            raise RuntimeError("LocalBatchServer is not running; call start() first")
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT``: the root every provider's routes hang from (pass it as
        the ``anthropic`` client's ``base_url``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: pass it as the ``openai`` client's ``base_url``."""
        return f"{self.url}/v1"

    @property
    def gemini_url(self) -> str:
        """``http://HOST:PORT/gemini``: the ``base_url`` of the ``google-genai`` client
        (``HttpOptions(base_url=...)``) and of ``GeminiProviderConfig``."""
        return f"{self.url}{GEMINI_PREFIX}"

    # ----------------------------------------------------------------- inspection

    @property
    def batches(self) -> dict[str, BatchRecord]:
        """Every OpenAI batch, oldest first, advanced to the clock's current time (a new
        dict of the live records)."""
        store = self.openai.store
        with store.lock:
            store.advance()
            return dict(store.batches)

    @property
    def files(self) -> dict[str, FileRecord]:
        """Every stored OpenAI file (inputs and batch outputs), oldest first, after
        advancing the batches (which may write output files) and expiring files."""
        store = self.openai.store
        with store.lock:
            store.advance()
            return dict(store.files)

    @property
    def counters(self) -> CounterSnapshot:
        """What the server counted so far (see :class:`~batchor.testing.CounterSnapshot`),
        after advancing the batches so that finished ones are counted."""
        self.openai.store.advance()
        self.gemini.store.advance()
        self.anthropic.store.advance()
        return self.context.counters.snapshot()

    @property
    def call_counts(self) -> Counter[str]:
        """Calls received, keyed ``"METHOD /v1/path/{id}"`` (a copy)."""
        return self.context.counters.snapshot().call_counts

    def reset_counts(self) -> None:
        """Start every counter over (see :attr:`counters`)."""
        self.context.counters.reset()

    def enqueued_tokens(self, model: str) -> int:
        """Tokens of ``model``'s batches now ``validating``, ``in_progress`` or
        ``finalizing`` (Gemini's: pending or running)."""
        return self.openai.store.enqueued_tokens(model) + self.gemini.store.enqueued_tokens(model)

    @property
    def max_enqueued_tokens_seen(self) -> dict[str, int]:
        """Per model, the highest enqueued-token total reached (a copy)."""
        return self.counters.max_enqueued_tokens_seen

    def __repr__(self) -> str:
        where = self.base_url if self.running else "not running"
        return f"LocalBatchServer({where}, data_dir={str(self.data_dir)!r})"


def serve(
    server: LocalBatchServer,
    *,
    announce: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Run ``server`` in the foreground until Ctrl-C (or until ``stop`` is set).

    ``announce`` receives one line with the base URL once the server listens.
    """
    stop = stop or threading.Event()
    with server:
        announce(
            f"batchor local batch server listening on {server.base_url} "
            f"(OpenAI; Anthropic at {server.url})"
        )
        announce(f"Gemini batch mode on {server.gemini_url} (GEMINI_BASE_URL)")
        try:
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
