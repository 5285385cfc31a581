"""Fault injection: make the local server misbehave on purpose, in the ways providers do.

Reach it as ``server.faults``; the same plan serves every provider API of the
server. Faults aimed at named things are consumed as they fire, so a test states
exactly how many times something goes wrong:

* :meth:`Faults.http_error` - answer matching HTTP calls with 429/5xx (any endpoint);
* :meth:`Faults.stall` - hold matching calls, before or after they take effect;
* :meth:`Faults.fail_requests` - given custom ids come back as errors in the error file;
* :meth:`Faults.fail_next_batch` / :meth:`Faults.expire_next_batch` - the next
  created batches end ``failed`` / ``expired``, optionally with partial results;
* :meth:`Faults.malform_output` - a broken output line, reply text that is not JSON,
  no line at all, or a line for a request the batch does not have.

Two faults hit a *share* of every batch instead, until :meth:`Faults.clear`:
:meth:`Faults.fail_request_share` and :meth:`Faults.malform_output_share`. Which
requests they hit is decided by a hash of the batch's sequence number and the
custom id: the same calls in the same order meet the same faults, and a request
resubmitted in a later batch draws again.

Slow processing is not a fault: give the server a :class:`~batchor.testing.BatchPace`.
"""

from __future__ import annotations

import threading
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from batchor.testing.models import MALFORM_KINDS, BatchFault, MalformKind, RequestFault

REQUEST_FAULT_MESSAGE = (
    "The server had an error processing this request (injected by batchor.testing)."
)


@dataclass(slots=True, frozen=True)
class InjectedHttpError:
    """What an :meth:`Faults.http_error` fault answers a call with.

    ``message`` and ``code`` are ``None`` unless the fault set them: the provider API
    that owns the path fills in how that provider words the status.
    """

    status: int
    message: str | None
    code: str | None
    retry_after: float | None

    def retry_after_header(self) -> dict[str, str]:
        """``{"retry-after": seconds}`` if the fault set one (whole seconds without ``.0``)."""
        if self.retry_after is None:
            return {}
        seconds = self.retry_after
        return {"retry-after": str(int(seconds)) if seconds == int(seconds) else str(seconds)}


@dataclass(slots=True)
class _HttpFault:
    method: str
    path_prefix: tuple[str, ...]
    remaining: int | None
    error: InjectedHttpError
    every: int = 1
    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and path.startswith(self.path_prefix)


@dataclass(slots=True)
class _Stall:
    method: str
    path_prefix: tuple[str, ...]
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


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")


def _check_kind(kind: str) -> None:
    if kind not in MALFORM_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, MALFORM_KINDS))}, got {kind!r}")


def _check_status(name: str, status: int) -> None:
    if not 400 <= status <= 599:
        raise ValueError(f"{name} must be an HTTP error status (400-599), got {status!r}")


def _prefix(path_prefix: str) -> tuple[str, ...]:
    """The path prefixes a fault matches: as given, and under ``/v1`` unless it is
    there already (a provider API mounted elsewhere is matched by its own path)."""
    if path_prefix.startswith("/v1"):
        return (path_prefix,)
    return (path_prefix, "/v1" + path_prefix)


def _drawn(share: float, salt: str, custom_id: str) -> bool:
    """Whether a share fault hits this request: a fixed hash, not a random draw."""
    return zlib.crc32(f"{salt}:{custom_id}".encode()) < share * 2**32


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
        self._request_shares: list[tuple[float, RequestFault]] = []
        self._malform_shares: list[tuple[float, MalformKind]] = []
        self._batch_pattern: tuple[int, BatchFault] | None = None
        self._batches_seen = 0

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
        every: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` on a path starting with
        ``path_prefix`` with HTTP ``status``, in the owning provider's error envelope.

        ``method`` is ``"GET"``, ``"POST"``, ``"DELETE"`` or ``"*"`` (any);
        ``path_prefix`` may omit the ``/v1`` (``"/batches"`` == ``"/v1/batches"``); a
        path of another provider API starts with its own root (``"/gemini/"``).
        ``retry_after`` (seconds) is sent as a ``retry-after`` header.
        ``times=None`` keeps failing until :meth:`clear`. ``code`` sets the error
        envelope's ``code`` (e.g. ``"insufficient_quota"`` with status 429).
        ``every=7`` fails only every 7th matching call (the others pass), for a
        steady trickle of errors rather than a burst.
        """
        _check_status("status", status)
        _check_times(times)
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every!r}")
        error = InjectedHttpError(status, message, code, retry_after)
        with self._lock:
            self._http.append(
                _HttpFault(method.upper(), _prefix(path_prefix), times, error, every=every)
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
        with self._lock:
            self._stalls.append(
                _Stall(method.upper(), _prefix(path_prefix), seconds, after_processing, times)
            )

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
        _check_status("status_code", status_code)
        _check_times(times)
        fault = RequestFault(status_code=status_code, code=code, message=message)
        with self._lock:
            for custom_id in custom_ids:
                self._requests[custom_id] = (fault, _Countdown(times))

    def fail_request_share(
        self,
        share: float,
        status_code: int = 500,
        code: str = "server_error",
        message: str = REQUEST_FAULT_MESSAGE,
    ) -> None:
        """From now on, about ``share`` of the requests of every batch fail like
        :meth:`fail_requests` makes them fail (until :meth:`clear`)."""
        _check_fraction("share", share)
        _check_status("status_code", status_code)
        fault = RequestFault(status_code=status_code, code=code, message=message)
        with self._lock:
            self._request_shares.append((share, fault))

    def fail_next_batch(
        self,
        code: str = "batch_failed",
        message: str = "The batch failed (injected by batchor.testing).",
        completed_fraction: float = 0.0,
        *,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` created batches end ``failed`` with
        ``errors.data = [{code, message}]``.

        With ``completed_fraction`` 0 it fails when validation ends; above 0 it runs and
        fails when processing ends, with an output file for the first
        ``floor(total * completed_fraction)`` requests (the others have no line at all).
        Calls queue up, with :meth:`expire_next_batch` calls, in the order made.
        """
        _check_fraction("completed_fraction", completed_fraction)
        _check_times(times)
        fault = BatchFault(
            kind="fail", code=code, message=message, completed_fraction=completed_fraction
        )
        with self._lock:
            self._batches.extend([fault] * times)

    def expire_next_batch(
        self, completed_fraction: float = 0.5, *, times: int = 1, expired_lines: bool = True
    ) -> None:
        """Make the next ``times`` created batches end ``expired`` when processing ends.

        The first ``floor(total * completed_fraction)`` requests get output lines; the
        rest go to the error file with ``error.code == "batch_expired"``, or, with
        ``expired_lines=False``, get no line at all (a busy window that just ran out).
        """
        _check_fraction("completed_fraction", completed_fraction)
        _check_times(times)
        fault = BatchFault(
            kind="expire",
            code="batch_expired",
            message="The batch expired before all requests completed.",
            completed_fraction=completed_fraction,
            expired_lines=expired_lines,
        )
        with self._lock:
            self._batches.extend([fault] * times)

    def expire_every_batch(
        self, every: int, completed_fraction: float = 0.5, *, expired_lines: bool = True
    ) -> None:
        """From now on (until :meth:`clear`), make every ``every``-th created batch end
        ``expired`` as :meth:`expire_next_batch` does (queued faults fire first)."""
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every!r}")
        _check_fraction("completed_fraction", completed_fraction)
        fault = BatchFault(
            kind="expire",
            code="batch_expired",
            message="The batch expired before all requests completed.",
            completed_fraction=completed_fraction,
            expired_lines=expired_lines,
        )
        with self._lock:
            self._batch_pattern = (every, fault)
            self._batches_seen = 0

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
        ``"missing_line"``: the request is counted completed but its line is absent.
        ``"unknown_id"``: the line is fine but names a request the batch does not have
        (its own custom id or key with ``-unknown`` appended), so the client cannot
        match it and the request has no line of its own.
        """
        _check_kind(kind)
        _check_times(times)
        with self._lock:
            for custom_id in custom_ids:
                self._malformed[custom_id] = (kind, _Countdown(times))

    def malform_output_share(self, share: float, kind: MalformKind = "invalid_json_line") -> None:
        """From now on, corrupt about ``share`` of the output of every batch like
        :meth:`malform_output` does (until :meth:`clear`)."""
        _check_fraction("share", share)
        _check_kind(kind)
        with self._lock:
            self._malform_shares.append((share, kind))

    def clear(self) -> None:
        """Forget every fault not yet fired, and every share fault."""
        with self._lock:
            self._http.clear()
            self._stalls.clear()
            self._stall_release.set()
            self._stall_release = threading.Event()
            self._batches.clear()
            self._requests.clear()
            self._malformed.clear()
            self._request_shares.clear()
            self._malform_shares.clear()
            self._batch_pattern = None

    # The server's side: each call consumes what fires.

    def take_http_error(self, method: str, path: str) -> InjectedHttpError | None:
        """Return the error to answer this call with, if an HTTP fault matches it."""
        with self._lock:
            for fault in self._http:
                if fault.matches(method, path):
                    fault.seen += 1
                    if fault.seen % fault.every:
                        continue
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._http.remove(fault)
                    return fault.error
        return None

    def take_batch_fault(self) -> BatchFault | None:
        """Return the whole-batch fault for a batch being created, if one is queued."""
        with self._lock:
            self._batches_seen += 1
            if self._batches:
                return self._batches.popleft()
            if self._batch_pattern is not None and self._batches_seen % self._batch_pattern[0] == 0:
                return self._batch_pattern[1]
            return None

    def plan_requests(
        self, custom_ids: Sequence[str], salt: str
    ) -> tuple[dict[int, RequestFault], dict[int, MalformKind]]:
        """Consume the per-request faults that hit a batch starting to process.

        ``salt`` names the batch for the share faults (its sequence number). Returns
        the planned failures and malformations keyed by request index.
        """
        failures: dict[int, RequestFault] = {}
        malformed: dict[int, MalformKind] = {}
        with self._lock:
            if not (
                self._requests or self._malformed or self._request_shares or self._malform_shares
            ):
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
                for share, fault in self._request_shares:
                    if index not in failures and _drawn(share, f"{salt}:fail", custom_id):
                        failures[index] = fault
                for share, kind in self._malform_shares:
                    if index not in malformed and _drawn(share, f"{salt}:{kind}", custom_id):
                        malformed[index] = kind
        return failures, malformed

    @staticmethod
    def _consume(plan: dict[str, Any], custom_id: str, countdown: _Countdown) -> bool:
        fired = countdown.take()
        if not fired or countdown.remaining == 0:
            del plan[custom_id]
        return fired
