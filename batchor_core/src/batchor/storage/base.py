"""The one door to the database: named operations, each one transaction.

The engine never sees SQL or sessions. It asks for things like "store this
ingested slice with its checkpoint" or "reserve the next batch within this
token budget", and each such operation runs in a single transaction, in bulk
(no per-item round trips). The same code serves SQLite, in-memory SQLite and
PostgreSQL; the subclasses only build the SQLAlchemy engine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    func,
    inspect,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from batchor.engine.planning import BatchLimits, BatchPlan, PendingRequest, pack_batch
from batchor.errors import StorageError
from batchor.providers.base import RequestOutcome
from batchor.results import ItemStatus, RunControlState, RunStatus
from batchor.storage import schema
from batchor.storage.schema import batches, items, model_budgets, runs

_IN_CHUNK = 2_000  # ids per IN (...) query
_WRITE_CHUNK = 5_000  # rows per executemany


class ItemKeyConflictError(StorageError):
    """An inserted item collides with a stored one (same id, or same index)."""


class BatchState(StrEnum):
    """A local batch's lifecycle. ``planned`` .. ``in_flight`` hold token budget."""

    PLANNED = "planned"  # items claimed, budget reserved, nothing sent yet
    UPLOADED = "uploaded"  # input file uploaded, batch not created
    CREATING = "creating"  # create requested: after a crash, adopt by metadata
    IN_FLIGHT = "in_flight"  # the provider has it
    COLLECTED = "collected"  # results recorded, budget freed
    RELEASED = "released"  # never created; its items went back to pending


ACTIVE_BATCH_STATES = (
    BatchState.PLANNED,
    BatchState.UPLOADED,
    BatchState.CREATING,
    BatchState.IN_FLIGHT,
)


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_pk: int
    run_id: str
    status: RunStatus
    control_state: RunControlState
    control_reason: str | None
    model: str
    config: str
    config_fingerprint: str
    source_identity: str | None
    source_checkpoint: str | None
    ingest_complete: bool
    item_count: int
    next_segment: int
    next_submit_at: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    last_error: str | None
    raw_outputs_exported_at: float | None
    created_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class BatchRecord:
    batch_pk: int
    run_pk: int
    batch_number: int
    local_key: str
    model: str
    state: BatchState
    provider_batch_id: str | None
    input_file_id: str | None
    provider_status: str | None
    request_count: int
    estimated_tokens: int
    created_at: float
    output_artifact: str | None
    error_artifact: str | None


@dataclass(frozen=True, slots=True)
class NewItem:
    """An ingested item: where its request line is, and its metadata JSON."""

    item_index: int
    item_id: str
    segment: int
    request_offset: int
    request_length: int
    estimated_tokens: int
    metadata_json: str | None


@dataclass(frozen=True, slots=True)
class StoredItem:
    item_id: str
    item_index: int
    status: ItemStatus
    attempts: int
    sequence: int | None
    output_text: str | None
    error_code: str | None
    error_message: str | None
    error_retryable: bool | None
    input_tokens: int | None
    output_tokens: int | None
    metadata_json: str | None


@dataclass(frozen=True, slots=True)
class RunCounts:
    pending: int = 0
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    estimated_input_tokens: int = 0
    batches_in_flight: int = 0
    batches_total: int = 0


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """How a retryable failure is treated: give up after ``max_attempts``, else wait
    ``backoff_seconds[attempts - 1]`` (the last entry for later attempts)."""

    max_attempts: int
    backoff_seconds: tuple[float, ...]


_ITEM_COLUMNS = (
    items.c.item_id,
    items.c.item_index,
    items.c.status,
    items.c.attempts,
    items.c.sequence,
    items.c.output_text,
    items.c.error_code,
    items.c.error_message,
    items.c.error_retryable,
    items.c.input_tokens,
    items.c.output_tokens,
    items.c.metadata,
)


class Storage:
    """Durable run state. Use :class:`SQLiteStorage`, ``"memory"`` or :class:`PostgresStorage`."""

    def __init__(self, engine: Engine, *, serialize: bool = False) -> None:
        self.engine = engine
        # One connection shared by threads (in-memory SQLite) needs one transaction at a time.
        self._lock: threading.RLock | None = threading.RLock() if serialize else None
        self._migrate()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url.render_as_string(hide_password=True)!r})"

    def default_artifact_root(self) -> str | None:
        """Where artifacts go when the runner is given no artifact store (None: a temp dir)."""
        return None

    def dispose(self) -> None:
        self.engine.dispose()

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        if self._lock is not None:
            self._lock.acquire()
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(batchor_write=write)
                with conn.begin():
                    yield conn
        finally:
            if self._lock is not None:
                self._lock.release()

    def _write(self) -> Any:
        return self._transaction(write=True)

    def _read(self) -> Any:
        return self._transaction(write=False)

    def _migrate(self) -> None:
        """Create the schema, or check its version and migrate it forward.

        The version is read before anything is created, so a database written by
        a newer batchor is refused untouched.
        """
        with self._write() as conn:
            self._lock_for_migration(conn)
            version = None
            translate = conn.get_execution_options().get("schema_translate_map") or {}
            if inspect(conn).has_table(schema.meta.name, schema=translate.get(None)):
                value = conn.execute(
                    select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
                ).scalar()
                version = None if value is None else int(value)
            if version is not None and version > schema.SCHEMA_VERSION:
                raise StorageError(
                    f"{self!r} has schema version {version}, newer than this batchor "
                    f"({schema.SCHEMA_VERSION}); upgrade batchor-core"
                )
            schema.metadata.create_all(conn, checkfirst=True)
            if version is None:
                conn.execute(
                    schema.meta.insert().values(
                        key="schema_version", value=str(schema.SCHEMA_VERSION)
                    )
                )
            # Forward migrations go here: one function per version step, applied
            # in order from `version` to SCHEMA_VERSION, then the row updated.

    def _lock_for_migration(self, conn: Connection) -> None:
        """Serialize schema creation between processes (PostgreSQL overrides)."""

    @staticmethod
    def _executemany(conn: Connection, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
        """Execute ``statement`` once per row, compiled once and sent straight to the
        driver: SQLAlchemy's per-row parameter processing dominates bulk writes
        otherwise. Only for statements whose parameters need no type processing
        (plain ints, floats, strings, booleans, None)."""
        translate = conn.get_execution_options().get("schema_translate_map")
        compiled = statement.compile(
            dialect=conn.dialect,
            schema_translate_map=translate,
            render_schema_translate=bool(translate),
        )
        fixed = compiled.params
        if compiled.positiontup is not None:
            order = compiled.positiontup
            parameters: list[Any] = [
                tuple(row[name] if name in row else fixed[name] for name in order) for row in rows
            ]
        else:
            parameters = [{**fixed, **row} for row in rows]
        for start in range(0, len(parameters), _WRITE_CHUNK):
            conn.exec_driver_sql(compiled.string, parameters[start : start + _WRITE_CHUNK])

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    # -- runs ---------------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        model: str,
        config: str,
        config_fingerprint: str,
        source_identity: str | None,
        source_checkpoint: str | None,
        now: float,
    ) -> RunRecord:
        with self._write() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run_id,
                    status=RunStatus.RUNNING.value,
                    control_state=RunControlState.RUNNING.value,
                    model=model,
                    config=config,
                    config_fingerprint=config_fingerprint,
                    source_identity=source_identity,
                    source_checkpoint=source_checkpoint,
                    ingest_complete=False,
                    item_count=0,
                    next_segment=0,
                    next_batch_number=1,
                    next_sequence=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            return self._run_by_id(conn, run_id)  # type: ignore[return-value]

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._read() as conn:
            return self._run_by_id(conn, run_id)

    def list_runs(self, *, active_only: bool = False) -> list[RunRecord]:
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.run_pk.desc())
        if active_only:
            query = query.where(runs.c.status == RunStatus.RUNNING.value)
        with self._read() as conn:
            return [_run_record(row) for row in conn.execute(query)]

    @staticmethod
    def _run_by_id(conn: Connection, run_id: str) -> RunRecord | None:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
        return None if row is None else _run_record(row)

    def try_acquire_lease(
        self, run_pk: int, owner: str, *, now: float, ttl: float, steal_from: str | None = None
    ) -> bool:
        """Take or renew the run's lease (compare-and-set). ``steal_from`` names a
        holder known to be dead, whose lease is taken even before it expires."""
        conditions = [
            runs.c.lease_owner.is_(None),
            runs.c.lease_owner == owner,
            runs.c.lease_expires_at < now,
        ]
        if steal_from is not None:
            conditions.append(runs.c.lease_owner == steal_from)
        with self._write() as conn:
            result = conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk, or_(*conditions))
                .values(lease_owner=owner, lease_expires_at=now + ttl)
            )
            return bool(result.rowcount == 1)

    def release_lease(self, run_pk: int, owner: str) -> None:
        with self._write() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk, runs.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    def set_control_state(
        self, run_pk: int, state: RunControlState, reason: str | None, *, now: float
    ) -> None:
        with self._write() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk)
                .values(control_state=state.value, control_reason=reason, updated_at=now)
            )

    def update_run(self, run_pk: int, *, now: float, **values: Any) -> None:
        """Set plain run fields (``last_error``, ``next_submit_at``,
        ``raw_outputs_exported_at``)."""
        allowed = {"last_error", "next_submit_at", "raw_outputs_exported_at"}
        if not set(values) <= allowed:
            raise ValueError(f"update_run cannot set {sorted(set(values) - allowed)}")
        with self._write() as conn:
            conn.execute(
                update(runs).where(runs.c.run_pk == run_pk).values(updated_at=now, **values)
            )

    # -- ingestion ----------------------------------------------------------------------

    def find_item_ids(self, run_pk: int, item_ids: Sequence[str]) -> dict[str, int]:
        """Which of ``item_ids`` the run already has, with their item indexes."""
        found: dict[str, int] = {}
        with self._read() as conn:
            for start in range(0, len(item_ids), _IN_CHUNK):
                chunk = item_ids[start : start + _IN_CHUNK]
                rows = conn.execute(
                    select(items.c.item_id, items.c.item_index).where(
                        items.c.run_pk == run_pk, items.c.item_id.in_(chunk)
                    )
                )
                found.update({row.item_id: row.item_index for row in rows})
        return found

    def item_metadata(self, run_pk: int, item_index: int) -> str | None:
        with self._read() as conn:
            value: str | None = conn.execute(
                select(items.c.metadata).where(
                    items.c.run_pk == run_pk, items.c.item_index == item_index
                )
            ).scalar()
            return value

    def store_ingested_slice(
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
        that repeats a stored id raises :class:`ItemKeyConflictError` and stores
        nothing."""
        rows = [
            {
                "run_pk": run_pk,
                "item_index": item.item_index,
                "item_id": item.item_id,
                "status": ItemStatus.PENDING.value,
                "attempts": 0,
                "segment": item.segment,
                "request_offset": item.request_offset,
                "request_length": item.request_length,
                "estimated_tokens": item.estimated_tokens,
                "metadata": item.metadata_json,
            }
            for item in new_items
        ]
        try:
            self._insert_slice(run_pk, rows, checkpoint, segment_used, now)
        except IntegrityError as exc:
            raise ItemKeyConflictError(
                f"a slice of run #{run_pk} repeats an item id or index already stored"
            ) from exc

    def _insert_slice(
        self,
        run_pk: int,
        rows: list[dict[str, Any]],
        checkpoint: str | None,
        segment_used: bool,
        now: float,
    ) -> None:
        with self._write() as conn:
            if rows:
                self._executemany(
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

    def mark_ingest_complete(self, run_pk: int, *, now: float) -> None:
        with self._write() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk)
                .values(ingest_complete=True, updated_at=now)
            )

    # -- planning -----------------------------------------------------------------------

    def reserve_batch(
        self,
        run_pk: int,
        run_id: str,
        *,
        model: str,
        max_requests: int,
        max_bytes: int,
        token_budget: int | None,
        max_batch_tokens: int | None,
        oversize_message: str,
        now: float,
    ) -> BatchRecord | None:
        """Claim the next pending items into a new batch within every limit.

        Runs as one transaction holding the model's budget lock, so concurrent
        workers never together enqueue more than ``token_budget`` tokens for the
        model. Items that could never fit any batch fail here with
        ``oversize_message``. Returns ``None`` when nothing can be submitted now.
        """
        with self._write() as conn:
            free_tokens: int | None = None
            max_item_tokens = max_batch_tokens
            if token_budget is not None:
                self._lock_model_budget(conn, model)
                enqueued = conn.execute(
                    select(func.coalesce(func.sum(batches.c.estimated_tokens), 0)).where(
                        batches.c.model == model,
                        _batch_holds_budget(),
                    )
                ).scalar_one()
                free_tokens = token_budget - int(enqueued)
                max_item_tokens = min(token_budget, max_batch_tokens or token_budget)
            limits = BatchLimits(
                max_requests=max_requests,
                max_bytes=max_bytes,
                max_tokens=None
                if free_tokens is None
                else min(free_tokens, max_batch_tokens or free_tokens),
                max_item_tokens=max_item_tokens,
            )
            ready = _ready_items(run_pk, now)
            candidates = conn.execute(
                select(items.c.item_index, items.c.estimated_tokens, items.c.request_length)
                .where(ready)
                .order_by(items.c.item_index)
                .limit(max_requests + 1_000)
            )
            plan = pack_batch(
                (PendingRequest(row[0], row[1], row[2]) for row in candidates), limits
            )
            if plan.oversized:
                self._fail_items(
                    conn, run_pk, plan.oversized, "request_too_large", oversize_message
                )
            if plan.request_count == 0 or plan.last_index is None:
                return None
            return self._claim_batch(conn, run_pk, run_id, model, plan, ready, now)

    def _lock_model_budget(self, conn: Connection, model: str) -> None:
        conn.execute(self._insert(model_budgets).values(model=model).on_conflict_do_nothing())
        conn.execute(
            select(model_budgets.c.model).where(model_budgets.c.model == model).with_for_update()
        )

    def _claim_batch(
        self,
        conn: Connection,
        run_pk: int,
        run_id: str,
        model: str,
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
                state=BatchState.PLANNED.value,
                request_count=plan.request_count,
                estimated_tokens=plan.estimated_tokens,
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
        return self._batch(conn, batch_pk)

    def batch_request_spans(self, batch_pk: int) -> Iterator[tuple[int, int, int]]:
        """(segment, offset, length) of each request line of a batch, in item order."""
        with self._read() as conn:
            rows = conn.execute(
                select(items.c.segment, items.c.request_offset, items.c.request_length)
                .where(items.c.batch_pk == batch_pk)
                .order_by(items.c.item_index)
            )
            for row in rows:
                yield row[0], row[1], row[2]

    # -- batches ------------------------------------------------------------------------

    def active_batches(self, run_pk: int) -> list[BatchRecord]:
        with self._read() as conn:
            rows = conn.execute(
                select(batches)
                .where(
                    batches.c.run_pk == run_pk,
                    _batch_holds_budget(),
                )
                .order_by(batches.c.batch_number)
            )
            return [_batch_record(row) for row in rows]

    def list_batches(self, run_pk: int) -> list[BatchRecord]:
        with self._read() as conn:
            rows = conn.execute(
                select(batches).where(batches.c.run_pk == run_pk).order_by(batches.c.batch_number)
            )
            return [_batch_record(row) for row in rows]

    def _batch(self, conn: Connection, batch_pk: int) -> BatchRecord:
        row = conn.execute(select(batches).where(batches.c.batch_pk == batch_pk)).one()
        return _batch_record(row)

    def update_batch(
        self, batch_pk: int, *, state: BatchState | None = None, **values: Any
    ) -> None:
        """Record a batch's progress (file id, provider id, provider status, ...)."""
        if state is not None:
            values["state"] = state.value
        with self._write() as conn:
            conn.execute(update(batches).where(batches.c.batch_pk == batch_pk).values(**values))

    def mark_batch_submitted(
        self, batch_pk: int, provider_batch_id: str | None, *, now: float
    ) -> None:
        """The provider accepted (or, with no id, rejected) the batch: count the attempt."""
        with self._write() as conn:
            conn.execute(
                update(batches)
                .where(batches.c.batch_pk == batch_pk)
                .values(
                    state=BatchState.IN_FLIGHT.value,
                    provider_batch_id=provider_batch_id,
                    submitted_at=now,
                )
            )
            conn.execute(
                update(items)
                .where(items.c.batch_pk == batch_pk)
                .values(attempts=items.c.attempts + 1)
            )

    def release_batch(self, batch_pk: int, error: str, *, now: float) -> None:
        """The batch was never created: its items go back to pending, attempts unchanged."""
        with self._write() as conn:
            conn.execute(
                update(items)
                .where(items.c.batch_pk == batch_pk)
                .values(status=ItemStatus.PENDING.value, batch_pk=None)
            )
            conn.execute(
                update(batches)
                .where(batches.c.batch_pk == batch_pk)
                .values(state=BatchState.RELEASED.value, error=error, finished_at=now)
            )

    def record_batch_results(
        self,
        batch: BatchRecord,
        outcomes: Iterable[RequestOutcome],
        *,
        leftover: RequestOutcome,
        leftover_counts_attempt: bool,
        retry: RetrySchedule,
        provider_status: str,
        now: float,
    ) -> None:
        """Record every outcome of a finished batch, in one transaction.

        Items of the batch that no outcome mentions get ``leftover`` (for example
        ``batch_expired``); when ``leftover_counts_attempt`` is false their
        attempt is given back (the batch never ran them through no fault of
        theirs). Retryable failures with attempts left go back to pending after
        a backoff; the rest become terminal and get the next sequence numbers.
        The batch is marked collected, which frees its token budget.
        """
        with self._write() as conn:
            chunk: list[dict[str, Any]] = []
            for outcome in outcomes:
                chunk.append(_outcome_params(outcome))
                if len(chunk) >= _WRITE_CHUNK:
                    self._apply_outcomes(conn, batch, chunk, retry, now)
                    chunk = []
            if chunk:
                self._apply_outcomes(conn, batch, chunk, retry, now)
            if not leftover_counts_attempt:
                conn.execute(
                    update(items)
                    .where(
                        items.c.batch_pk == batch.batch_pk,
                        items.c.status == ItemStatus.SUBMITTED.value,
                    )
                    .values(attempts=items.c.attempts - 1)
                )
            self._apply_leftover(conn, batch, leftover, retry, now)
            self._assign_sequences(conn, batch.run_pk, items.c.batch_pk == batch.batch_pk)
            conn.execute(
                update(items)
                .where(
                    items.c.batch_pk == batch.batch_pk,
                    items.c.status == ItemStatus.PENDING.value,
                )
                .values(batch_pk=None)
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

    def _apply_outcomes(
        self,
        conn: Connection,
        batch: BatchRecord,
        params: list[dict[str, Any]],
        retry: RetrySchedule,
        now: float,
    ) -> None:
        """Record a chunk of outcomes. Successes, nearly always the bulk, take a
        plain statement; failures the one that decides retry or give up."""
        succeeded = [row for row in params if not row["b_failed"]]
        failed = [row for row in params if row["b_failed"]]
        same_batch_item = (
            items.c.run_pk == batch.run_pk,
            items.c.item_id == bindparam("b_custom_id"),
            items.c.batch_pk == batch.batch_pk,
            items.c.status == ItemStatus.SUBMITTED.value,
        )
        if succeeded:
            self._executemany(
                conn,
                update(items)
                .where(*same_batch_item)
                .values(
                    status=ItemStatus.COMPLETED.value,
                    output_text=bindparam("b_output_text"),
                    error_code=None,
                    error_message=None,
                    error_retryable=None,
                    not_before=None,
                    input_tokens=func.coalesce(items.c.input_tokens, 0)
                    + bindparam("b_input_tokens"),
                    output_tokens=func.coalesce(items.c.output_tokens, 0)
                    + bindparam("b_output_tokens"),
                ),
                [{key: row[key] for key in _SUCCESS_PARAMS} for row in succeeded],
            )
        if failed:
            self._executemany(
                conn,
                update(items).where(*same_batch_item).values(_outcome_values(retry, now)),
                failed,
            )

    def _apply_leftover(
        self,
        conn: Connection,
        batch: BatchRecord,
        outcome: RequestOutcome,
        retry: RetrySchedule,
        now: float,
    ) -> None:
        conn.execute(
            update(items)
            .where(
                items.c.batch_pk == batch.batch_pk,
                items.c.status == ItemStatus.SUBMITTED.value,
            )
            .values(_outcome_values(retry, now)),
            {key: value for key, value in _outcome_params(outcome).items() if key != "b_custom_id"},
        )

    def _assign_sequences(self, conn: Connection, run_pk: int, scope: Any) -> int:
        """Number newly terminal items of ``scope`` after the run's last sequence,
        in item order, gap-free."""
        base = conn.execute(
            select(runs.c.next_sequence).where(runs.c.run_pk == run_pk).with_for_update()
        ).scalar_one()
        numbered = (
            select(
                items.c.item_index.label("idx"),
                (literal(base - 1) + func.row_number().over(order_by=items.c.item_index)).label(
                    "seq"
                ),
            )
            .where(
                items.c.run_pk == run_pk,
                scope,
                items.c.status.in_([ItemStatus.COMPLETED.value, ItemStatus.FAILED.value]),
                items.c.sequence.is_(None),
            )
            .subquery()
        )
        count = conn.execute(
            update(items)
            .where(items.c.run_pk == run_pk, items.c.item_index == numbered.c.idx)
            .values(sequence=numbered.c.seq)
        ).rowcount
        if count:
            conn.execute(
                update(runs).where(runs.c.run_pk == run_pk).values(next_sequence=base + count)
            )
        return int(count)

    def _fail_items(
        self, conn: Connection, run_pk: int, indexes: Sequence[int], code: str, message: str
    ) -> None:
        for start in range(0, len(indexes), _IN_CHUNK):
            conn.execute(
                update(items)
                .where(
                    items.c.run_pk == run_pk,
                    items.c.item_index.in_(indexes[start : start + _IN_CHUNK]),
                )
                .values(
                    status=ItemStatus.FAILED.value,
                    error_code=code,
                    error_message=message,
                    error_retryable=False,
                    batch_pk=None,
                )
            )
        self._assign_sequences(conn, run_pk, items.c.item_index.in_(indexes))

    def fail_unfinished_items(self, run_pk: int, code: str, message: str, *, now: float) -> None:
        """Fail every pending item terminally (cancellation) and number them."""
        with self._write() as conn:
            conn.execute(
                update(items)
                .where(items.c.run_pk == run_pk, items.c.status == ItemStatus.PENDING.value)
                .values(
                    status=ItemStatus.FAILED.value,
                    error_code=code,
                    error_message=message,
                    error_retryable=False,
                    not_before=None,
                )
            )
            self._assign_sequences(conn, run_pk, items.c.error_code == code)

    def finish_run(self, run_pk: int, status: RunStatus, *, now: float) -> None:
        with self._write() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk, runs.c.status == RunStatus.RUNNING.value)
                .values(status=status.value, finished_at=now, updated_at=now)
            )

    # -- reading ------------------------------------------------------------------------

    def run_counts(self, run_pk: int) -> RunCounts:
        with self._read() as conn:
            by_status: dict[str, int] = {}
            input_tokens = output_tokens = estimated = 0
            rows = conn.execute(
                select(
                    items.c.status,
                    func.count(),
                    func.coalesce(func.sum(items.c.input_tokens), 0),
                    func.coalesce(func.sum(items.c.output_tokens), 0),
                    func.coalesce(func.sum(items.c.estimated_tokens), 0),
                )
                .where(items.c.run_pk == run_pk)
                .group_by(items.c.status)
            )
            for status, count, tokens_in, tokens_out, tokens_estimated in rows:
                by_status[status] = int(count)
                input_tokens += int(tokens_in)
                output_tokens += int(tokens_out)
                estimated += int(tokens_estimated)
            batch_rows = conn.execute(
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
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            estimated_input_tokens=estimated,
            batches_total=int(batch_rows[0]),
            batches_in_flight=int(batch_rows[1]),
        )

    def read_terminal_items(
        self, run_pk: int, *, after_sequence: int, limit: int | None
    ) -> list[StoredItem]:
        query = (
            select(*_ITEM_COLUMNS)
            .where(items.c.run_pk == run_pk, items.c.sequence > after_sequence)
            .order_by(items.c.sequence)
        )
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_stored_item(row) for row in conn.execute(query)]

    def iter_terminal_items(self, run_pk: int, *, after_sequence: int = 0) -> Iterator[StoredItem]:
        """All terminal items in sequence order, read in bounded pages."""
        cursor = after_sequence
        while True:
            page = self.read_terminal_items(run_pk, after_sequence=cursor, limit=_WRITE_CHUNK)
            yield from page
            if len(page) < _WRITE_CHUNK:
                return
            cursor = page[-1].sequence or cursor

    # -- workers ------------------------------------------------------------------------

    def claim_runs(
        self,
        owner: str,
        *,
        now: float,
        ttl: float,
        limit: int,
        after_run_pk: int = 0,
        steal_from: Iterable[str] = (),
    ) -> list[RunRecord]:
        """Lease to ``owner`` up to ``limit`` runs that need driving, the first ones in
        ``run_pk`` order after ``after_run_pk``, and return them.

        A run needs driving when it is running, fully ingested and not paused with
        nothing in flight (see :meth:`count_runs_to_drive`). It is claimable when its
        lease is free, expired, already ``owner``'s, or held by one of ``steal_from``
        (holders known to be dead). The lease is the one :meth:`try_acquire_lease`
        takes, so ``owner``'s driver renews it and releases it after its step. On
        PostgreSQL the candidates are locked ``FOR UPDATE SKIP LOCKED``: workers
        claiming at the same moment get disjoint runs instead of queueing behind each
        other's transactions (SQLite serializes writers instead).
        """
        lease_free = [
            runs.c.lease_owner.is_(None),
            runs.c.lease_owner == owner,
            runs.c.lease_expires_at < now,
        ]
        dead_owners = sorted(set(steal_from))
        if dead_owners:
            lease_free.append(runs.c.lease_owner.in_(dead_owners))
        with self._write() as conn:
            run_pks = list(
                conn.execute(
                    select(runs.c.run_pk)
                    .where(self._needs_driving(), runs.c.run_pk > after_run_pk, or_(*lease_free))
                    .order_by(runs.c.run_pk)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=runs)
                ).scalars()
            )
            if not run_pks:
                return []
            conn.execute(
                update(runs)
                .where(runs.c.run_pk.in_(run_pks))
                .values(lease_owner=owner, lease_expires_at=now + ttl)
            )
            rows = conn.execute(
                select(runs).where(runs.c.run_pk.in_(run_pks)).order_by(runs.c.run_pk)
            )
            return [_run_record(row) for row in rows]

    def count_runs_to_drive(self) -> int:
        """How many runs still need a driver: running, fully ingested, and not paused
        with nothing in flight (a paused run whose batches are all collected waits for
        ``resume()``; one whose items are all terminal still needs its final step)."""
        with self._read() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(runs).where(self._needs_driving())
                ).scalar_one()
            )

    def run_lease_owners(self) -> set[str]:
        """The owners currently holding leases on running runs (live or not)."""
        with self._read() as conn:
            rows = conn.execute(
                select(runs.c.lease_owner)
                .where(runs.c.status == RunStatus.RUNNING.value, runs.c.lease_owner.is_not(None))
                .distinct()
            )
            return {row[0] for row in rows}

    @staticmethod
    def _needs_driving() -> Any:
        in_flight = (
            select(batches.c.batch_pk)
            .where(
                batches.c.run_pk == runs.c.run_pk,
                _batch_holds_budget(),
            )
            .exists()
        )
        pending = (
            select(items.c.item_index)
            .where(items.c.run_pk == runs.c.run_pk, items.c.status == ItemStatus.PENDING.value)
            .exists()
        )
        return and_(
            runs.c.status == RunStatus.RUNNING.value,
            runs.c.ingest_complete.is_(True),
            or_(runs.c.control_state != RunControlState.PAUSED.value, in_flight, ~pending),
        )


def _batch_holds_budget() -> Any:
    """A batch in one of the states that still count against the token budget."""
    return batches.c.state.in_([state.value for state in ACTIVE_BATCH_STATES])


def _ready_items(run_pk: int, now: float) -> Any:
    return and_(
        items.c.run_pk == run_pk,
        items.c.status == ItemStatus.PENDING.value,
        or_(items.c.not_before.is_(None), items.c.not_before <= now),
    )


_SUCCESS_PARAMS = ("b_custom_id", "b_output_text", "b_input_tokens", "b_output_tokens")


def _outcome_params(outcome: RequestOutcome) -> dict[str, Any]:
    return {
        "b_custom_id": outcome.custom_id,
        "b_failed": not outcome.succeeded,
        "b_retryable": outcome.retryable,
        "b_output_text": outcome.output_text,
        "b_error_code": outcome.error_code,
        "b_error_message": outcome.error_message,
        "b_input_tokens": outcome.input_tokens or 0,
        "b_output_tokens": outcome.output_tokens or 0,
    }


def _outcome_values(retry: RetrySchedule, now: float) -> dict[str, Any]:
    """SET clause of an outcome: completed, back to pending, or failed for good."""
    retry_again = and_(
        bindparam("b_failed"), bindparam("b_retryable"), items.c.attempts < retry.max_attempts
    )
    backoff = case(
        *[
            (items.c.attempts == attempt, now + delay)
            for attempt, delay in enumerate(retry.backoff_seconds, 1)
        ],
        else_=now + retry.backoff_seconds[-1],
    )
    return {
        "status": case(
            (retry_again, ItemStatus.PENDING.value),
            (bindparam("b_failed"), ItemStatus.FAILED.value),
            else_=ItemStatus.COMPLETED.value,
        ),
        "not_before": case((retry_again, backoff), else_=None),
        "output_text": bindparam("b_output_text"),
        "error_code": bindparam("b_error_code"),
        "error_message": bindparam("b_error_message"),
        "error_retryable": case((bindparam("b_failed"), bindparam("b_retryable")), else_=None),
        "input_tokens": func.coalesce(items.c.input_tokens, 0) + bindparam("b_input_tokens"),
        "output_tokens": func.coalesce(items.c.output_tokens, 0) + bindparam("b_output_tokens"),
    }


def _from_row(record_type: Any, row: Any, **converted: Any) -> Any:
    """A record dataclass from a result row: same-named columns, plus ``converted``."""
    mapping = row._mapping
    return record_type(
        **{
            name: converted[name] if name in converted else mapping[name]
            for name in record_type.__dataclass_fields__
        }
    )


def _run_record(row: Any) -> RunRecord:
    result: RunRecord = _from_row(
        RunRecord,
        row,
        status=RunStatus(row.status),
        control_state=RunControlState(row.control_state),
        ingest_complete=bool(row.ingest_complete),
    )
    return result


def _batch_record(row: Any) -> BatchRecord:
    result: BatchRecord = _from_row(BatchRecord, row, state=BatchState(row.state))
    return result


def _stored_item(row: Any) -> StoredItem:
    # _ITEM_COLUMNS are selected in StoredItem's field order: build it positionally,
    # this runs once per result read.
    return StoredItem(row[0], row[1], ItemStatus(row[2]), *row[3:])


def dumps_json(value: Any) -> str:
    """Canonical JSON text as stored (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


__all__ = [
    "ACTIVE_BATCH_STATES",
    "BatchRecord",
    "BatchState",
    "NewItem",
    "RetrySchedule",
    "RunCounts",
    "RunRecord",
    "Storage",
    "StoredItem",
    "dumps_json",
]
