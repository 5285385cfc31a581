"""Ingestion: turn a job's items into stored requests, in bounded slices.

Each slice of the input is built into request lines (:mod:`.slices`: a slice
of items runs ``build_prompt``, a slice of Parquet columns builds its prompts
column by column), written as one request-segment artifact, then stored with
the source checkpoint of its last item in one transaction. A crash between the
two leaves a segment nobody points to, which the resumed ingestion overwrites.

Memory is bounded by one slice (``ChunkPolicy.ingest_slice_size`` items and
their request lines), whatever the size of the input.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from batchor.artifacts.base import ArtifactStore, open_jsonl_write, request_segment_key
from batchor.engine.driver import LEASE_TTL_SECONDS, is_dead_local_owner
from batchor.engine.slices import check_unique_within, input_slices, lineage_text, where
from batchor.errors import (
    BatchorError,
    DuplicateItemIdError,
    RunStateError,
    StorageConflictError,
)
from batchor.job import BatchJob
from batchor.providers.base import BatchProvider
from batchor.results import RunControlState
from batchor.sources.base import CheckpointedItemSource, durable_checkpoint
from batchor.storage.base import Storage
from batchor.storage.item_metadata import decode_metadata
from batchor.storage.records import RunRecord
from batchor.types import (
    LINEAGE_KEY,
    BatchItem,
    Clock,
    canonical_json,
)

ProgressCallback = Callable[[int], None]
"""Called with the number of items stored so far, after each slice."""


def ingest(
    storage: Storage,
    artifacts: ArtifactStore,
    record: RunRecord,
    job: BatchJob,
    provider: BatchProvider,
    *,
    clock: Clock,
    progress: ProgressCallback | None = None,
    owner: str | None = None,
    lease_ttl: float = LEASE_TTL_SECONDS,
) -> int:
    """Store every item of ``job`` not stored yet; returns the run's item count.

    A :class:`CheckpointedItemSource` resumes from the stored checkpoint and any
    repeated id is an error. A plain iterable is read from the start and items
    whose ids are already stored are skipped.

    With an ``owner``, ingestion holds the run's lease (renewed before every
    slice is stored), so a second process starting the same run at the same time
    is told that another process is ingesting it (:class:`RunStateError`) instead
    of meeting the first one's items as duplicates. A failed ingestion records
    why as the run's ``last_error``.

    A run being cancelled ingests nothing more (checked before each slice, so a
    ``cancel()`` from another process stops a long ingestion): its ingestion is
    marked over, and the driver then fails the stored items with ``run_cancelled``.
    """
    lease = None if owner is None else _IngestLease(storage, record, owner, lease_ttl, clock)
    if lease is not None:
        lease.take()
        record = lease.fresh_record()
        if record.ingest_complete:
            lease.release()
            return record.item_count
    try:
        with collector_skipping_older_objects():
            item_count = _ingest_slices(
                storage, artifacts, record, job, provider, clock, progress, lease
            )
        storage.runs.mark_ingest_complete(record.run_pk, now=clock.now())
        if record.last_error is not None:
            storage.runs.set_last_error(record.run_pk, None, now=clock.now())
    except RunStateError:
        raise  # another process is ingesting the run: its last error is not ours to set
    except BatchorError as exc:
        _record_failure(storage, record, f"ingestion stopped: {exc}", clock)
        raise
    finally:
        if lease is not None:
            lease.release()
    return item_count


class _IngestLease:
    """The run's lease, held while one process ingests it."""

    def __init__(
        self, storage: Storage, record: RunRecord, owner: str, ttl: float, clock: Clock
    ) -> None:
        self.storage = storage
        self.record = record
        self.owner = owner
        self.ttl = ttl
        self.clock = clock

    def take(self) -> None:
        holder = self.storage.runs.get(self.record.run_id)
        steal = None
        if holder is not None and is_dead_local_owner(holder.lease_owner):
            steal = holder.lease_owner
        if not self.storage.runs.try_acquire_lease(
            self.record.run_pk, self.owner, now=self.clock.now(), ttl=self.ttl, steal_from=steal
        ):
            current = self.storage.runs.get(self.record.run_id)
            raise self.busy(current.lease_owner if current is not None else None)

    def renew(self) -> None:
        """Before storing a slice: still ours, or another process took ingestion over."""
        if not self.storage.runs.try_acquire_lease(
            self.record.run_pk, self.owner, now=self.clock.now(), ttl=self.ttl
        ):
            current = self.storage.runs.get(self.record.run_id)
            raise self.busy(current.lease_owner if current is not None else None)

    def fresh_record(self) -> RunRecord:
        current = self.storage.runs.get(self.record.run_id)
        assert current is not None, "a run is never deleted"
        return current

    def release(self) -> None:
        self.storage.runs.release_lease(self.record.run_pk, self.owner)

    def busy(self, holder: str | None) -> RunStateError:
        run_id = self.record.run_id
        by = f" ({holder})" if holder else ""
        return RunStateError(
            f"another process{by} is ingesting run {run_id!r} at the same time; nothing "
            f"was stored twice. Let it finish (batchor status {run_id} shows the items "
            "stored so far); if it has stopped, start the run again with the same run id "
            f"once its lease expires ({self.ttl:g} s after its last sign of life)"
        )


def _record_failure(storage: Storage, record: RunRecord, message: str, clock: Clock) -> None:
    """Keep why ingestion stopped on the run, so ``status`` can say it."""
    with contextlib.suppress(BatchorError):  # the storage failed: the error raised says so
        storage.runs.set_last_error(record.run_pk, message, now=clock.now())


def _ingest_slices(
    storage: Storage,
    artifacts: ArtifactStore,
    record: RunRecord,
    job: BatchJob,
    provider: BatchProvider,
    clock: Clock,
    progress: ProgressCallback | None,
    lease: _IngestLease | None = None,
) -> int:
    """Store the input slice by slice; returns the run's item count."""
    source = job.items
    checkpointed = isinstance(source, CheckpointedItemSource)
    # input position of the next item, for messages: checkpointed sources resume after
    # the stored items, plain iterables are read again from the start
    position = record.item_count if checkpointed else 0
    item_count = record.item_count
    segment = record.next_segment
    checkpoint_json = record.source_checkpoint
    # With nothing stored before this pass there is nothing to skip: the unique index
    # alone catches a repeated id, and the lookup below is only needed to explain it.
    first_pass = record.item_count == 0
    slices = input_slices(
        source,
        record.source_checkpoint,
        job.chunk_policy.ingest_slice_size,
        job.build_prompt,
        position,
    )
    while not _cancel_requested(storage, record.run_id):
        next_slice = next(slices, None)
        if next_slice is None:
            break
        items, checkpoint = next_slice
        item_ids = items.item_ids
        stored = {} if first_pass else storage.ingest.find_item_ids(record.run_pk, item_ids)
        if stored:
            # a plain iterable skips the items stored by an earlier attempt; an id stored
            # by this one (or by any attempt, for a checkpointed source) is repeated
            repeated = [
                offset
                for offset, item_id in enumerate(item_ids)
                if item_id in stored and (checkpointed or stored[item_id] >= record.item_count)
            ]
            if repeated:
                offset = repeated[0]
                if stored[item_ids[offset]] >= item_count:
                    # stored beyond what this pass stored: by another process
                    raise _concurrent_error(record, lease)
                raise _duplicate_error(
                    storage,
                    record,
                    items.item(offset),
                    position + offset,
                    stored[item_ids[offset]],
                    checkpointed=checkpointed,
                )
        fresh = list(range(len(items)))
        if stored:
            fresh = [offset for offset in fresh if item_ids[offset] not in stored]
        check_unique_within(items, fresh, position)
        new_items, payload = items.build(fresh, position, job, provider, segment, item_count)
        if new_items:
            with open_jsonl_write(artifacts, request_segment_key(record.run_id, segment)) as handle:
                handle.write(payload)
        if isinstance(source, CheckpointedItemSource):
            checkpoint_json = canonical_json(durable_checkpoint(source, checkpoint))
        if lease is not None:
            lease.renew()
        try:
            storage.ingest.store_slice(
                record.run_pk,
                new_items,
                checkpoint=checkpoint_json,
                segment_used=bool(new_items),
                now=clock.now(),
            )
        except StorageConflictError:
            stored = storage.ingest.find_item_ids(record.run_pk, item_ids)
            repeated = [offset for offset in fresh if item_ids[offset] in stored]
            if not repeated or stored[item_ids[repeated[0]]] >= item_count:
                # not stored by this pass: another process is ingesting this run too
                raise _concurrent_error(record, lease) from None
            raise _duplicate_error(
                storage,
                record,
                items.item(repeated[0]),
                position + repeated[0],
                stored[item_ids[repeated[0]]],
                checkpointed=checkpointed,
            ) from None
        item_count += len(new_items)
        segment += 1 if new_items else 0
        position += len(items)
        if progress is not None:
            progress(item_count)
    return item_count


def _concurrent_error(record: RunRecord, lease: _IngestLease | None) -> RunStateError:
    if lease is not None:
        return lease.busy(None)
    return RunStateError(
        f"another process is ingesting run {record.run_id!r} at the same time; nothing was "
        "stored twice. Let it finish, or start the run again with the same run id once "
        "it has stopped"
    )


@contextmanager
def collector_skipping_older_objects() -> Iterator[None]:
    """Let the garbage collector skip the objects that exist before a bulk step.

    Ingestion keeps a slice of young objects alive at a time (thousands of items,
    their payloads and metadata), and reading results builds a page of them, which
    triggers full collections again and again, and each would traverse every older
    object of the process as well (imported modules, the application's data, the
    results already read): about a sixth of the ingestion time, half of reading
    100,000 results into a list.
    :func:`gc.freeze` sets the older objects aside for the duration; they go back
    to the collector afterwards. Nothing is done when the application froze
    objects itself or disabled the collector.
    """
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _cancel_requested(storage: Storage, run_id: str) -> bool:
    current = storage.runs.get(run_id)
    return current is not None and current.control_state is RunControlState.CANCEL_REQUESTED


def _duplicate_error(
    storage: Storage,
    record: RunRecord,
    item: BatchItem,
    position: int,
    stored_index: int,
    *,
    checkpointed: bool,
) -> DuplicateItemIdError:
    """The error for an item whose id the run already stored as item ``stored_index``
    (the input position for checkpointed sources, which store every item in order)."""
    stored_metadata = storage.ingest.item_metadata(record.run_pk, stored_index)
    lineage = decode_metadata(item.item_id, stored_metadata).get(LINEAGE_KEY)
    label = "input position" if checkpointed else "item index"
    stored_where = f"{label} {stored_index}" + lineage_text(lineage)
    return DuplicateItemIdError(
        f"duplicate item_id {item.item_id!r}: {where(item, position)} repeats the item already "
        f"stored at {stored_where} in run {record.run_id!r}; item ids must be unique within a run"
    )
