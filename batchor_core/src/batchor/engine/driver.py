"""The step machine: one ``step()`` advances a run as far as it can right now.

A step takes the run's lease (so one process drives it at a time), then:

1. finishes any batch a crash left half-submitted (planned, uploaded, or
   "creating" — the last is looked for at the provider instead of being created
   twice);
2. polls in-flight batches and collects finished ones (:mod:`.collect`);
3. plans and submits new batches while items are pending and the budget and
   the run's control state allow;
4. applies cancellation and finishes the run when every item is terminal.

Everything it needs is in storage and artifacts; it never calls the job's code,
and it knows no provider: :class:`~batchor.providers.base.BatchProvider` is all
it sees of one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel

from batchor.artifacts.base import ArtifactStore, open_jsonl_read, request_segment_key
from batchor.engine.collect import Collector
from batchor.engine.config import RunConfig
from batchor.engine.limits import PlanningLimits, learned_value
from batchor.engine.outcomes import replan
from batchor.engine.planning import (
    batch_limits,
    estimated_cost_usd,
    pack_batch,
    plan_for_budget,
)
from batchor.errors import (
    BatchRefusedError,
    ProviderAuthenticationError,
    ProviderError,
    ProviderRejectedError,
    QuotaExhaustedError,
    Refusal,
    RefusalKind,
    RunNotFoundError,
    StorageError,
)
from batchor.providers.base import BatchProvider, OutcomeKind, ProviderBatch, RequestOutcome
from batchor.results import COST_LIMIT_REASON, RunControlState, RunStatus
from batchor.storage.base import Storage
from batchor.storage.records import BatchPlan, BatchRecord, BatchState, PendingRequest, RunRecord
from batchor.types import Clock, canonical_json

logger = logging.getLogger("batchor")

LEASE_TTL_SECONDS = 120.0
"""How long a run stays leased to a driver after its last sign of life, by default."""
ADOPTION_WINDOW_SECONDS = 600.0
"""How far back (before the create intent) to look for a batch to adopt."""
CLEANUP_ATTEMPTS = 3
"""Tries (one per step) to delete a batch's files at the provider before giving up."""


def new_lease_owner() -> str:
    """An owner id naming this host and process, so a dead process can be recognised."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_dead_local_owner(owner: str | None) -> bool:
    """Whether ``owner`` is a process on this host that no longer exists."""
    if owner is None:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _cancelling(record: RunRecord) -> bool:
    """A cancelled run is drained even if its ingestion never finished."""
    return record.control_state is RunControlState.CANCEL_REQUESTED


class _LeaseLostError(Exception):
    """Our lease expired and another process now drives the run (internal: a step
    that sees it stops quietly)."""


class RunDriver:
    """Advances one run. Cheap to create; holds the provider client once made."""

    def __init__(
        self,
        *,
        storage: Storage,
        artifacts: ArtifactStore,
        run_id: str,
        config: RunConfig,
        provider_factory: Callable[[], BatchProvider],
        output_model: Callable[[], type[BaseModel] | None],
        clock: Clock,
        owner: str,
        lease_ttl: float = LEASE_TTL_SECONDS,
    ) -> None:
        self.runs = storage.runs
        self.batches = storage.batches
        self.results = storage.results
        self.limits = storage.limits
        self.storage_name = repr(storage)
        self.artifacts = artifacts
        self.run_id = run_id
        self.config = config
        self._provider_factory = provider_factory
        self._provider: BatchProvider | None = None
        self.output_model = output_model
        self.clock = clock
        self.owner = owner
        self.lease_ttl = lease_ttl

    @property
    def provider(self) -> BatchProvider:
        if self._provider is None:
            self._provider = self._provider_factory()
        return self._provider

    def _record(self) -> RunRecord:
        record = self.runs.get(self.run_id)
        if record is None:
            raise RunNotFoundError(f"run {self.run_id!r} no longer exists in {self.storage_name}")
        return record

    # -- the step -----------------------------------------------------------------------

    def step(self) -> bool:
        """Advance the run once. Returns whether anything changed. A run whose lease
        another live process holds is left alone (returns False)."""
        record = self._record()
        if record.status.is_terminal:
            return False
        if not record.ingest_complete and not _cancelling(record):
            return False  # start() is still ingesting it (or must be called again)
        steal = record.lease_owner if is_dead_local_owner(record.lease_owner) else None
        if not self.runs.try_acquire_lease(
            record.run_pk, self.owner, now=self.clock.now(), ttl=self.lease_ttl, steal_from=steal
        ):
            return False
        try:
            return self._step_with_lease(record)
        except _LeaseLostError:
            logger.warning("run %s: lease taken over by another process; step stopped", self.run_id)
            return True
        except ProviderError as exc:
            self._handle_provider_error(record, exc)
            return False
        finally:
            self.runs.release_lease(record.run_pk, self.owner)

    def _step_with_lease(self, record: RunRecord) -> bool:
        changed = False
        unpollable: list[str] = []
        for batch in self.batches.active(record.run_pk):
            self._renew_lease(record)
            record = self._record()
            if batch.state is BatchState.IN_FLIGHT:
                changed |= self._poll(record, batch, unpollable)
            elif (
                batch.state is BatchState.CREATING
                or record.control_state is RunControlState.RUNNING
            ):
                self._finish_submission(record, batch)
                changed = True
            else:
                self.batches.release(
                    batch.batch_pk, "run paused or cancelled", now=self.clock.now()
                )
                self.schedule_cleanup(batch, None, ())
                changed = True
        record = self._record()
        if record.control_state is RunControlState.RUNNING and (
            record.next_submit_at is None or record.next_submit_at <= self.clock.now()
        ):
            changed |= self._submit_new_batches(record)
        cleanups_left = self._clean_up(record)
        if not cleanups_left:
            changed |= self._finish_if_done(self._record())
        # the run moved on: an old error is stale (one raised in this step is not, and
        # the explanation of a cost-limit pause stays until the limit is raised)
        if (
            changed
            and record.last_error is not None
            and record.control_reason != COST_LIMIT_REASON
            and self._record().last_error == record.last_error
        ):
            self.runs.set_last_error(record.run_pk, None, now=self.clock.now())
        if unpollable:
            self.runs.set_last_error(record.run_pk, "; ".join(unpollable), now=self.clock.now())
        return changed

    def _renew_lease(self, record: RunRecord) -> None:
        """Extend the lease between long operations; if another process took it
        (ours expired), stop this step at once rather than drive the run twice."""
        if not self.runs.try_acquire_lease(
            record.run_pk, self.owner, now=self.clock.now(), ttl=self.lease_ttl
        ):
            raise _LeaseLostError(record.run_id)

    def _handle_provider_error(self, record: RunRecord, exc: ProviderError) -> None:
        """Transient provider errors wait for the next step; quota errors pause the
        run; authentication and permission errors are raised to the caller."""
        message = str(exc)
        now = self.clock.now()
        if isinstance(exc, QuotaExhaustedError):
            self.runs.set_control_state(
                record.run_pk,
                RunControlState.PAUSED,
                f"paused automatically: the provider reports {exc.code} ({message}); fix "
                "billing or quota, then resume the run",
                now=now,
            )
        self.runs.set_last_error(record.run_pk, message, now=now)
        if isinstance(exc, ProviderAuthenticationError):
            raise ProviderAuthenticationError(
                f"the provider refused run {self.run_id!r}: {message}", code=exc.code
            ) from exc
        logger.warning(
            "run %s: provider error, will retry on the next step: %s", self.run_id, message
        )

    # -- submission ---------------------------------------------------------------------

    def planning_limits(self) -> PlanningLimits:
        """The provider's limits, the job's caps and what refusals taught, combined."""
        provider = self.provider
        return PlanningLimits.combine(
            provider.limits,
            self.config.chunk_policy,
            configured_budget=provider.enqueue_budget,
            learned=self.limits.get(self.config.provider.budget_scope),
        )

    def _submit_new_batches(self, record: RunRecord) -> bool:
        """Plan and submit batches while items are pending, within the limits known
        when the step began. A batch the provider refuses or rejects ends the loop,
        as does a pause or a hold: the next step plans again with what the refusal
        taught (and waits, if it held submissions back)."""
        limits = self.planning_limits()
        budget = limits.budget
        submitted = False
        while True:
            batch = self.batches.reserve(
                record.run_pk,
                record.run_id,
                model=self.config.provider.model,
                budget_scope=self.config.provider.budget_scope,
                budget_total=None if budget is None else budget.total,
                pack=_packer(limits),
                max_candidates=limits.provider.max_requests_per_batch + 1_000,
                oversize_error=(
                    "request_too_large",
                    "the request is larger than any batch may be: " + limits.describe(),
                ),
                now=self.clock.now(),
            )
            if batch is None:
                return submitted
            submitted = True
            in_flight = self._finish_submission(record, batch)
            self._renew_lease(record)
            current = self._record()
            held = current.next_submit_at is not None and current.next_submit_at > self.clock.now()
            if not in_flight or held or current.control_state is not RunControlState.RUNNING:
                return submitted

    def _finish_submission(self, record: RunRecord, batch: BatchRecord) -> bool:
        """Take a batch from wherever it stopped to in flight; whether it got there
        (False: the provider refused or rejected it, and its items went back)."""
        provider = self.provider
        with tempfile.TemporaryDirectory(prefix="batchor-") as workdir:
            path = Path(workdir) / f"{record.run_id}-{batch.batch_number:06d}.jsonl"
            input_ref = batch.input_file_id
            if batch.state is BatchState.PLANNED and self._over_cost_limit(record, batch):
                return False
            # written for every create: a provider taking requests inline reads them here
            self._write_batch_input(batch, path)
            if batch.state is BatchState.PLANNED:
                try:
                    input_ref = provider.upload_input(path)
                except BatchRefusedError as exc:
                    self._refused(record, batch, exc.refusal)
                    return False
                except ProviderRejectedError as exc:
                    self._never_ran(batch, "upload_rejected", str(exc))
                    return False
                self.batches.mark_uploaded(batch.batch_pk, input_ref)
                batch = replace(batch, state=BatchState.UPLOADED, input_file_id=input_ref)
            if batch.state is BatchState.CREATING:
                adopted = self.provider.find_batch(
                    batch_key=batch.local_key,
                    created_after=(batch.created_at or 0.0) - ADOPTION_WINDOW_SECONDS,
                    request_count=batch.request_count,
                    input_ref=input_ref,
                )
                if adopted is not None:
                    self.batches.mark_submitted(
                        batch.batch_pk, adopted.batch_id, now=self.clock.now()
                    )
                    return True
            self.batches.mark_creating(batch.batch_pk, now=self.clock.now())
            metadata = {**self.config.batch_metadata, "batchor_run_id": record.run_id}
            try:
                created = provider.create_batch(
                    input_ref=input_ref, path=path, batch_key=batch.local_key, metadata=metadata
                )
            except BatchRefusedError as exc:
                self._refused(record, batch, exc.refusal)
                self.schedule_cleanup(batch, None, ())
                return False
            except ProviderRejectedError as exc:
                self._never_ran(batch, "batch_rejected", str(exc))
                self.schedule_cleanup(batch, None, ())
                return False
        self.batches.mark_submitted(batch.batch_pk, created.batch_id, now=self.clock.now())
        return True

    def _over_cost_limit(self, record: RunRecord, batch: BatchRecord) -> bool:
        """Whether submitting ``batch`` could take the run above its cost limit: what
        the provider reported so far, plus the estimate of every batch in flight and
        of this one. If so the batch is released and the run pauses
        (``control_reason == "cost_limit"``) until the limit is raised."""
        limit = record.cost_limit_usd
        price = self.config.provider.price()
        if limit is None or price is None:
            return False
        counts = self.results.counts(record.run_pk)  # this batch's items are submitted
        committed = estimated_cost_usd(
            price,
            counts.estimated_submitted_tokens,
            counts.submitted,
            self.config.provider.max_output_tokens,
        )
        spent = price.cost_usd(counts.usage)
        if committed is None or spent + committed <= limit:
            return False
        now = self.clock.now()
        self.batches.release(batch.batch_pk, "cost limit", now=now)
        self.runs.set_control_state(
            record.run_pk, RunControlState.PAUSED, COST_LIMIT_REASON, now=now
        )
        self.runs.set_last_error(
            record.run_pk,
            f"paused at the cost limit of ${limit:,.4f}: ${spent:,.4f} spent and "
            f"${committed:,.4f} estimated for the batches in flight and batch "
            f"{batch.batch_number} ({batch.request_count:,} requests); raise it with "
            "run.set_cost_limit(usd) or batchor resume --cost-limit USD",
            now=now,
        )
        return True

    def _write_batch_input(self, batch: BatchRecord, path: Path) -> None:
        """Copy the batch's request lines from the request segments into ``path``,
        one read per run of adjacent lines (a fresh batch is a few long runs). Runs
        come in item order, so each segment is decompressed once, reading forward."""
        with path.open("wb") as output, ExitStack() as segments:
            opened: tuple[int, BinaryIO] | None = None
            for segment, start, end in _adjacent_runs(self.batches.request_spans(batch.batch_pk)):
                if opened is None or opened[0] != segment or opened[1].tell() > start:
                    segments.close()
                    key = request_segment_key(self.run_id, segment)
                    opened = (segment, segments.enter_context(open_jsonl_read(self.artifacts, key)))
                handle = opened[1]
                handle.seek(start)
                remaining = end - start
                while remaining:
                    block = handle.read(min(remaining, 8 * 1024 * 1024))
                    if not block:
                        raise StorageError(
                            f"request segment {segment} of run {self.run_id!r} is "
                            f"truncated in {self.artifacts.location}"
                        )
                    output.write(block)
                    remaining -= len(block)

    def _never_ran(self, batch: BatchRecord, code: str, message: str) -> None:
        """The provider rejected the batch outright: its items never ran, so they go
        back to pending as resubmissions (see :class:`~batchor.RetryPolicy`)."""
        self._collector().record_without_results(
            batch,
            RequestOutcome(
                "", kind=OutcomeKind.NOT_EXECUTED, error_code=code, error_message=message
            ),
            provider_status="rejected",
        )
        record = self._record()
        self.runs.set_last_error(record.run_pk, f"{code}: {message}", now=self.clock.now())

    def _refused(self, record: RunRecord, batch: BatchRecord, refusal: Refusal) -> None:
        """The provider refused the batch for one of its limits: learn the limit, put
        the items back unchanged, and plan again within it. A batch refused for the
        enqueued budget although it fits the limit by itself found the queue full:
        submissions then wait a little for batches in flight to finish.

        When configuration sets that limit (an explicit ``enqueue_limits``), it is
        not second-guessed: the items count a resubmission instead, so a limit
        configured above the provider's ends in failures that say so rather than
        in refusals forever."""
        now = self.clock.now()
        value = learned_value(refusal, batch)
        scope = self.config.provider.budget_scope
        self.limits.learn(scope, refusal.kind.value, value, refusal.message, now=now)
        if self.planning_limits().overridden(refusal):
            self._never_ran(
                batch,
                "batch_refused",
                f"{refusal.message} (enqueue_limits allows more than the provider does: lower it)",
            )
        else:
            items = self.batches.items_of(batch)
            self.batches.record_outcomes(
                batch, (replan(item) for item in items), provider_status="refused", now=now
            )
        held = (
            batch.estimated_tokens
            if refusal.kind is RefusalKind.ENQUEUED_TOKENS
            else (batch.request_count)
        )
        if (
            refusal.kind in (RefusalKind.ENQUEUED_TOKENS, RefusalKind.ENQUEUED_REQUESTS)
            and held <= value
        ):
            # the batch fits the limit by itself: the queue was full, so wait for it
            delay = self.config.retry_policy.backoff_seconds(1)
            self.runs.hold_submissions_until(record.run_pk, now + delay, now=now)
        self.runs.set_last_error(
            record.run_pk,
            f"batch {batch.batch_number} refused ({refusal.kind.value}, learned limit "
            f"{value:,}): {refusal.message}",
            now=now,
        )
        logger.warning(
            "run %s: batch %d refused for %s; planning again within %s",
            self.run_id,
            batch.batch_number,
            refusal.kind.value,
            f"{value:,}",
        )

    # -- provider-side cleanup ----------------------------------------------------------

    def schedule_cleanup(
        self, batch: BatchRecord, batch_id: str | None, result_files: tuple[str, ...]
    ) -> None:
        """Remember to delete what the provider keeps of ``batch`` (its uploaded input,
        its result files, the batch itself), when the artifact policy says so."""
        if not self.config.artifact_policy.delete_provider_files:
            return
        refs = [ref for ref in (batch.input_file_id, *result_files) if ref]
        if refs or batch_id:
            cleanup = {"batch_id": batch_id, "refs": refs, "attempts": 0}
            self.batches.set_pending_cleanup(batch.batch_pk, canonical_json(cleanup))

    def _clean_up(self, record: RunRecord) -> bool:
        """Try the run's pending provider-side deletions; returns whether some are
        left to retry on a later step (each is given up after CLEANUP_ATTEMPTS)."""
        left = False
        for batch_pk, text in self.batches.pending_cleanups(record.run_pk):
            cleanup = json.loads(text)
            try:
                self.provider.cleanup(cleanup["batch_id"], cleanup["refs"])
            except ProviderError as exc:
                cleanup["attempts"] += 1
                if cleanup["attempts"] < CLEANUP_ATTEMPTS:
                    self.batches.set_pending_cleanup(batch_pk, canonical_json(cleanup))
                    left = True
                    continue
                logger.warning(
                    "run %s: giving up deleting %s at the provider after %d tries: %s",
                    self.run_id,
                    ", ".join(cleanup["refs"]) or cleanup["batch_id"],
                    cleanup["attempts"],
                    exc,
                )
            self.batches.set_pending_cleanup(batch_pk, None)
        return left

    # -- polling and collection ---------------------------------------------------------

    def _collector(self) -> Collector:
        return Collector(
            run_id=self.run_id,
            batches=self.batches,
            artifacts=self.artifacts,
            provider=self.provider,
            config=self.config,
            output_model=self.output_model,
            clock=self.clock,
        )

    def _poll(self, record: RunRecord, batch: BatchRecord, unpollable: list[str]) -> bool:
        """Poll one in-flight batch and collect it once it has ended. A batch the
        provider refuses to report (gone, or not visible to this key) is added to
        ``unpollable`` and left in flight: the other batches go on, and no request
        is sent again that the provider may have run."""
        assert batch.provider_batch_id is not None
        try:
            remote = self.provider.get_batch(batch.provider_batch_id)
        except ProviderRejectedError as exc:
            logger.warning("run %s: cannot poll %s: %s", self.run_id, batch.provider_batch_id, exc)
            unpollable.append(
                f"batch {batch.batch_number} ({batch.provider_batch_id}) cannot be polled: "
                f"{exc}. Its items stay in flight and the other batches go on; check that "
                "the API key and address are the ones the run submitted it with"
            )
            return False
        if not remote.status.is_terminal:
            if remote.status.value != batch.provider_status:
                self.batches.set_provider_status(batch.batch_pk, remote.status.value)
                return True
            return False
        if remote.refusal is not None:
            self._refused(record, batch, remote.refusal)
        else:
            self._collector().collect(batch, remote, cancelled_by_run=_cancelling(record))
        self.schedule_cleanup(batch, remote.batch_id, remote.result_files)
        return True

    # -- finishing ----------------------------------------------------------------------

    def _finish_if_done(self, record: RunRecord) -> bool:
        counts = self.results.counts(record.run_pk)
        cancelling = record.control_state is RunControlState.CANCEL_REQUESTED
        if cancelling and counts.submitted == 0 and counts.pending > 0:
            self.batches.fail_pending(
                record.run_pk, "run_cancelled", "the run was cancelled before this item finished"
            )
            counts = self.results.counts(record.run_pk)
        if counts.pending or counts.submitted:
            return False
        if cancelling:
            status = RunStatus.CANCELLED
        elif counts.failed:
            status = RunStatus.COMPLETED_WITH_FAILURES
        else:
            status = RunStatus.COMPLETED
        self.runs.finish(record.run_pk, status, now=self.clock.now())
        return True

    def cancel_remote_batches(self) -> None:
        """Ask the provider to cancel every in-flight batch of the run."""
        record = self._record()
        for batch in self.batches.active(record.run_pk):
            if batch.state is BatchState.IN_FLIGHT and batch.provider_batch_id:
                try:
                    self.provider.cancel_batch(batch.provider_batch_id)
                except ProviderError as exc:
                    logger.warning(
                        "run %s: could not cancel %s: %s", self.run_id, batch.provider_batch_id, exc
                    )


def _packer(limits: PlanningLimits) -> Callable[[Iterator[PendingRequest], int | None], BatchPlan]:
    """How to pack the next batch within ``limits``, given the budget left free."""
    budget = limits.budget

    def pack(pending: Iterator[PendingRequest], free: int | None) -> BatchPlan:
        plan = pack_batch(pending, batch_limits(limits.provider, budget=budget, free_units=free))
        return plan_for_budget(plan, budget)

    return pack


def _adjacent_runs(spans: Iterable[tuple[int, int, int]]) -> Iterator[tuple[int, int, int]]:
    """Merge (segment, offset, length) request lines, each followed by a newline,
    into (segment, start, end) byte ranges of adjacent lines."""
    current: tuple[int, int, int] | None = None
    for segment, offset, length in spans:
        if current is not None and current[0] == segment and current[2] == offset:
            current = (segment, current[1], offset + length + 1)
            continue
        if current is not None:
            yield current
        current = (segment, offset, offset + length + 1)
    if current is not None:
        yield current


__all__ = [
    "LEASE_TTL_SECONDS",
    "ProviderBatch",
    "RunDriver",
    "is_dead_local_owner",
    "new_lease_owner",
]
