"""``run_worker``: a long-lived loop that drives every active run in a storage.

Start runs anywhere (``runner.start(job)`` returns once the input is stored),
then run one or more workers against the same storage and artifact store: on
one host, or on many hosts sharing a PostgreSQL database and an object store.
Each worker goes round the runs that need driving, claiming a few at a time
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent workers take disjoint
runs), and advances each claimed run one step with ``Run.refresh()``:

* a run is leased to one worker at a time; a worker that dies loses its runs
  when its lease expires (``lease_ttl``), or at once to a worker on the same
  host, which sees that the holder's pid is gone;
* the enqueued-token budget of a model is reserved atomically in storage, so
  all workers together stay within it;
* SIGTERM or SIGINT (or ``stop_event``) ends the loop after the current step,
  releasing the worker's leases.

The job's Python callables are never needed: everything a step uses is in
storage and artifacts. Structured-output models are imported by module path,
so they must be importable where the worker runs.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from batchor.artifacts.base import ArtifactStore
from batchor.engine.driver import LEASE_TTL_SECONDS, is_dead_local_owner
from batchor.engine.planning import poll_delay
from batchor.errors import ConfigurationError
from batchor.results import RunSummary
from batchor.run import Run
from batchor.runner import BatchRunner
from batchor.storage.base import Storage
from batchor.storage.records import RunRecord

logger = logging.getLogger("batchor.worker")

StopReason = Literal["idle", "stop_event", "signal"]


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What a worker did before it returned.

    ``steps``: run steps taken; ``rounds``: passes over the runs needing driving;
    ``finished_run_ids``: runs that became terminal in one of this worker's steps;
    ``errors``: steps that raised (logged, the run left to a later round);
    ``stop_reason``: ``"idle"`` (``until_idle`` and no run left to drive),
    ``"stop_event"`` or ``"signal"`` (SIGTERM/SIGINT).
    """

    steps: int
    rounds: int
    finished_run_ids: tuple[str, ...]
    errors: int
    stop_reason: StopReason


def run_worker(
    storage: Storage,
    artifact_store: ArtifactStore | None = None,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    poll_interval: float | None = None,
    max_runs_per_tick: int = 1,
    stop_event: threading.Event | None = None,
    until_idle: bool = False,
    lease_ttl: float = LEASE_TTL_SECONDS,
    handle_signals: bool = True,
) -> WorkerReport:
    """Drive the storage's active runs until stopped (or, with ``until_idle``, until
    no run needs driving), and report what was done.

    ``artifact_store`` must be the store the runs were started with; it defaults
    to the one beside a SQLite file, and is required for PostgreSQL. ``api_key``
    is the provider key (else ``$OPENAI_API_KEY``); it is never stored.
    ``base_url`` drives every run through that API address instead of the one
    stored with it.
    ``poll_interval`` fixes the seconds slept after a round in which nothing
    changed; by default it adapts as ``Run.wait`` does (0.2 s after a change,
    backing off to a minute). ``max_runs_per_tick`` is how many runs are claimed
    per claim: 1 spreads runs most evenly between workers. ``lease_ttl`` (seconds)
    is how long a claimed run stays this worker's without a sign of life; it must
    exceed the longest step (a large download, for example). With
    ``handle_signals`` (and when called from the main thread) the first SIGTERM
    or SIGINT stops the loop after the current step; a second one acts as usual.
    ``stop_event`` stops it from another thread.
    """
    if max_runs_per_tick < 1:
        raise ConfigurationError(f"max_runs_per_tick must be at least 1, got {max_runs_per_tick}")
    if poll_interval is not None and poll_interval <= 0:
        raise ConfigurationError(f"poll_interval must be > 0 seconds, got {poll_interval}")
    if artifact_store is None and storage.default_artifact_root() is None:
        raise ConfigurationError(
            f"{storage!r} has no default artifact location: pass artifact_store=, the store "
            "the runs were started with (for example FsspecArtifactStore('s3://bucket/prefix'))"
        )
    runner = BatchRunner(
        storage, artifact_store, api_key=api_key, base_url=base_url, lease_ttl=lease_ttl
    )
    stop = stop_event or threading.Event()
    worker = _Worker(runner, max_runs_per_tick)
    logger.info("worker %s started on %r", runner.lease_owner, storage)
    with _stop_on_signals(stop, enabled=handle_signals) as signals:
        last_change = runner.clock.now()
        while not stop.is_set():
            if worker.drive_round(stop):
                last_change = runner.clock.now()
            if stop.is_set():
                break
            if until_idle and storage.claims.count_to_drive() == 0:
                return worker.report("idle")
            stop.wait(poll_delay(runner.clock.now() - last_change, poll_interval))
    return worker.report("signal" if signals else "stop_event")


class _Worker:
    """The state of one worker: its runner, the handles of the runs it drives, counts."""

    def __init__(self, runner: BatchRunner, max_runs_per_tick: int) -> None:
        self.runner = runner
        self.storage = runner.storage
        self.max_runs_per_tick = max_runs_per_tick
        self.handles: dict[str, tuple[Run, RunSummary]] = {}
        self.steps = self.rounds = self.errors = 0
        self.finished: list[str] = []

    def report(self, reason: StopReason) -> WorkerReport:
        logger.info(
            "worker %s stopping (%s) after %d steps", self.runner.lease_owner, reason, self.steps
        )
        return WorkerReport(
            steps=self.steps,
            rounds=self.rounds,
            finished_run_ids=tuple(self.finished),
            errors=self.errors,
            stop_reason=reason,
        )

    def drive_round(self, stop: threading.Event) -> bool:
        """Claim and step every run that needs driving and no one else holds, a few at
        a time in ``run_pk`` order. Returns whether any run changed."""
        owner = self.runner.lease_owner
        dead = {
            holder for holder in self.storage.claims.lease_owners() if is_dead_local_owner(holder)
        }
        cursor, changed, stepped = 0, False, set()
        while not stop.is_set():
            claimed = self.storage.claims.claim(
                owner,
                now=self.runner.clock.now(),
                ttl=self.runner.lease_ttl,
                limit=self.max_runs_per_tick,
                after_run_pk=cursor,
                steal_from=dead,
            )
            if not claimed:
                break
            for position, record in enumerate(claimed):
                if stop.is_set():
                    for unstepped in claimed[position:]:
                        self.storage.runs.release_lease(unstepped.run_pk, owner)
                    break
                changed |= self.step(record)
                stepped.add(record.run_id)
                cursor = record.run_pk
        self.rounds += 1
        self.handles = {run_id: self.handles[run_id] for run_id in stepped & self.handles.keys()}
        return changed

    def step(self, record: RunRecord) -> bool:
        """One ``refresh()`` of a claimed run. Returns whether its summary changed."""
        self.steps += 1
        try:
            if record.run_id in self.handles:
                run, before = self.handles[record.run_id]
            else:
                run = self.runner.get_run(record.run_id)
                before = run.summary()
            after = run.refresh()
        except Exception:
            self.errors += 1
            self.handles.pop(record.run_id, None)
            self.storage.runs.release_lease(record.run_pk, self.runner.lease_owner)
            logger.exception("worker: stepping run %s failed; will retry", record.run_id)
            return False
        if after.status.is_terminal:
            self.handles.pop(record.run_id, None)
            self.finished.append(record.run_id)
            logger.info("worker: run %s is %s", record.run_id, after.status.value)
        else:
            self.handles[record.run_id] = (run, after)
        return after != before


@contextmanager
def _stop_on_signals(stop: threading.Event, *, enabled: bool) -> Iterator[list[str]]:
    """Set ``stop`` on the first SIGTERM/SIGINT (main thread only), then restore the
    previous handlers so a second signal acts as usual. Yields the signals received."""
    received: list[str] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous: dict[signal.Signals, Any] = {}

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum)
        logger.info("worker: %s received, stopping after the current step", name.name)
        received.append(name.name)
        stop.set()
        signal.signal(name, previous[name])

    for name in (signal.SIGTERM, signal.SIGINT):
        previous[name] = signal.getsignal(name) or signal.SIG_DFL
        signal.signal(name, handle)
    try:
        yield received
    finally:
        for name, handler in previous.items():
            signal.signal(name, handler)
