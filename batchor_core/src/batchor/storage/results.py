"""Reading a run's progress and its terminal results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from batchor.results import ItemStatus
from batchor.storage.database import Database
from batchor.storage.records import BatchState, RunCounts, StoredItem
from batchor.storage.schema import batches, items

_ITEM_COLUMNS = (
    items.c.item_id,
    items.c.item_index,
    items.c.status,
    items.c.attempts,
    items.c.resubmissions,
    items.c.sequence,
    items.c.output_text,
    items.c.error_code,
    items.c.error_message,
    items.c.error_retryable,
    items.c.input_tokens,
    items.c.output_tokens,
    items.c.cached_input_tokens,
    items.c.reasoning_tokens,
    items.c.metadata,
)
"""Selected in :class:`StoredItem`'s field order, so rows map positionally."""


class ResultStore:
    """What summaries, result reads and exports ask of storage."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def counts(self, run_pk: int) -> RunCounts:
        """Items by status, token totals and batch counts of a run."""
        sums = [
            func.coalesce(func.sum(column), 0)
            for column in (
                items.c.input_tokens,
                items.c.output_tokens,
                items.c.cached_input_tokens,
                items.c.reasoning_tokens,
                items.c.estimated_tokens,
            )
        ]
        with self._db.read() as conn:
            by_status: dict[str, int] = {}
            estimated: dict[str, int] = {}
            totals = [0] * len(sums)
            rows = conn.execute(
                select(items.c.status, func.count(), *sums)
                .where(items.c.run_pk == run_pk)
                .group_by(items.c.status)
            )
            for status, count, *values in rows:
                by_status[status] = int(count)
                estimated[status] = int(values[-1])
                totals = [total + int(value) for total, value in zip(totals, values, strict=True)]
            batch_row = conn.execute(
                select(
                    func.count(),
                    func.coalesce(
                        func.sum(case((batches.c.state == BatchState.IN_FLIGHT.value, 1), else_=0)),
                        0,
                    ),
                ).where(batches.c.run_pk == run_pk, batches.c.state != BatchState.RELEASED.value)
            ).one()
        return RunCounts(
            pending=by_status.get(ItemStatus.PENDING.value, 0),
            submitted=by_status.get(ItemStatus.SUBMITTED.value, 0),
            completed=by_status.get(ItemStatus.COMPLETED.value, 0),
            failed=by_status.get(ItemStatus.FAILED.value, 0),
            input_tokens=totals[0],
            output_tokens=totals[1],
            cached_input_tokens=totals[2],
            reasoning_tokens=totals[3],
            estimated_input_tokens=totals[4],
            estimated_pending_tokens=estimated.get(ItemStatus.PENDING.value, 0),
            estimated_submitted_tokens=estimated.get(ItemStatus.SUBMITTED.value, 0),
            batches_total=int(batch_row[0]),
            batches_in_flight=int(batch_row[1]),
        )

    def read_terminal(
        self, run_pk: int, *, after_sequence: int, limit: int | None
    ) -> list[StoredItem]:
        """Up to ``limit`` terminal items with sequence > ``after_sequence``, in order."""
        query = (
            select(*_ITEM_COLUMNS)
            .where(items.c.run_pk == run_pk, items.c.sequence > after_sequence)
            .order_by(items.c.sequence)
        )
        if limit is not None:
            query = query.limit(limit)
        with self._db.read() as conn:
            return [_stored_item(row) for row in self._db.fetch_rows(conn, query)]


def _stored_item(row: Any) -> StoredItem:
    # positional: this runs once per result read (error_retryable may be 0/1)
    return StoredItem(row[0], row[1], _STATUSES[row[2]], *row[3:])


_STATUSES = {status.value: status for status in ItemStatus}
