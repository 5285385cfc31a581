"""Runs: creating and finding them, their lease, and what operators control.

Every method is one transaction; see :class:`~batchor.storage.database.Database`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, or_, select, update

from batchor.results import RunControlState, RunStatus
from batchor.storage.database import Database
from batchor.storage.records import NewRun, RunRecord
from batchor.storage.schema import runs


class RunStore:
    """The runs table: what the runner, a run handle and the driver ask of a run."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def create(self, run: NewRun, *, now: float) -> RunRecord:
        with self._db.write() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run.run_id,
                    status=RunStatus.RUNNING.value,
                    control_state=RunControlState.RUNNING.value,
                    provider=run.provider,
                    model=run.model,
                    config=run.config,
                    config_fingerprint=run.config_fingerprint,
                    source_identity=run.source_identity,
                    cost_limit_usd=run.cost_limit_usd,
                    ingest_complete=False,
                    item_count=0,
                    next_segment=0,
                    next_batch_number=1,
                    next_sequence=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            record = self._by_id(conn, run.run_id)
            assert record is not None
            return record

    def get(self, run_id: str) -> RunRecord | None:
        with self._db.read() as conn:
            return self._by_id(conn, run_id)

    def list_runs(self, *, active_only: bool = False) -> list[RunRecord]:
        """Every run, newest first (``active_only``: still running)."""
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.run_pk.desc())
        if active_only:
            query = query.where(runs.c.status == RunStatus.RUNNING.value)
        with self._db.read() as conn:
            return [run_record(row) for row in conn.execute(query)]

    @staticmethod
    def _by_id(conn: Connection, run_id: str) -> RunRecord | None:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
        return None if row is None else run_record(row)

    # -- the lease ----------------------------------------------------------------------

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
        with self._db.write() as conn:
            result = conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk, or_(*conditions))
                .values(lease_owner=owner, lease_expires_at=now + ttl)
            )
            return bool(result.rowcount == 1)

    def release_lease(self, run_pk: int, owner: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk, runs.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    # -- control and bookkeeping --------------------------------------------------------

    def set_control_state(
        self, run_pk: int, state: RunControlState, reason: str | None, *, now: float
    ) -> None:
        """What the operator asked (or the engine decided, e.g. a quota pause)."""
        self._set(run_pk, now, control_state=state.value, control_reason=reason)

    def resume(self, run_pk: int, *, now: float) -> None:
        """Running again, submitting at once."""
        self._set(
            run_pk,
            now,
            control_state=RunControlState.RUNNING.value,
            control_reason=None,
            next_submit_at=None,
        )

    def set_last_error(self, run_pk: int, message: str | None, *, now: float) -> None:
        """The last provider error a step met (None once the run moves again)."""
        self._set(run_pk, now, last_error=message)

    def hold_submissions_until(self, run_pk: int, when: float | None, *, now: float) -> None:
        """Submit no new batch before ``when`` (None: no hold)."""
        self._set(run_pk, now, next_submit_at=when)

    def set_cost_limit(self, run_pk: int, limit_usd: float | None, *, now: float) -> None:
        self._set(run_pk, now, cost_limit_usd=limit_usd)

    def mark_raw_outputs_exported(self, run_pk: int, *, now: float) -> None:
        self._set(run_pk, now, raw_outputs_exported_at=now)

    def mark_ingest_complete(self, run_pk: int, *, now: float) -> None:
        self._set(run_pk, now, ingest_complete=True)

    def finish(self, run_pk: int, status: RunStatus, *, now: float) -> None:
        """The run is terminal (only a running run can finish)."""
        with self._db.write() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_pk == run_pk, runs.c.status == RunStatus.RUNNING.value)
                .values(status=status.value, finished_at=now, updated_at=now)
            )

    def _set(self, run_pk: int, now: float, **values: Any) -> None:
        with self._db.write() as conn:
            conn.execute(
                update(runs).where(runs.c.run_pk == run_pk).values(updated_at=now, **values)
            )


def run_record(row: Any) -> RunRecord:
    """A :class:`RunRecord` from a row of ``runs``."""
    mapping = row._mapping
    return RunRecord(
        **{
            name: mapping[name]
            for name in RunRecord.__dataclass_fields__
            if name not in ("status", "control_state", "ingest_complete")
        },
        status=RunStatus(mapping["status"]),
        control_state=RunControlState(mapping["control_state"]),
        ingest_complete=bool(mapping["ingest_complete"]),
    )
