"""SQLite storage: a durable file (WAL) or an ephemeral in-memory database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

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


def _read_only_mode(path: Path) -> str | None:
    """SQLite URI parameters to open an existing database this process may not write
    (``mode=ro``, plus ``immutable=1`` when not even its -shm file can be made), or
    None to open it as usual.

    In WAL mode SQLite keeps ``-wal`` and ``-shm`` files beside the database, so a
    read-only directory would make even reading fail.
    """
    if not path.is_file() or (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return None
    if os.access(path.parent, os.W_OK):
        return "mode=ro"
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        return "mode=ro"  # the WAL holds commits: read it (SQLite 3.22+ can, read-only)
    return "mode=ro&immutable=1"


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
        description = f"SQLite database {self.path}"
        read_only = _read_only_mode(self.path)
        if read_only is None:
            engine = create_engine(f"sqlite+pysqlite:///{self.path}", paramstyle="named")
            _begin_immediately_for_writes(engine, journal_mode="WAL")
        else:
            # readable, not writable: reads work; any write fails naming the file
            engine = create_engine(
                f"sqlite+pysqlite:///file:{quote(str(self.path))}?{read_only}&uri=true",
                paramstyle="named",
            )
            _begin_immediately_for_writes(engine)
            description += " (read-only: this process may not write it or its directory)"
        super().__init__(engine, description=description)

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
