"""Ingestion: turn a job's items into stored requests, in bounded slices.

Each slice of items is built into request lines (``build_prompt`` runs here and
only here), written as one request-segment artifact, then stored with the
source checkpoint of its last item in one transaction. A crash between the two
leaves a segment nobody points to, which the resumed ingestion overwrites.

Memory is bounded by one slice (``ChunkPolicy.ingest_slice_size`` items and
their request lines), whatever the size of the input. This loop runs once per
input item, so it avoids per-item work that is not needed: no wrapper objects,
simple payloads checked without :func:`json.dumps`, and lineage stored in its
short form (:mod:`batchor.storage.item_metadata`).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from batchor.artifacts.base import ArtifactStore, open_jsonl_write, request_segment_key
from batchor.engine.driver import LEASE_TTL_SECONDS, is_dead_local_owner
from batchor.errors import (
    BatchorError,
    DuplicateItemIdError,
    ItemBuildError,
    RunStateError,
    StorageConflictError,
)
from batchor.job import BatchJob
from batchor.providers.base import BatchProvider
from batchor.results import RunControlState
from batchor.sources.base import CheckpointedItem, CheckpointedItemSource, durable_checkpoint
from batchor.storage.base import Storage
from batchor.storage.item_metadata import decode_metadata, encode_metadata
from batchor.storage.records import NewItem, RunRecord
from batchor.types import (
    LINEAGE_KEY,
    BatchItem,
    Clock,
    ContentPart,
    Message,
    PromptParts,
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
    slices = input_slices(source, record.source_checkpoint, job.chunk_policy.ingest_slice_size)
    while not _cancel_requested(storage, record.run_id):
        next_slice = next(slices, None)
        if next_slice is None:
            break
        items, checkpoint = next_slice
        item_ids = item_ids_of(items, position)
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
                    items[offset],
                    position + offset,
                    stored[item_ids[offset]],
                    checkpointed=checkpointed,
                )
        fresh = list(range(len(items)))
        if stored:
            fresh = [offset for offset in fresh if item_ids[offset] not in stored]
        check_unique_within(items, item_ids, fresh, position)
        new_items, payload = build_requests(
            items, fresh, position, job, provider, segment, item_count
        )
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
                items[repeated[0]],
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
    """Let the garbage collector skip the objects that exist before ingestion.

    Ingestion keeps a slice of young objects alive at a time (thousands of items,
    their payloads and metadata), which triggers full collections again and again,
    and each would traverse every older object of the process as well (imported
    modules, the application's data): about a sixth of the ingestion time.
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


def input_slices(
    source: Iterable[BatchItem] | CheckpointedItemSource, stored_checkpoint: str | None, size: int
) -> Iterator[tuple[list[BatchItem], Any]]:
    """The input after ``stored_checkpoint`` (JSON; None: from the start), ``size``
    items at a time, each slice with the source checkpoint after its last item (None
    for plain iterables, which are always read from the start)."""
    if not isinstance(source, CheckpointedItemSource):
        iterator = iter(source)
        while items := list(itertools.islice(iterator, size)):
            yield items, None
        return
    checkpoint = (
        json.loads(stored_checkpoint)
        if stored_checkpoint is not None
        else source.initial_checkpoint()
    )
    records = source.iter_from(checkpoint)
    while batch := list(itertools.islice(records, size)):
        if not all(type(entry) is CheckpointedItem for entry in batch):
            for entry in batch:
                if not isinstance(entry, CheckpointedItem):
                    raise ItemBuildError(
                        f"{type(source).__name__}.iter_from must yield CheckpointedItem "
                        f"values, got {type(entry).__name__}"
                    )
        yield [entry.item for entry in batch], batch[-1].checkpoint


def item_ids_of(items: list[BatchItem], first_position: int) -> list[str]:
    """The ids of a slice, after checking that every entry is a BatchItem."""
    if not all(type(item) is BatchItem for item in items):
        for offset, item in enumerate(items):
            if not isinstance(item, BatchItem):
                raise ItemBuildError(
                    f"input position {first_position + offset}: expected a BatchItem, got "
                    f"{type(item).__name__}"
                )
    return [item.item_id for item in items]


def check_unique_within(
    items: list[BatchItem], item_ids: list[str], fresh: list[int], first_position: int
) -> None:
    if len(fresh) == len(item_ids) and len(set(item_ids)) == len(item_ids):
        return
    seen: dict[str, int] = {}
    for offset in fresh:
        earlier = seen.setdefault(item_ids[offset], offset)
        if earlier != offset:
            raise DuplicateItemIdError(
                f"duplicate item_id {item_ids[offset]!r}: "
                f"{_where(items[offset], first_position + offset)} repeats "
                f"{_where(items[earlier], first_position + earlier)}; "
                "item ids must be unique within a run"
            )


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
    stored_where = f"{label} {stored_index}" + _lineage_text(lineage)
    return DuplicateItemIdError(
        f"duplicate item_id {item.item_id!r}: {_where(item, position)} repeats the item already "
        f"stored at {stored_where} in run {record.run_id!r}; item ids must be unique within a run"
    )


def _where(item: BatchItem, position: int) -> str:
    lineage = item.metadata.get(LINEAGE_KEY) if item.metadata else None
    return f"input position {position}" + _lineage_text(lineage)


def _lineage_text(lineage: Any) -> str:
    if not isinstance(lineage, dict) or lineage.get("source_ref") is None:
        return ""
    return f" ({lineage['source_ref']}, source_item_index {lineage.get('source_item_index')})"


def build_requests(
    items: list[BatchItem],
    fresh: list[int],
    first_position: int,
    job: BatchJob,
    provider: BatchProvider,
    segment: int,
    first_index: int,
) -> tuple[list[NewItem], bytes]:
    """Build the request lines of the ``fresh`` items of a slice: the items to store
    and the segment bytes."""
    build_prompt = job.build_prompt
    build_request_line = provider.build_request_line
    custom_id = provider.custom_id
    max_request_bytes = provider.limits.max_request_bytes
    lines: list[bytes] = []
    new_items: list[NewItem] = []
    request_offset = 0
    item_index = first_index
    for offset in fresh:
        item = items[offset]
        try:
            prompt = build_prompt(item)
        except Exception as exc:
            raise ItemBuildError(
                f"build_prompt raised for item {item.item_id!r} "
                f"({_where(item, first_position + offset)}): {type(exc).__name__}: {exc}"
            ) from exc
        if type(prompt) is not PromptParts and not isinstance(prompt, PromptParts):
            raise ItemBuildError(
                f"build_prompt must return PromptParts, got {type(prompt).__name__} for item "
                f"{item.item_id!r} ({_where(item, first_position + offset)})"
            )
        if not prompt.messages:
            text = prompt.prompt
            if (type(text) is not str or not text or text.isspace()) and (
                not isinstance(text, str) or not text.strip()
            ):
                raise ItemBuildError(
                    f"build_prompt returned an empty prompt for item {item.item_id!r} "
                    f"({_where(item, first_position + offset)})"
                )
        else:
            _check_messages(prompt, item, first_position + offset)
        if not _is_plain_json(item.payload, 0):
            _check_payload_json(item, first_position + offset)
        if not prompt.messages and (
            len(prompt.prompt) + len(prompt.system_prompt or "") > max_request_bytes
        ):
            # every character is at least a byte: too large before it is even built
            raise _too_large(item, first_position + offset, None, max_request_bytes)
        try:
            data = build_request_line(custom_id(item.item_id, item_index), prompt)
        except ItemBuildError as exc:
            raise ItemBuildError(
                f"item {item.item_id!r} ({_where(item, first_position + offset)}): {exc}; "
                "the provider cannot take this request"
            ) from None
        length = len(data.data)
        if length > max_request_bytes:
            raise _too_large(item, first_position + offset, length, max_request_bytes)
        new_items.append(
            NewItem(
                item_index=item_index,
                item_id=item.item_id,
                segment=segment,
                request_offset=request_offset,
                request_length=length,
                estimated_tokens=data.estimated_tokens,
                metadata_json=_metadata_json(item, first_position + offset),
            )
        )
        lines.append(data.data)
        request_offset += length + 1
        item_index += 1
    if not lines:
        return new_items, b""
    lines.append(b"")
    return new_items, b"\n".join(lines)


def _check_messages(prompt: PromptParts, item: BatchItem, position: int) -> None:
    """Messages in the neutral form: known roles, text or parts, a non-empty user turn."""
    where = f"item {item.item_id!r} ({_where(item, position)})"
    if prompt.prompt:
        raise ItemBuildError(f"build_prompt gave both prompt and messages for {where}")
    for number, message in enumerate(prompt.messages):
        if not isinstance(message, Message) or message.role not in ("system", "user", "assistant"):
            raise ItemBuildError(
                f"build_prompt: messages[{number}] of {where} is not a Message with role "
                "system, user or assistant"
            )
        parts = [message.content] if isinstance(message.content, str) else message.content
        if not parts or not all(isinstance(part, str | ContentPart) for part in parts):
            raise ItemBuildError(
                f"build_prompt: messages[{number}].content of {where} must be text or a "
                "list of ContentPart"
            )
    if not any(message.role == "user" for message in prompt.messages):
        raise ItemBuildError(f"build_prompt: the messages of {where} have no user message")


def _too_large(item: BatchItem, position: int, length: int | None, limit: int) -> ItemBuildError:
    """The error for a request no batch of the provider may hold (``length`` None when
    the prompt alone is too long to be worth building)."""
    size = "larger" if length is None else f"{length:,} bytes, more"
    return ItemBuildError(
        f"the request for item {item.item_id!r} ({_where(item, position)}) is {size} than "
        f"the provider takes in one request ({limit:,} bytes); shorten its prompt"
    )


_MAX_PLAIN_DEPTH = 32


def _is_plain_json(value: Any, depth: int) -> bool:
    """True when ``value`` is made only of dict (str keys), list, str, int, bool and
    None, so :func:`json.dumps` surely accepts it. False means "not sure": the
    caller then asks :func:`json.dumps` itself."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth >= _MAX_PLAIN_DEPTH:
        return False
    if kind is dict:
        for key, inner in value.items():
            if type(key) is not str or not _is_plain_json(inner, depth + 1):
                return False
        return True
    if kind is list:
        return all(_is_plain_json(inner, depth + 1) for inner in value)
    return False


def _check_payload_json(item: BatchItem, position: int) -> None:
    try:
        json.dumps(item.payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ItemBuildError(
            f"the payload of item {item.item_id!r} ({_where(item, position)}) is not "
            f"JSON-serialisable: {exc}"
        ) from exc


def _metadata_json(item: BatchItem, position: int) -> str | None:
    try:
        return encode_metadata(item.item_id, item.metadata)
    except (TypeError, ValueError) as exc:
        raise ItemBuildError(
            f"the metadata of item {item.item_id!r} ({_where(item, position)}) is not "
            f"JSON-serialisable: {exc}"
        ) from exc
