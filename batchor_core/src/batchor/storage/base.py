"""``Storage``: the handle on one database, and the ports the rest of batchor uses.

The engine never sees SQL or sessions. Each consumer gets one narrow port of
named operations, each one transaction, in bulk (no per-item round trips):

- :attr:`Storage.runs` (:class:`~batchor.storage.runs.RunStore`): runs, leases, control;
- :attr:`Storage.ingest` (:class:`~batchor.storage.ingest.IngestStore`): storing items;
- :attr:`Storage.batches` (:class:`~batchor.storage.batches.BatchStore`): planning,
  submission and collection of batches;
- :attr:`Storage.results` (:class:`~batchor.storage.results.ResultStore`): counts and
  terminal results;
- :attr:`Storage.claims` (:class:`~batchor.storage.claims.ClaimStore`): worker claims;
- :attr:`Storage.limits` (:class:`~batchor.storage.limits.LimitStore`): what the
  providers' refusals taught.

All of them run over one :class:`~batchor.storage.database.Database`, the same
code for SQLite, in-memory SQLite and PostgreSQL; the subclasses only build the
SQLAlchemy engine.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from batchor.storage.batches import BatchStore
from batchor.storage.claims import ClaimStore
from batchor.storage.database import Database
from batchor.storage.ingest import IngestStore
from batchor.storage.limits import LimitStore
from batchor.storage.results import ResultStore
from batchor.storage.runs import RunStore


class Storage:
    """Durable run state. Use :class:`SQLiteStorage`, ``"memory"`` or :class:`PostgresStorage`.

    ``description`` names the database in error messages (never with a password).
    """

    def __init__(self, engine: Engine, *, description: str, serialize: bool = False) -> None:
        self._database = Database(
            engine,
            name=description,
            serialize=serialize,
            lock_for_migration=self._lock_for_migration,
        )
        self.runs = RunStore(self._database)
        self.ingest = IngestStore(self._database)
        self.batches = BatchStore(self._database)
        self.results = ResultStore(self._database)
        self.claims = ClaimStore(self._database)
        self.limits = LimitStore(self._database)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for inspection and tests; batchor's own access goes
        through the ports)."""
        return self._database.engine

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url.render_as_string(hide_password=True)!r})"

    def default_artifact_root(self) -> str | None:
        """Where artifacts go when the runner is given no artifact store (None: a temp dir)."""
        return None

    def dispose(self) -> None:
        """Close the database connections."""
        self._database.dispose()

    def _lock_for_migration(self, conn: Connection) -> None:
        """Serialize schema creation between processes (PostgreSQL overrides)."""
