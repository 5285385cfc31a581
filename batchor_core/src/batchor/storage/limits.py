"""Learned limits: what a provider's refusals taught about a budget scope, shared by
every run and worker on the storage."""

from __future__ import annotations

from sqlalchemy import select, update

from batchor.storage.database import Database
from batchor.storage.schema import learned_limits


class LimitStore:
    """Limits by budget scope (provider, host, model) and kind (see
    :class:`~batchor.errors.RefusalKind`)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def get(self, scope: str) -> dict[str, int]:
        """``kind -> value`` of every limit learned for ``scope``."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(learned_limits.c.kind, learned_limits.c.value).where(
                    learned_limits.c.scope == scope
                )
            )
            return {row[0]: int(row[1]) for row in rows}

    def learn(self, scope: str, kind: str, value: int, reason: str, *, now: float) -> None:
        """Record (or lower) the limit ``kind`` of ``scope``: a limit only ever
        tightens here, so two workers learning at once keep the smaller value."""
        with self._db.write() as conn:
            conn.execute(
                self._db.insert(learned_limits)
                .values(scope=scope, kind=kind, value=value, reason=reason, learned_at=now)
                .on_conflict_do_nothing()
            )
            conn.execute(
                update(learned_limits)
                .where(
                    learned_limits.c.scope == scope,
                    learned_limits.c.kind == kind,
                    learned_limits.c.value > value,
                )
                .values(value=value, reason=reason, learned_at=now)
            )
