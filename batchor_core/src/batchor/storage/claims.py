"""Worker claims: which runs need a driver, and leasing a few of them at a time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from batchor.results import ItemStatus, RunControlState, RunStatus
from batchor.storage.database import Database
from batchor.storage.records import ACTIVE_BATCH_STATES, RunRecord
from batchor.storage.runs import run_record
from batchor.storage.schema import batches, items, runs


class ClaimStore:
    """What :func:`~batchor.run_worker` asks of storage."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def claim(
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
        nothing in flight (see :meth:`count_to_drive`). It is claimable when its
        lease is free, expired, already ``owner``'s, or held by one of ``steal_from``
        (holders known to be dead). The lease is the one
        :meth:`~batchor.storage.runs.RunStore.try_acquire_lease` takes, so ``owner``'s
        driver renews it and releases it after its step. On PostgreSQL the candidates
        are locked ``FOR UPDATE SKIP LOCKED``: workers claiming at the same moment get
        disjoint runs instead of queueing behind each other's transactions (SQLite
        serializes writers instead).
        """
        lease_free = [
            runs.c.lease_owner.is_(None),
            runs.c.lease_owner == owner,
            runs.c.lease_expires_at < now,
        ]
        dead_owners = sorted(set(steal_from))
        if dead_owners:
            lease_free.append(runs.c.lease_owner.in_(dead_owners))
        with self._db.write() as conn:
            run_pks = list(
                conn.execute(
                    select(runs.c.run_pk)
                    .where(_needs_driving(), runs.c.run_pk > after_run_pk, or_(*lease_free))
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
            return [run_record(row) for row in rows]

    def count_to_drive(self) -> int:
        """How many runs still need a driver: running, fully ingested, and not paused
        with nothing in flight (a paused run whose batches are all collected waits for
        ``resume()``; one whose items are all terminal still needs its final step)."""
        with self._db.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(runs).where(_needs_driving())
                ).scalar_one()
            )

    def lease_owners(self) -> set[str]:
        """The owners currently holding leases on running runs (live or not)."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(runs.c.lease_owner)
                .where(runs.c.status == RunStatus.RUNNING.value, runs.c.lease_owner.is_not(None))
                .distinct()
            )
            return {row[0] for row in rows}


def _needs_driving() -> Any:
    in_flight = (
        select(batches.c.batch_pk)
        .where(
            batches.c.run_pk == runs.c.run_pk,
            batches.c.state.in_([state.value for state in ACTIVE_BATCH_STATES]),
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
