"""What the local server counts, for tests to read: calls, deletions, batches, requests.

Counts live in memory only (a restarted server starts from zero, except that the
enqueued-token high-water mark is recomputed from the batches still live) and are
shared by every provider API of the server. Read them through
``server.counters`` (a :class:`CounterSnapshot`); ``server.reset_counts()`` starts
them over.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    """The server's counts at one moment (copies: later calls do not change them).

    * ``call_counts``: HTTP calls received, keyed ``"METHOD /v1/route/{id}"`` (the route
      template, so every batch id counts under ``"GET /v1/batches/{id}"``), or the raw
      path for a call no route matched;
    * ``files_deleted``: files removed by a delete call, by the file's ``purpose``
      (``"batch"`` inputs, ``"batch_output"`` output and error files); files that
      simply expire are not counted;
    * ``batches_created``: batches created, by the model their input file names
      (``""`` when no line of the file names one);
    * ``requests_executed``: requests the server answered, by model: each one counted
      completed or failed in ``request_counts``. A request left without an answer
      (in an expired, cancelled or failed batch) is not counted: it was never run;
    * ``max_enqueued_tokens_seen``: per model, the highest enqueued-token total reached;
    * ``max_queued_requests_seen``: the most requests Anthropic's processing queue held
      at once (the requests of its batches not yet ended).
    """

    call_counts: Counter[str] = field(default_factory=Counter)
    files_deleted: Counter[str] = field(default_factory=Counter)
    batches_created: Counter[str] = field(default_factory=Counter)
    requests_executed: Counter[str] = field(default_factory=Counter)
    max_enqueued_tokens_seen: dict[str, int] = field(default_factory=dict)
    max_queued_requests_seen: int = 0


class Counters:
    """The live, thread-safe counts behind :class:`CounterSnapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = CounterSnapshot()
        self._max_queued_requests = 0

    def count_call(self, key: str) -> None:
        with self._lock:
            self._counts.call_counts[key] += 1

    def count_file_deleted(self, purpose: str) -> None:
        with self._lock:
            self._counts.files_deleted[purpose] += 1

    def count_batch_created(self, model: str | None) -> None:
        with self._lock:
            self._counts.batches_created[model or ""] += 1

    def count_requests_executed(self, model: str | None, requests: int) -> None:
        if requests:
            with self._lock:
                self._counts.requests_executed[model or ""] += requests

    def see_enqueued_tokens(self, model: str, tokens: int) -> None:
        """Record that ``model`` has ``tokens`` enqueued now (keeps the highest)."""
        with self._lock:
            seen = self._counts.max_enqueued_tokens_seen
            seen[model] = max(seen.get(model, 0), tokens)

    def see_queued_requests(self, requests: int) -> None:
        """Record that Anthropic's processing queue holds ``requests`` now (keeps the
        highest)."""
        with self._lock:
            self._max_queued_requests = max(self._max_queued_requests, requests)

    def snapshot(self) -> CounterSnapshot:
        with self._lock:
            counts = self._counts
            return CounterSnapshot(
                call_counts=Counter(counts.call_counts),
                files_deleted=Counter(counts.files_deleted),
                batches_created=Counter(counts.batches_created),
                requests_executed=Counter(counts.requests_executed),
                max_enqueued_tokens_seen=dict(counts.max_enqueued_tokens_seen),
                max_queued_requests_seen=self._max_queued_requests,
            )

    def reset_calls(self) -> None:
        """Forget the calls counted so far."""
        with self._lock:
            self._counts.call_counts.clear()

    def reset(self) -> None:
        """Start every count over, the high-water marks included."""
        with self._lock:
            self._counts = CounterSnapshot()
            self._max_queued_requests = 0
