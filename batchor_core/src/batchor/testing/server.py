""":class:`LocalBatchServer`: a real HTTP server speaking OpenAI's Files and Batches API.

Point the official ``openai`` client at ``server.base_url`` and it works
unchanged; tests then inspect what the server saw (``batches``, ``files``,
``call_counts``, ``max_enqueued_tokens_seen``) and make it misbehave through
``faults``. See ``docs/local-server.md`` for a walk-through.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from batchor.testing.api import BatchApi
from batchor.testing.clock import Clock, system_clock
from batchor.testing.faults import Faults
from batchor.testing.models import BatchPace, BatchRecord, FileRecord
from batchor.testing.replies import Responder, default_responder
from batchor.testing.store import BatchStore

logger = logging.getLogger("batchor.testing")

DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_REQUESTS_PER_BATCH = 50_000


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def do_GET(self) -> None:
        self.server.api.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.api.handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.api.handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)


class _HttpServer(ThreadingHTTPServer):
    """A threading HTTP server that can drop its open keep-alive connections on stop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: BatchApi) -> None:
        self.api = api
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
    """An OpenAI-compatible Files + Batches server on ``127.0.0.1``, for tests and demos.

    All arguments are keyword-only:

    * ``pace``: seconds per phase (:class:`BatchPace`); default all 0, so a batch created
      as ``validating`` is ``completed`` the next time it is looked at.
    * ``token_limits`` / ``default_token_limit``: enqueued-token limit per model (models
      not listed use the default; ``None`` = unlimited). A batch that would push its
      model's enqueued tokens above the limit fails with ``token_limit_exceeded``.
    * ``responder``: ``callable(request_body) -> str | dict`` producing reply text
      (a dict is sent as JSON text); default :func:`default_responder`. If it raises,
      that request fails with status 500 in the error file.
    * ``clock``: epoch-seconds callable, e.g. a :class:`ManualClock`; default wall clock.
    * ``data_dir``: where files and batch state live; a new server on the same directory
      sees the old files and batches. ``None``: a temporary directory removed on stop.
    * ``host``, ``port``: where to listen; port 0 picks a free port.
    * ``max_file_bytes``, ``max_requests_per_batch``: OpenAI's limits (200 MB, 50,000).
    * ``api_key``: ``None`` accepts any bearer key; a string requires exactly that key.

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
        clock: Clock | None = None,
        data_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_requests_per_batch: int = DEFAULT_MAX_REQUESTS_PER_BATCH,
        api_key: str | None = None,
    ) -> None:
        limits = dict(token_limits or {})
        for model, limit in limits.items():
            if limit < 0:
                raise ValueError(f"token_limits[{model!r}] must be >= 0, got {limit!r}")
        if default_token_limit is not None and default_token_limit < 0:
            raise ValueError(f"default_token_limit must be >= 0, got {default_token_limit!r}")
        if max_file_bytes <= 0:
            raise ValueError(f"max_file_bytes must be > 0, got {max_file_bytes!r}")
        if max_requests_per_batch <= 0:
            raise ValueError(f"max_requests_per_batch must be > 0, got {max_requests_per_batch!r}")
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
        self._store = BatchStore(
            data_dir=self.data_dir,
            clock=self.clock,
            pace=self.pace,
            token_limits=limits,
            default_token_limit=default_token_limit,
            max_requests_per_batch=max_requests_per_batch,
            responder=responder or default_responder,
            faults=self.faults,
        )
        self._api = BatchApi(
            store=self._store, faults=self.faults, api_key=api_key, max_file_bytes=max_file_bytes
        )
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
        self._http = _HttpServer((self.host, self._requested_port), self._api)
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
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: pass it as the ``openai`` client's ``base_url``."""
        return f"http://{self.host}:{self.port}/v1"

    # ----------------------------------------------------------------- inspection

    @property
    def batches(self) -> dict[str, BatchRecord]:
        """Every batch, oldest first, advanced to the clock's current time (a new dict
        of the live records)."""
        with self._store.lock:
            self._store.advance()
            return dict(self._store.batches)

    @property
    def files(self) -> dict[str, FileRecord]:
        """Every stored file (inputs and batch outputs), oldest first, after advancing
        the batches (which may write output files)."""
        with self._store.lock:
            self._store.advance()
            return dict(self._store.files)

    @property
    def call_counts(self) -> Counter[str]:
        """Calls received, keyed ``"METHOD /v1/path/{id}"`` (a copy)."""
        with self._api.counts_lock:
            return Counter(self._api.call_counts)

    def reset_counts(self) -> None:
        """Forget the calls counted so far."""
        with self._api.counts_lock:
            self._api.call_counts.clear()

    def enqueued_tokens(self, model: str) -> int:
        """Tokens of ``model``'s batches now ``validating``, ``in_progress`` or ``finalizing``."""
        return self._store.enqueued_tokens(model)

    @property
    def max_enqueued_tokens_seen(self) -> dict[str, int]:
        """Per model, the highest enqueued-token total ever reached (a copy)."""
        with self._store.lock:
            self._store.advance()
            return dict(self._store.max_enqueued_tokens_seen)

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
        announce(f"batchor local OpenAI Batch server listening on {server.base_url}")
        try:
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
