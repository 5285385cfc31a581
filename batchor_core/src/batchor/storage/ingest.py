"""Ingestion: storing a run's items slice by slice, each slice with its checkpoint."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select, update

from batchor.results import ItemStatus
from batchor.storage.database import IN_CHUNK, Database
from batchor.storage.records import NewItem
from batchor.storage.schema import items, runs


class IngestStore:
    """What ingestion asks of storage."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def find_item_ids(self, run_pk: int, item_ids: Sequence[str]) -> dict[str, int]:
        """Which of ``item_ids`` the run already has, with their item indexes."""
        found: dict[str, int] = {}
        with self._db.read() as conn:
            for start in range(0, len(item_ids), IN_CHUNK):
                chunk = item_ids[start : start + IN_CHUNK]
                rows = conn.execute(
                    select(items.c.item_id, items.c.item_index).where(
                        items.c.run_pk == run_pk, items.c.item_id.in_(chunk)
                    )
                )
                found.update({row.item_id: row.item_index for row in rows})
        return found

    def item_metadata(self, run_pk: int, item_index: int) -> str | None:
        """The stored metadata JSON of one item (for error messages)."""
        with self._db.read() as conn:
            value: str | None = conn.execute(
                select(items.c.metadata).where(
                    items.c.run_pk == run_pk, items.c.item_index == item_index
                )
            ).scalar()
            return value

    def store_slice(
        self,
        run_pk: int,
        new_items: Sequence[NewItem],
        *,
        checkpoint: str | None,
        segment_used: bool,
        now: float,
    ) -> None:
        """Insert a slice of items and advance the run's checkpoint, atomically.

        The unique index on (run, item id) is the last word on duplicates: a slice
        that repeats a stored id raises :class:`~batchor.errors.StorageConflictError`
        and stores nothing."""
        pending = ItemStatus.PENDING.value
        rows = [
            {
                "run_pk": run_pk,
                "item_index": item.item_index,
                "item_id": item.item_id,
                "status": pending,
                "attempts": 0,
                "resubmissions": 0,
                "segment": item.segment,
                "request_offset": item.request_offset,
                "request_length": item.request_length,
                "estimated_tokens": item.estimated_tokens,
                "metadata": item.metadata_json,
            }
            for item in new_items
        ]
        with self._db.write() as conn:
            if rows:
                self._db.executemany(
                    conn, items.insert().values({key: bindparam(key) for key in rows[0]}), rows
                )
            conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk)
                .values(
                    item_count=runs.c.item_count + len(rows),
                    next_segment=runs.c.next_segment + (1 if segment_used else 0),
                    source_checkpoint=checkpoint,
                    updated_at=now,
                )
            )
