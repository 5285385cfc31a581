"""Batches: reserving pending items into a batch within a budget, recording how far
its submission got, and recording the outcome of every item once it is collected.

The decisions (how to pack, whether an outcome is retried, what fails) are the
engine's: it passes them in as a packing function and as item updates. This
module only makes each step one transaction, in bulk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from batchor.errors import StorageError
from batchor.results import ItemStatus
from batchor.storage.database import WRITE_CHUNK, Database
from batchor.storage.records import (
    ACTIVE_BATCH_STATES,
    BatchItemState,
    BatchPlan,
    BatchRecord,
    BatchState,
    FailedItems,
    ItemUpdate,
    PendingRequest,
)
from batchor.storage.schema import batches, budget_locks, items, runs

PackBatch = Callable[[Iterator[PendingRequest], int | None], BatchPlan]
"""The engine's packing decision: ``(pending requests in order, free budget units or
None) -> plan``."""

TERMINAL_STATUSES = (ItemStatus.COMPLETED, ItemStatus.FAILED)


class BatchStore:
    """What the driver asks of storage about batches and their items."""

    def __init__(self, database: Database) -> None:
        self._db = database

    # -- planning -----------------------------------------------------------------------

    def reserve(
        self,
        run_pk: int,
        run_id: str,
        *,
        model: str,
        budget_scope: str,
        budget_total: int | None,
        pack: PackBatch,
        max_candidates: int,
        oversize_error: tuple[str, str],
        now: float,
    ) -> BatchRecord | None:
        """Claim the next pending items into a new batch, as ``pack`` decides.

        With a ``budget_total`` this runs holding the budget scope's lock, and
        ``pack`` is given what is free of it (the total less what active batches of
        the scope hold), so concurrent workers never together go above it. Items
        ``pack`` finds too large for any batch fail here with ``oversize_error``
        (code, message). Returns ``None`` when nothing can be submitted now.
        """
        with self._db.write() as conn:
            free: int | None = None
            if budget_total is not None:
                conn.execute(
                    self._db.insert(budget_locks)
                    .values(scope=budget_scope)
                    .on_conflict_do_nothing()
                )
                conn.execute(
                    select(budget_locks.c.scope)
                    .where(budget_locks.c.scope == budget_scope)
                    .with_for_update()
                )
                held = conn.execute(
                    select(func.coalesce(func.sum(batches.c.budget_units), 0)).where(
                        batches.c.budget_scope == budget_scope, _holds_budget()
                    )
                ).scalar_one()
                free = budget_total - int(held)
            ready = _ready_items(run_pk, now)
            rows = conn.execute(
                select(items.c.item_index, items.c.estimated_tokens, items.c.request_length)
                .where(ready)
                .order_by(items.c.item_index)
                .limit(max_candidates)
            )
            plan = pack((PendingRequest(row[0], row[1], row[2]) for row in rows), free)
            if plan.oversized:
                code, message = oversize_error
                _fail(conn, run_pk, FailedItems(plan.oversized, code, message))
            if plan.request_count == 0 or plan.last_index is None:
                return None
            return self._claim(conn, run_pk, run_id, model, budget_scope, plan, ready, now)

    def _claim(
        self,
        conn: Connection,
        run_pk: int,
        run_id: str,
        model: str,
        budget_scope: str,
        plan: BatchPlan,
        ready: Any,
        now: float,
    ) -> BatchRecord:
        number = (
            conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk)
                .values(next_batch_number=runs.c.next_batch_number + 1)
                .returning(runs.c.next_batch_number)
            ).scalar_one()
            - 1
        )
        batch_pk = conn.execute(
            batches.insert()
            .values(
                run_pk=run_pk,
                batch_number=number,
                local_key=f"{run_id}/{number:06d}",
                model=model,
                budget_scope=budget_scope,
                state=BatchState.PLANNED.value,
                request_count=plan.request_count,
                estimated_tokens=plan.estimated_tokens,
                budget_units=plan.budget_units,
                bytes=plan.bytes,
                created_at=now,
            )
            .returning(batches.c.batch_pk)
        ).scalar_one()
        claimed = conn.execute(
            update(items)
            .where(ready, items.c.item_index <= plan.last_index)
            .values(status=ItemStatus.SUBMITTED.value, batch_pk=batch_pk)
        ).rowcount
        if claimed != plan.request_count:
            raise StorageError(
                f"claimed {claimed} items for batch {number} of run {run_id}, planned "
                f"{plan.request_count}: the run's items changed during planning"
            )
        return _batch(conn, batch_pk)

    def request_spans(self, batch_pk: int) -> Iterator[tuple[int, int, int]]:
        """(segment, offset, length) of each request line of a batch, in item order."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(items.c.segment, items.c.request_offset, items.c.request_length)
                .where(items.c.batch_pk == batch_pk, items.c.status == ItemStatus.SUBMITTED.value)
                .order_by(items.c.item_index)
            )
            for row in rows:
                yield row[0], row[1], row[2]

    # -- submission ---------------------------------------------------------------------

    def active(self, run_pk: int) -> list[BatchRecord]:
        """The run's batches that hold budget (planned .. in flight), in order."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(batches)
                .where(batches.c.run_pk == run_pk, _holds_budget())
                .order_by(batches.c.batch_number)
            )
            return [batch_record(row) for row in rows]

    def for_run(self, run_pk: int) -> list[BatchRecord]:
        """Every batch of the run, in order."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(batches).where(batches.c.run_pk == run_pk).order_by(batches.c.batch_number)
            )
            return [batch_record(row) for row in rows]

    def mark_uploaded(self, batch_pk: int, input_file_id: str | None) -> None:
        self._set(batch_pk, state=BatchState.UPLOADED.value, input_file_id=input_file_id)

    def mark_creating(self, batch_pk: int, *, now: float) -> None:
        """The create call is about to be made: after a crash, look for the batch."""
        self._set(batch_pk, state=BatchState.CREATING.value, submitted_at=now)

    def mark_submitted(self, batch_pk: int, provider_batch_id: str, *, now: float) -> None:
        """The provider accepted the batch: it is in flight."""
        self._set(
            batch_pk,
            state=BatchState.IN_FLIGHT.value,
            provider_batch_id=provider_batch_id,
            submitted_at=now,
        )

    def set_provider_status(self, batch_pk: int, status: str) -> None:
        self._set(batch_pk, provider_status=status)

    def set_raw_artifacts(self, batch_pk: int, output: str | None, error: str | None) -> None:
        """Where the batch's raw output and error files were kept."""
        self._set(batch_pk, output_artifact=output, error_artifact=error)

    def release(self, batch_pk: int, reason: str, *, now: float) -> None:
        """The batch was never created: its items go back to pending, attempts unchanged."""
        with self._db.write() as conn:
            conn.execute(
                update(items)
                .where(items.c.batch_pk == batch_pk, items.c.status == ItemStatus.SUBMITTED.value)
                .values(status=ItemStatus.PENDING.value, batch_pk=None)
            )
            conn.execute(
                update(batches)
                .where(batches.c.batch_pk == batch_pk)
                .values(state=BatchState.RELEASED.value, error=reason, finished_at=now)
            )

    def set_pending_cleanup(self, batch_pk: int, cleanup: str | None) -> None:
        """What is left to delete at the provider for this batch (JSON), or None."""
        self._set(batch_pk, pending_cleanup=cleanup)

    def pending_cleanups(self, run_pk: int) -> list[tuple[int, str]]:
        """``(batch_pk, cleanup JSON)`` of the run's batches with provider files to delete."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(batches.c.batch_pk, batches.c.pending_cleanup)
                .where(batches.c.run_pk == run_pk, batches.c.pending_cleanup.is_not(None))
                .order_by(batches.c.batch_number)
            )
            return [(row[0], row[1]) for row in rows]

    def _set(self, batch_pk: int, **values: Any) -> None:
        with self._db.write() as conn:
            conn.execute(update(batches).where(batches.c.batch_pk == batch_pk).values(**values))

    # -- collection ---------------------------------------------------------------------

    def items_of(self, batch: BatchRecord) -> list[BatchItemState]:
        """The items the batch holds, in item order."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(items.c.item_index, items.c.item_id, items.c.attempts, items.c.resubmissions)
                .where(
                    items.c.batch_pk == batch.batch_pk,
                    items.c.status == ItemStatus.SUBMITTED.value,
                )
                .order_by(items.c.item_index)
            )
            return [BatchItemState(row[0], row[1], row[2], row[3]) for row in rows]

    def record_outcomes(
        self, batch: BatchRecord, updates: Iterable[ItemUpdate], *, provider_status: str, now: float
    ) -> None:
        """Apply the engine's update of every item of a finished batch, in one
        transaction, and mark the batch collected (which frees its budget).

        Items that become terminal get the run's next sequence numbers, gap-free,
        in the order the updates come; items going back to pending leave the batch.
        """
        with self._db.write() as conn:
            sequence = conn.execute(
                select(runs.c.next_sequence).where(runs.c.run_pk == batch.run_pk).with_for_update()
            ).scalar_one()
            statement = _update_item_statement(batch.run_pk)
            chunk: list[dict[str, Any]] = []
            for item in updates:
                terminal = item.status in TERMINAL_STATUSES
                chunk.append(_update_params(item, sequence if terminal else None, batch))
                sequence += terminal
                if len(chunk) >= WRITE_CHUNK:
                    self._db.executemany(conn, statement, chunk)
                    chunk = []
            self._db.executemany(conn, statement, chunk)
            conn.execute(
                update(runs).where(runs.c.run_pk == batch.run_pk).values(next_sequence=sequence)
            )
            conn.execute(
                update(batches)
                .where(batches.c.batch_pk == batch.batch_pk)
                .values(
                    state=BatchState.COLLECTED.value,
                    provider_status=provider_status,
                    finished_at=now,
                )
            )

    # -- failing items outside a batch --------------------------------------------------

    def fail_pending(self, run_pk: int, error_code: str, error_message: str) -> None:
        """Fail every pending item of the run for good (cancellation), numbered in
        item order."""
        with self._db.write() as conn:
            indexes = list(
                conn.execute(
                    select(items.c.item_index)
                    .where(items.c.run_pk == run_pk, items.c.status == ItemStatus.PENDING.value)
                    .order_by(items.c.item_index)
                ).scalars()
            )
            _fail(conn, run_pk, FailedItems(indexes, error_code, error_message))


def _holds_budget() -> Any:
    """A batch in one of the states that still count against its scope's budget."""
    return batches.c.state.in_([state.value for state in ACTIVE_BATCH_STATES])


def _ready_items(run_pk: int, now: float) -> Any:
    return and_(
        items.c.run_pk == run_pk,
        items.c.status == ItemStatus.PENDING.value,
        or_(items.c.not_before.is_(None), items.c.not_before <= now),
    )


def _fail(conn: Connection, run_pk: int, failed: FailedItems) -> None:
    """Fail ``failed.item_indexes`` for good, numbered in the order given."""
    sequence = conn.execute(
        select(runs.c.next_sequence).where(runs.c.run_pk == run_pk).with_for_update()
    ).scalar_one()
    statement = (
        update(items)
        .where(items.c.run_pk == run_pk, items.c.item_index == bindparam("b_index"))
        .values(
            status=ItemStatus.FAILED.value,
            error_code=failed.error_code,
            error_message=failed.error_message,
            error_retryable=False,
            not_before=None,
            batch_pk=None,
            sequence=bindparam("b_sequence"),
        )
    )
    Database.executemany(
        conn,
        statement,
        [
            {"b_index": index, "b_sequence": sequence + offset}
            for offset, index in enumerate(failed.item_indexes)
        ],
    )
    conn.execute(
        update(runs)
        .where(runs.c.run_pk == run_pk)
        .values(next_sequence=sequence + len(failed.item_indexes))
    )


def _update_item_statement(run_pk: int) -> Any:
    return (
        update(items)
        .where(
            items.c.run_pk == run_pk,
            items.c.item_index == bindparam("b_index"),
            items.c.status == ItemStatus.SUBMITTED.value,
        )
        .values(
            status=bindparam("b_status"),
            attempts=bindparam("b_attempts"),
            resubmissions=bindparam("b_resubmissions"),
            not_before=bindparam("b_not_before"),
            batch_pk=bindparam("b_batch_pk"),
            sequence=bindparam("b_sequence"),
            output_text=bindparam("b_output_text"),
            error_code=bindparam("b_error_code"),
            error_message=bindparam("b_error_message"),
            error_retryable=bindparam("b_error_retryable"),
            input_tokens=func.coalesce(items.c.input_tokens, 0) + bindparam("b_input_tokens"),
            output_tokens=func.coalesce(items.c.output_tokens, 0) + bindparam("b_output_tokens"),
            cached_input_tokens=func.coalesce(items.c.cached_input_tokens, 0)
            + bindparam("b_cached_input_tokens"),
            reasoning_tokens=func.coalesce(items.c.reasoning_tokens, 0)
            + bindparam("b_reasoning_tokens"),
        )
    )


def _update_params(item: ItemUpdate, sequence: int | None, batch: BatchRecord) -> dict[str, Any]:
    return {
        "b_index": item.item_index,
        "b_status": item.status.value,
        "b_attempts": item.attempts,
        "b_resubmissions": item.resubmissions,
        "b_not_before": item.not_before,
        "b_batch_pk": None if item.status is ItemStatus.PENDING else batch.batch_pk,
        "b_sequence": sequence,
        "b_output_text": item.output_text,
        "b_error_code": item.error_code,
        "b_error_message": item.error_message,
        "b_error_retryable": item.error_retryable,
        "b_input_tokens": item.input_tokens,
        "b_output_tokens": item.output_tokens,
        "b_cached_input_tokens": item.cached_input_tokens,
        "b_reasoning_tokens": item.reasoning_tokens,
    }


def _batch(conn: Connection, batch_pk: int) -> BatchRecord:
    return batch_record(conn.execute(select(batches).where(batches.c.batch_pk == batch_pk)).one())


def batch_record(row: Any) -> BatchRecord:
    """A :class:`BatchRecord` from a row of ``batches``."""
    mapping = row._mapping
    return BatchRecord(
        **{name: mapping[name] for name in BatchRecord.__dataclass_fields__ if name != "state"},
        state=BatchState(mapping["state"]),
    )
