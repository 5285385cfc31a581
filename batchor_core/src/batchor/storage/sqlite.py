"""SQLite storage: a durable file (WAL) or an ephemeral in-memory database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.pool import StaticPool

from batchor.errors import ConfigurationError, StorageError
from batchor.storage.base import Storage


def batchor_home() -> Path:
    """``$BATCHOR_HOME``, by default ``~/.batchor``."""
    return Path(os.environ.get("BATCHOR_HOME") or "~/.batchor").expanduser()


def _begin_immediately_for_writes(engine: Any, *, journal_mode: str | None = None) -> None:
    """Let SQLAlchemy, not pysqlite, issue BEGIN: IMMEDIATE for writes, so two
    processes never deadlock upgrading a read lock, DEFERRED for reads."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if journal_mode is not None:
            cursor.execute(f"PRAGMA journal_mode = {journal_mode}")
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("batchor_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class SQLiteStorage(Storage):
    """Runs in a SQLite file: ``SQLiteStorage(name="default")`` is
    ``$BATCHOR_HOME/default.sqlite3``; ``SQLiteStorage(path=...)`` any file.

    Its artifacts default to ``<name>.artifacts/`` beside the database file.
    """

    def __init__(
        self, name: str | None = None, *, path: str | os.PathLike[str] | None = None
    ) -> None:
        if (name is None) == (path is None):
            if name is None:
                name = "default"
            else:
                raise ConfigurationError("SQLiteStorage takes name= or path=, not both")
        if path is None:
            assert name is not None
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ConfigurationError(
                    f"SQLiteStorage name {name!r} must be letters, digits, '-' or '_'; "
                    "use path= for a file elsewhere"
                )
            path = batchor_home() / f"{name}.sqlite3"
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the directory of the SQLite database {self.path}: {exc}"
            ) from None
        engine = create_engine(f"sqlite+pysqlite:///{self.path}", paramstyle="named")
        _begin_immediately_for_writes(engine, journal_mode="WAL")
        super().__init__(engine, description=f"SQLite database {self.path}")

    def default_artifact_root(self) -> str:
        return str(self.path.with_suffix(".artifacts"))


class MemoryStorage(Storage):
    """An in-memory SQLite database: fast and gone with the process (tests, experiments)."""

    def __init__(self) -> None:
        engine = create_engine(
            "sqlite+pysqlite://",
            paramstyle="named",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
        _begin_immediately_for_writes(engine)
        super().__init__(engine, description="in-memory SQLite database", serialize=True)
