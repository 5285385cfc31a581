"""Fault injection: make the local server misbehave on purpose, in the ways OpenAI can.

Reach it as ``server.faults``. Every fault is consumed when it fires, so a test
states exactly how many times something goes wrong:

* :meth:`Faults.http_error` - answer matching HTTP calls with 429/5xx (any endpoint);
* :meth:`Faults.fail_requests` - given custom ids come back as errors in the error file;
* :meth:`Faults.fail_next_batch` / :meth:`Faults.expire_next_batch` - the next
  created batch ends ``failed`` / ``expired``, optionally with partial results;
* :meth:`Faults.malform_output` - a broken output line, or reply text that is not JSON.

Slow processing is not a fault: give the server a :class:`~batchor.testing.BatchPace`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from batchor.testing.models import ApiError, BatchFault, MalformKind, RequestFault

_HTTP_ERROR_BODIES: dict[int, tuple[str, str, str | None]] = {
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


REQUEST_FAULT_MESSAGE = (
    "The server had an error processing this request (injected by batchor.testing)."
)


@dataclass(slots=True)
class _HttpFault:
    method: str
    path_prefix: str
    status: int
    remaining: int | None
    retry_after: float | None
    message: str | None
    code: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and path.startswith(self.path_prefix)

    def to_error(self) -> ApiError:
        message, kind, code = _HTTP_ERROR_BODIES.get(
            self.status, (f"Injected HTTP {self.status} error.", "server_error", None)
        )
        code = self.code or code
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            seconds = self.retry_after
            headers["retry-after"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
        return ApiError(self.status, self.message or message, type=kind, code=code, headers=headers)


@dataclass(slots=True)
class _Stall:
    method: str
    path_prefix: str
    seconds: float
    after_processing: bool
    remaining: int | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and path.startswith(self.path_prefix)


@dataclass(slots=True)
class _Countdown:
    remaining: int | None

    def take(self) -> bool:
        """Consume one use; False when none is left."""
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


def _check_times(times: int | None) -> None:
    if times is not None and times < 1:
        raise ValueError(f"times must be >= 1 or None (forever), got {times!r}")


def _check_fraction(completed_fraction: float) -> None:
    if not 0.0 <= completed_fraction <= 1.0:
        raise ValueError(f"completed_fraction must be within [0, 1], got {completed_fraction!r}")


class Faults:
    """The fault plan of one server. Thread-safe; consumed as faults fire."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._http: list[_HttpFault] = []
        self._stalls: list[_Stall] = []
        self._stall_release = threading.Event()
        self._batches: deque[BatchFault] = deque()
        self._requests: dict[str, tuple[RequestFault, _Countdown]] = {}
        self._malformed: dict[str, tuple[MalformKind, _Countdown]] = {}

    def http_error(
        self,
        method: str,
        path_prefix: str,
        status: int = 500,
        *,
        times: int | None = 1,
        retry_after: float | None = None,
        message: str | None = None,
        code: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` on a path starting with
        ``path_prefix`` with HTTP ``status`` and OpenAI's error envelope.

        ``method`` is ``"GET"``, ``"POST"``, ``"DELETE"`` or ``"*"`` (any);
        ``path_prefix`` may omit the ``/v1`` (``"/batches"`` == ``"/v1/batches"``).
        ``retry_after`` (seconds) is sent as a ``retry-after`` header.
        ``times=None`` keeps failing until :meth:`clear`. ``code`` sets the error
        envelope's ``code`` (e.g. ``"insufficient_quota"`` with status 429).
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status!r}")
        _check_times(times)
        prefix = path_prefix if path_prefix.startswith("/v1") else "/v1" + path_prefix
        with self._lock:
            self._http.append(
                _HttpFault(method.upper(), prefix, status, times, retry_after, message, code)
            )

    def stall(
        self,
        method: str,
        path_prefix: str,
        seconds: float,
        *,
        after_processing: bool = False,
        times: int | None = 1,
    ) -> None:
        """Hold the next ``times`` matching calls for ``seconds`` before answering.

        With ``after_processing`` the call takes effect first (a batch is created, a
        file stored) and only the answer is late: a client killed meanwhile has
        done the work without learning its result. Crash tests use this.
        :meth:`clear` releases calls being held.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        _check_times(times)
        prefix = path_prefix if path_prefix.startswith("/v1") else "/v1" + path_prefix
        with self._lock:
            self._stalls.append(_Stall(method.upper(), prefix, seconds, after_processing, times))

    def hold_if_stalled(self, method: str, path: str, *, after_processing: bool) -> None:
        """Hold this call while a matching stall lasts (:meth:`clear` ends it early)."""
        with self._lock:
            release = self._stall_release
            for stall in self._stalls:
                if stall.after_processing == after_processing and stall.matches(method, path):
                    if stall.remaining is not None:
                        stall.remaining -= 1
                        if stall.remaining <= 0:
                            self._stalls.remove(stall)
                    break
            else:
                return
        release.wait(stall.seconds)

    def fail_requests(
        self,
        custom_ids: Iterable[str],
        status_code: int = 500,
        code: str = "server_error",
        message: str = REQUEST_FAULT_MESSAGE,
        *,
        times: int | None = 1,
    ) -> None:
        """Make the requests with these custom ids fail: each lands in the batch's error
        file as ``response.status_code`` = ``status_code`` with body ``{"error": {...}}``.

        Each id fails the next ``times`` batches it appears in (``None``: always).
        """
        if not 400 <= status_code <= 599:
            raise ValueError(f"status_code must be 400-599, got {status_code!r}")
        _check_times(times)
        fault = RequestFault(status_code=status_code, code=code, message=message)
        with self._lock:
            for custom_id in custom_ids:
                self._requests[custom_id] = (fault, _Countdown(times))

    def fail_next_batch(
        self,
        code: str = "batch_failed",
        message: str = "The batch failed (injected by batchor.testing).",
        completed_fraction: float = 0.0,
    ) -> None:
        """Make the next created batch end ``failed`` with ``errors.data = [{code, message}]``.

        With ``completed_fraction`` 0 it fails when validation ends; above 0 it runs and
        fails when processing ends, with an output file for the first
        ``floor(total * completed_fraction)`` requests (the others have no line at all).
        Calls queue up: two calls fail the next two batches.
        """
        _check_fraction(completed_fraction)
        with self._lock:
            self._batches.append(
                BatchFault(
                    kind="fail", code=code, message=message, completed_fraction=completed_fraction
                )
            )

    def expire_next_batch(self, completed_fraction: float = 0.5) -> None:
        """Make the next created batch end ``expired`` when processing ends.

        The first ``floor(total * completed_fraction)`` requests get output lines; the
        rest go to the error file with ``error.code == "batch_expired"``.
        """
        _check_fraction(completed_fraction)
        with self._lock:
            self._batches.append(
                BatchFault(
                    kind="expire",
                    code="batch_expired",
                    message="The batch expired before all requests completed.",
                    completed_fraction=completed_fraction,
                )
            )

    def malform_output(
        self,
        custom_ids: Iterable[str],
        kind: MalformKind = "invalid_json_line",
        *,
        times: int | None = 1,
    ) -> None:
        """Corrupt the output of these requests (counted as completed by the server).

        ``"invalid_json_line"``: the output line is truncated JSON (it still contains the
        custom id as text). ``"invalid_reply_text"``: the line is fine but the reply
        text is not valid JSON, so it cannot satisfy a structured-output schema.
        """
        if kind not in ("invalid_json_line", "invalid_reply_text"):
            raise ValueError(
                f"kind must be 'invalid_json_line' or 'invalid_reply_text', got {kind!r}"
            )
        _check_times(times)
        with self._lock:
            for custom_id in custom_ids:
                self._malformed[custom_id] = (kind, _Countdown(times))

    def clear(self) -> None:
        """Forget every fault not yet fired."""
        with self._lock:
            self._http.clear()
            self._stalls.clear()
            self._stall_release.set()
            self._stall_release = threading.Event()
            self._batches.clear()
            self._requests.clear()
            self._malformed.clear()

    # The server's side: each call consumes what fires.

    def take_http_error(self, method: str, path: str) -> ApiError | None:
        """Return the error to answer this call with, if an HTTP fault matches it."""
        with self._lock:
            for fault in self._http:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._http.remove(fault)
                    return fault.to_error()
        return None

    def take_batch_fault(self) -> BatchFault | None:
        """Return the whole-batch fault for a batch being created, if one is queued."""
        with self._lock:
            return self._batches.popleft() if self._batches else None

    def plan_requests(
        self, custom_ids: Sequence[str]
    ) -> tuple[dict[int, RequestFault], dict[int, MalformKind]]:
        """Consume the per-request faults that hit a batch starting to process.

        Returns the planned failures and malformations keyed by request index.
        """
        failures: dict[int, RequestFault] = {}
        malformed: dict[int, MalformKind] = {}
        with self._lock:
            if not self._requests and not self._malformed:
                return failures, malformed
            for index, custom_id in enumerate(custom_ids):
                failure = self._requests.get(custom_id)
                if failure is not None and self._consume(self._requests, custom_id, failure[1]):
                    failures[index] = failure[0]
                malformation = self._malformed.get(custom_id)
                if malformation is not None and self._consume(
                    self._malformed, custom_id, malformation[1]
                ):
                    malformed[index] = malformation[0]
        return failures, malformed

    @staticmethod
    def _consume(plan: dict[str, Any], custom_id: str, countdown: _Countdown) -> bool:
        fired = countdown.take()
        if not fired or countdown.remaining == 0:
            del plan[custom_id]
        return fired
