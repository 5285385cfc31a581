"""The step machine: one ``step()`` advances a run as far as it can right now.

A step takes the run's lease (so one process drives it at a time), then:

1. finishes any batch a crash left half-submitted (planned, uploaded, or
   "creating" — the last is adopted from the provider by its metadata key
   instead of being created twice);
2. polls in-flight batches and collects finished ones (download the result
   files, record every item's outcome, free the token budget);
3. plans and submits new batches while items are pending and the budget and
   the run's control state allow;
4. applies cancellation and finishes the run when every item is terminal.

Everything it needs is in storage and artifacts; it never calls the job's code.
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
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, ValidationError

from batchor.artifacts.base import ArtifactStore, raw_output_key, request_segment_key
from batchor.engine.config import Clock, RunConfig
from batchor.errors import ProviderError, RunNotFoundError
from batchor.providers.base import (
    AuthenticationFailedError,
    BatchProvider,
    ProviderBatch,
    ProviderBatchStatus,
    ProviderCallError,
    QuotaExhaustedError,
    RejectedCallError,
    RequestOutcome,
)
from batchor.results import RunControlState, RunStatus
from batchor.storage.base import BatchRecord, BatchState, RunRecord, Storage

logger = logging.getLogger("batchor")

LEASE_TTL_SECONDS = 120.0
ADOPTION_WINDOW_SECONDS = 600.0
"""How far back (before the create intent) to look for a batch to adopt."""


def new_lease_owner() -> str:
    """An owner id naming this host and process, so a dead process can be recognised."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_dead_local_owner(owner: str | None) -> bool:
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
    """Our lease expired and another process now drives the run."""


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
        self.storage = storage
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
        record = self.storage.get_run(self.run_id)
        if record is None:
            raise RunNotFoundError(f"run {self.run_id!r} no longer exists in {self.storage!r}")
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
        if not self.storage.try_acquire_lease(
            record.run_pk, self.owner, now=self.clock.now(), ttl=self.lease_ttl, steal_from=steal
        ):
            return False
        try:
            return self._step_with_lease(record)
        except _LeaseLostError:
            logger.warning("run %s: lease taken over by another process; step stopped", self.run_id)
            return True
        except ProviderCallError as exc:
            self._handle_provider_error(record, exc)
            return False
        finally:
            self.storage.release_lease(record.run_pk, self.owner)

    def _step_with_lease(self, record: RunRecord) -> bool:
        changed = False
        for batch in self.storage.active_batches(record.run_pk):
            self._renew_lease(record)
            record = self._record()
            if batch.state is BatchState.IN_FLIGHT:
                changed |= self._poll(record, batch)
            elif (
                batch.state is BatchState.CREATING
                or record.control_state is RunControlState.RUNNING
            ):
                changed |= self._finish_submission(record, batch)
            else:
                self.storage.release_batch(
                    batch.batch_pk, "run paused or cancelled", now=self.clock.now()
                )
                changed = True
        record = self._record()
        if record.control_state is RunControlState.RUNNING and (
            record.next_submit_at is None or record.next_submit_at <= self.clock.now()
        ):
            changed |= self._submit_new_batches(record)
        changed |= self._finish_if_done(self._record())
        if changed and record.last_error is not None:
            self.storage.update_run(record.run_pk, now=self.clock.now(), last_error=None)
        return changed

    def _renew_lease(self, record: RunRecord) -> None:
        """Extend the lease between long operations; if another process took it
        (ours expired), stop this step at once rather than drive the run twice."""
        if not self.storage.try_acquire_lease(
            record.run_pk, self.owner, now=self.clock.now(), ttl=self.lease_ttl
        ):
            raise _LeaseLostError(record.run_id)

    def _handle_provider_error(self, record: RunRecord, exc: ProviderCallError) -> None:
        """Transient provider errors wait for the next step; quota errors pause the
        run; authentication and permission errors are raised to the caller."""
        message = str(exc)
        if isinstance(exc, QuotaExhaustedError):
            self.storage.set_control_state(
                record.run_pk,
                RunControlState.PAUSED,
                f"paused automatically: the provider reports {exc.code} ({message}); fix "
                "billing or quota, then resume the run",
                now=self.clock.now(),
            )
        self.storage.update_run(record.run_pk, now=self.clock.now(), last_error=message)
        if isinstance(exc, AuthenticationFailedError):
            raise ProviderError(
                f"the provider refused run {self.run_id!r}: {message}; "
                "check OPENAI_API_KEY and base_url"
            ) from exc
        logger.warning(
            "run %s: provider error, will retry on the next step: %s", self.run_id, message
        )

    # -- submission ---------------------------------------------------------------------

    def _submit_new_batches(self, record: RunRecord) -> bool:
        limits = self.config.provider.enqueue_limits
        chunk = self.config.chunk_policy
        submitted = False
        while True:
            batch = self.storage.reserve_batch(
                record.run_pk,
                record.run_id,
                model=self.config.provider.model,
                max_requests=chunk.max_requests_per_batch,
                max_bytes=chunk.max_bytes_per_batch,
                token_budget=None if limits is None else limits.enqueued_token_budget,
                max_batch_tokens=None if limits is None else limits.max_batch_enqueued_tokens,
                oversize_message=(
                    "the request is larger than any batch may be (its estimated tokens exceed "
                    "the enqueued-token budget or max_batch_enqueued_tokens, or its line exceeds "
                    "max_bytes_per_batch)"
                ),
                now=self.clock.now(),
            )
            if batch is None:
                return submitted
            submitted = True
            self._finish_submission(record, batch)
            self._renew_lease(record)
            if self._record().control_state is not RunControlState.RUNNING:
                return submitted

    def _finish_submission(self, record: RunRecord, batch: BatchRecord) -> bool:
        """Take a batch from wherever it stopped to in flight."""
        provider = self.provider
        file_id = batch.input_file_id
        if batch.state is BatchState.PLANNED:
            with tempfile.TemporaryDirectory(prefix="batchor-") as workdir:
                path = Path(workdir) / f"{record.run_id}-{batch.batch_number:06d}.jsonl"
                self._write_batch_input(batch, path)
                try:
                    file_id = provider.upload_batch_file(path)
                except RejectedCallError as exc:
                    self._reject_batch(record, batch, "upload_rejected", str(exc))
                    return True
            self.storage.update_batch(
                batch.batch_pk, state=BatchState.UPLOADED, input_file_id=file_id
            )
        if batch.state is BatchState.CREATING:
            adopted = self._find_created_batch(batch)
            if adopted is not None:
                self.storage.mark_batch_submitted(
                    batch.batch_pk, adopted.batch_id, now=self.clock.now()
                )
                return True
        assert file_id is not None
        self.storage.update_batch(
            batch.batch_pk, state=BatchState.CREATING, submitted_at=self.clock.now()
        )
        metadata = {
            **self.config.batch_metadata,
            "batchor_run_id": record.run_id,
            "batchor_batch_key": batch.local_key,
        }
        try:
            created = provider.create_batch(file_id, metadata)
        except RejectedCallError as exc:
            self._reject_batch(record, batch, "batch_rejected", str(exc))
            return True
        self.storage.mark_batch_submitted(batch.batch_pk, created.batch_id, now=self.clock.now())
        return True

    def _write_batch_input(self, batch: BatchRecord, path: Path) -> None:
        """Copy the batch's request lines from the request segments into ``path``,
        one read per run of adjacent lines (a fresh batch is a few long runs)."""
        with path.open("wb") as output:
            for segment, start, end in _adjacent_runs(
                self.storage.batch_request_spans(batch.batch_pk)
            ):
                with self.artifacts.open_read(request_segment_key(self.run_id, segment)) as handle:
                    handle.seek(start)
                    remaining = end - start
                    while remaining:
                        block = handle.read(min(remaining, 8 * 1024 * 1024))
                        if not block:
                            raise OSError(
                                f"request segment {segment} of run {self.run_id!r} is truncated"
                            )
                        output.write(block)
                        remaining -= len(block)

    def _find_created_batch(self, batch: BatchRecord) -> ProviderBatch | None:
        """The provider batch a crashed create may have made, found by its metadata key."""
        created_after = (batch.created_at or 0.0) - ADOPTION_WINDOW_SECONDS
        for candidate in self.provider.list_batches(created_after):
            if candidate.metadata.get("batchor_batch_key") == batch.local_key:
                return candidate
        return None

    def _reject_batch(self, record: RunRecord, batch: BatchRecord, code: str, message: str) -> None:
        """The provider refused the batch outright: count an attempt and retry per policy."""
        self.storage.mark_batch_submitted(batch.batch_pk, None, now=self.clock.now())
        self.storage.record_batch_results(
            batch,
            (),
            leftover=RequestOutcome(
                custom_id="", error_code=code, error_message=message, retryable=True
            ),
            leftover_counts_attempt=True,
            retry=self.config.retry_schedule(),
            provider_status="rejected",
            now=self.clock.now(),
        )
        self.storage.update_run(
            record.run_pk, now=self.clock.now(), last_error=f"{code}: {message}"
        )

    # -- polling and collection ---------------------------------------------------------

    def _poll(self, record: RunRecord, batch: BatchRecord) -> bool:
        assert batch.provider_batch_id is not None
        remote = self.provider.get_batch(batch.provider_batch_id)
        if not remote.status.is_terminal:
            if remote.status.value != batch.provider_status:
                self.storage.update_batch(batch.batch_pk, provider_status=remote.status.value)
                return True
            return False
        self._collect(record, batch, remote)
        return True

    def _collect(self, record: RunRecord, batch: BatchRecord, remote: ProviderBatch) -> None:
        keep_raw = self.config.artifact_policy.persist_raw_output_artifacts
        with tempfile.TemporaryDirectory(prefix="batchor-") as workdir, ExitStack() as stack:
            files: list[BinaryIO] = []
            artifact_keys: dict[str, str | None] = {"output": None, "error": None}
            for kind, file_id in (
                ("output", remote.output_file_id),
                ("error", remote.error_file_id),
            ):
                if not file_id:
                    continue
                if keep_raw:
                    key = raw_output_key(record.run_id, batch.batch_number, kind)
                    with self.artifacts.open_write(key) as handle:
                        self.provider.download_file(file_id, handle)
                    artifact_keys[kind] = key
                    files.append(stack.enter_context(self.artifacts.open_read(key)))
                else:
                    path = Path(workdir) / f"{kind}.jsonl"
                    with path.open("wb") as handle:
                        self.provider.download_file(file_id, handle)
                    files.append(stack.enter_context(path.open("rb")))
            leftover, counts_attempt = self._leftover_outcome(record, remote)
            if remote.errors and remote.errors[0].code == "token_limit_exceeded":
                self.storage.update_run(
                    record.run_pk,
                    now=self.clock.now(),
                    next_submit_at=self.clock.now() + self.config.retry_policy.backoff_seconds(1),
                )
            self.storage.record_batch_results(
                batch,
                self._outcomes(files),
                leftover=leftover,
                leftover_counts_attempt=counts_attempt,
                retry=self.config.retry_schedule(),
                provider_status=remote.status.value,
                now=self.clock.now(),
            )
            if keep_raw:
                self.storage.update_batch(
                    batch.batch_pk,
                    output_artifact=artifact_keys["output"],
                    error_artifact=artifact_keys["error"],
                )

    def _leftover_outcome(
        self, record: RunRecord, remote: ProviderBatch
    ) -> tuple[RequestOutcome, bool]:
        """The outcome of items a finished batch returned nothing for, and whether
        that costs them an attempt."""
        status = remote.status
        if status is ProviderBatchStatus.CANCELLED and (
            record.control_state is RunControlState.CANCEL_REQUESTED
        ):
            return RequestOutcome(
                "", error_code="run_cancelled", error_message="the run was cancelled"
            ), True
        if status is ProviderBatchStatus.CANCELLED:
            return RequestOutcome(
                "",
                error_code="batch_cancelled",
                error_message="the provider batch was cancelled",
                retryable=True,
            ), False
        if status is ProviderBatchStatus.EXPIRED:
            return RequestOutcome(
                "", error_code="batch_expired",
                error_message="the batch expired before this request ran", retryable=True,
            ), True  # fmt: skip
        if status is ProviderBatchStatus.FAILED:
            first = remote.errors[0] if remote.errors else None
            code = first.code if first else "batch_failed"
            message = (
                "; ".join(
                    f"{error.message} (line {error.line})" if error.line else error.message
                    for error in remote.errors[:5]
                )
                or "the provider failed the batch"
            )
            return RequestOutcome("", error_code=code, error_message=message, retryable=True), (
                code != "token_limit_exceeded"
            )
        return RequestOutcome(
            "", error_code="missing_result",
            error_message="the batch completed without a result for this request", retryable=True,
        ), True  # fmt: skip

    def _outcomes(self, files: list[BinaryIO]) -> Iterator[RequestOutcome]:
        model = self.output_model()
        is_embeddings = self.config.provider.endpoint == "/v1/embeddings"
        for handle in files:
            for line_number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    outcome = self.provider.parse_result_line(line)
                except ValueError as exc:
                    logger.warning(
                        "run %s: skipping result line %d: %s", self.run_id, line_number, exc
                    )
                    continue
                if outcome.succeeded and not is_embeddings:
                    outcome = _validate_output(outcome, model)
                yield outcome

    # -- finishing ----------------------------------------------------------------------

    def _finish_if_done(self, record: RunRecord) -> bool:
        counts = self.storage.run_counts(record.run_pk)
        cancelling = record.control_state is RunControlState.CANCEL_REQUESTED
        if cancelling and counts.submitted == 0 and counts.pending > 0:
            self.storage.fail_unfinished_items(
                record.run_pk,
                "run_cancelled",
                "the run was cancelled before this item finished",
                now=self.clock.now(),
            )
            counts = self.storage.run_counts(record.run_pk)
        if counts.pending or counts.submitted:
            return False
        if cancelling:
            status = RunStatus.CANCELLED
        elif counts.failed:
            status = RunStatus.COMPLETED_WITH_FAILURES
        else:
            status = RunStatus.COMPLETED
        self.storage.finish_run(record.run_pk, status, now=self.clock.now())
        return True

    def cancel_remote_batches(self) -> None:
        """Ask the provider to cancel every in-flight batch of the run."""
        record = self._record()
        for batch in self.storage.active_batches(record.run_pk):
            if batch.state is BatchState.IN_FLIGHT and batch.provider_batch_id:
                try:
                    self.provider.cancel_batch(batch.provider_batch_id)
                except ProviderCallError as exc:
                    logger.warning(
                        "run %s: could not cancel %s: %s", self.run_id, batch.provider_batch_id, exc
                    )


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


def _validate_output(outcome: RequestOutcome, model: type[BaseModel] | None) -> RequestOutcome:
    """Check a reply against the structured-output model (or that it is text)."""
    if model is None or outcome.output_text is None:
        return outcome
    try:
        model.model_validate_json(outcome.output_text)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first.get("loc", ())) or "reply"
        return RequestOutcome(
            custom_id=outcome.custom_id,
            output_text=outcome.output_text,
            error_code="invalid_output",
            error_message=(
                f"the reply does not validate as {model.__name__}: {location}: {first.get('msg')} "
                f"({exc.error_count()} error(s))"
            ),
            retryable=True,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
        )
    return outcome


def parse_output(output_text: str | None, model: type[BaseModel] | None, endpoint: str) -> object:
    """The typed ``output`` of a completed item."""
    if output_text is None:
        return None
    if endpoint == "/v1/embeddings":
        return json.loads(output_text)
    if model is not None:
        return model.model_validate_json(output_text)
    return None
