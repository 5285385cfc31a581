"""Ingestion: turn a job's items into stored requests, in bounded slices.

Each slice of items is built into request lines (``build_prompt`` runs here and
only here), written as one request-segment artifact, then stored with the
source checkpoint of its last item in one transaction. A crash between the two
leaves a segment nobody points to, which the resumed ingestion overwrites.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from batchor.artifacts.base import ArtifactStore, request_segment_key
from batchor.engine.config import Clock
from batchor.errors import DuplicateItemIdError, ItemBuildError
from batchor.job import LINEAGE_KEY, BatchItem, BatchJob, PromptParts
from batchor.providers.base import BatchProvider
from batchor.sources.base import CheckpointedItem, CheckpointedItemSource
from batchor.storage.base import NewItem, RunRecord, Storage, dumps_json

ProgressCallback = Callable[[int], None]
"""Called with the number of items stored so far, after each slice."""


@dataclass(frozen=True, slots=True)
class _Entry:
    item: BatchItem
    position: int  # 0-based position in this pass over the input
    checkpoint: Any


def ingest(
    storage: Storage,
    artifacts: ArtifactStore,
    record: RunRecord,
    job: BatchJob,
    provider: BatchProvider,
    *,
    clock: Clock,
    progress: ProgressCallback | None = None,
) -> int:
    """Store every item of ``job`` not stored yet; returns the run's item count.

    A :class:`CheckpointedItemSource` resumes from the stored checkpoint and any
    repeated id is an error. A plain iterable is read from the start and items
    whose ids are already stored are skipped.
    """
    source = job.items
    checkpointed = isinstance(source, CheckpointedItemSource)
    entries = _entries(source, record)
    item_count = record.item_count
    segment = record.next_segment
    slice_size = job.chunk_policy.ingest_slice_size
    checkpoint_json = record.source_checkpoint
    while True:
        batch = list(itertools.islice(entries, slice_size))
        if not batch:
            break
        stored = storage.find_item_ids(record.run_pk, [entry.item.item_id for entry in batch])
        if stored and checkpointed:
            entry = next(entry for entry in batch if entry.item.item_id in stored)
            raise _duplicate_error(storage, record, entry, stored[entry.item.item_id])
        fresh = [entry for entry in batch if entry.item.item_id not in stored]
        _check_unique_within(fresh)
        new_items, payload = _build_requests(fresh, job, provider, segment, item_count)
        if new_items:
            with artifacts.open_write(request_segment_key(record.run_id, segment)) as handle:
                handle.write(payload)
        if checkpointed:
            checkpoint_json = dumps_json(batch[-1].checkpoint)
        storage.store_ingested_slice(
            record.run_pk,
            new_items,
            checkpoint=checkpoint_json,
            segment_used=bool(new_items),
            now=clock.now(),
        )
        item_count += len(new_items)
        segment += 1 if new_items else 0
        if progress is not None:
            progress(item_count)
    storage.mark_ingest_complete(record.run_pk, now=clock.now())
    return item_count


def _entries(
    source: Iterable[BatchItem] | CheckpointedItemSource, record: RunRecord
) -> Iterator[_Entry]:
    if isinstance(source, CheckpointedItemSource):
        checkpoint = (
            json.loads(record.source_checkpoint)
            if record.source_checkpoint is not None
            else source.initial_checkpoint()
        )
        records: Iterable[CheckpointedItem] = source.iter_from(checkpoint)
        for position, checkpointed in enumerate(records, record.item_count):
            yield _Entry(checkpointed.item, position, checkpointed.checkpoint)
        return
    for position, item in enumerate(source):
        yield _Entry(item, position, None)


def _check_unique_within(entries: list[_Entry]) -> None:
    seen: dict[str, _Entry] = {}
    for entry in entries:
        if not isinstance(entry.item, BatchItem):
            raise ItemBuildError(
                f"input position {entry.position}: expected a BatchItem, got "
                f"{type(entry.item).__name__}"
            )
        earlier = seen.setdefault(entry.item.item_id, entry)
        if earlier is not entry:
            raise DuplicateItemIdError(
                f"duplicate item_id {entry.item.item_id!r}: {_where(entry)} repeats "
                f"{_where(earlier)}; item ids must be unique within a run"
            )


def _duplicate_error(
    storage: Storage, record: RunRecord, entry: _Entry, stored_index: int
) -> DuplicateItemIdError:
    stored_metadata = storage.item_metadata(record.run_pk, stored_index)
    lineage = json.loads(stored_metadata).get(LINEAGE_KEY) if stored_metadata else None
    stored_where = f"input position {stored_index}" + _lineage_text(lineage)
    return DuplicateItemIdError(
        f"duplicate item_id {entry.item.item_id!r}: {_where(entry)} repeats the item already "
        f"stored at {stored_where} in run {record.run_id!r}; item ids must be unique within a run"
    )


def _where(entry: _Entry) -> str:
    lineage = entry.item.metadata.get(LINEAGE_KEY) if entry.item.metadata else None
    return f"input position {entry.position}" + _lineage_text(lineage)


def _lineage_text(lineage: Any) -> str:
    if not isinstance(lineage, dict) or lineage.get("source_ref") is None:
        return ""
    return f" ({lineage['source_ref']}, item {lineage.get('source_item_index')})"


def _build_requests(
    entries: list[_Entry],
    job: BatchJob,
    provider: BatchProvider,
    segment: int,
    first_index: int,
) -> tuple[list[NewItem], bytes]:
    """Build the request lines of a slice: the items to store and the segment bytes."""
    buffer = bytearray()
    new_items: list[NewItem] = []
    for offset_in_slice, entry in enumerate(entries):
        item = entry.item
        prompt = _prompt_for(item, job, entry)
        metadata_json = _metadata_json(item, entry)
        line = provider.build_request_line(item.item_id, prompt.prompt, prompt.system_prompt)
        new_items.append(
            NewItem(
                item_index=first_index + offset_in_slice,
                item_id=item.item_id,
                segment=segment,
                request_offset=len(buffer),
                request_length=len(line.data),
                estimated_tokens=line.estimated_tokens,
                metadata_json=metadata_json,
            )
        )
        buffer += line.data
        buffer += b"\n"
    return new_items, bytes(buffer)


def _prompt_for(item: BatchItem, job: BatchJob, entry: _Entry) -> PromptParts:
    try:
        prompt = job.build_prompt(item)
    except Exception as exc:
        raise ItemBuildError(
            f"build_prompt raised for item {item.item_id!r} ({_where(entry)}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(prompt, PromptParts):
        raise ItemBuildError(
            f"build_prompt must return PromptParts, got {type(prompt).__name__} for item "
            f"{item.item_id!r} ({_where(entry)})"
        )
    if not isinstance(prompt.prompt, str) or not prompt.prompt.strip():
        raise ItemBuildError(
            f"build_prompt returned an empty prompt for item {item.item_id!r} ({_where(entry)})"
        )
    try:
        json.dumps(item.payload)
    except (TypeError, ValueError) as exc:
        raise ItemBuildError(
            f"the payload of item {item.item_id!r} ({_where(entry)}) is not JSON-serialisable: "
            f"{exc}"
        ) from exc
    return prompt


def _metadata_json(item: BatchItem, entry: _Entry) -> str | None:
    if not item.metadata:
        return None
    try:
        return dumps_json(dict(item.metadata))
    except (TypeError, ValueError) as exc:
        raise ItemBuildError(
            f"the metadata of item {item.item_id!r} ({_where(entry)}) is not JSON-serialisable: "
            f"{exc}"
        ) from exc
