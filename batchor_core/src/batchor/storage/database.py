"""The SQL executor every storage port shares: transactions, the schema and its
migrations, bulk writes, and the one place database errors become batchor's.

One :class:`Database` serves SQLite files, in-memory SQLite and PostgreSQL; the
public storage classes only build its SQLAlchemy engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from batchor.errors import StorageConflictError, StorageError
from batchor.storage import schema

WRITE_CHUNK = 5_000
"""Rows per ``executemany`` and per page of bulk reads."""
IN_CHUNK = 2_000
"""Values per ``IN (...)`` list."""


class Database:
    """A SQLAlchemy engine with batchor's schema on it.

    ``name`` says which database this is in messages (never with a password).
    ``serialize``: one connection shared by threads (in-memory SQLite) needs one
    transaction at a time. ``lock_for_migration`` serializes schema creation
    between processes (PostgreSQL takes an advisory lock).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        name: str,
        serialize: bool = False,
        lock_for_migration: Callable[[Connection], None] | None = None,
    ) -> None:
        self.engine = engine
        self.name = name
        self._lock: threading.RLock | None = threading.RLock() if serialize else None
        self._lock_for_migration = lock_for_migration
        self.is_postgres = engine.dialect.name == "postgresql"
        self._migrate()

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Connection]:
        """One transaction; any database error leaving it is a :class:`StorageError`
        naming this database (a unique-key collision a :class:`StorageConflictError`)."""
        if self._lock is not None:
            self._lock.acquire()
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(batchor_write=write)
                with conn.begin():
                    yield conn
        except IntegrityError as exc:
            raise StorageConflictError(f"{self.name}: {_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            reason = _reason(exc)
            raise StorageError(f"{self.name}: {reason}{_what_to_do(reason)}") from exc
        finally:
            if self._lock is not None:
                self._lock.release()

    def write(self) -> Any:
        """A write transaction (``with database.write() as conn:``)."""
        return self.transaction(write=True)

    def read(self) -> Any:
        """A read transaction."""
        return self.transaction(write=False)

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT (for ``on_conflict_do_nothing``)."""
        return (postgresql if self.is_postgres else sqlite).insert(table)

    @staticmethod
    def executemany(conn: Connection, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
        """Execute ``statement`` once per row, compiled once and sent straight to the
        driver: SQLAlchemy's per-row parameter processing dominates bulk writes
        otherwise. Only for statements whose parameters need no type processing
        (plain ints, floats, strings, booleans, None)."""
        if not rows:
            return
        translate = conn.get_execution_options().get("schema_translate_map")
        compiled = statement.compile(
            dialect=conn.dialect,
            schema_translate_map=translate,
            render_schema_translate=bool(translate),
        )
        fixed = compiled.params
        extra = {name: value for name, value in fixed.items() if name not in rows[0]}
        if compiled.positiontup is not None:
            order = compiled.positiontup
            parameters: Sequence[Any] = [
                tuple(row[name] if name in row else fixed[name] for name in order) for row in rows
            ]
        elif extra:
            parameters = [{**extra, **row} for row in rows]
        else:
            parameters = rows  # every parameter is in every row: sent as they are
        for start in range(0, len(parameters), WRITE_CHUNK):
            conn.exec_driver_sql(compiled.string, list(parameters[start : start + WRITE_CHUNK]))

    @staticmethod
    def fetch_rows(conn: Connection, statement: Any) -> list[Any]:
        """The rows of a SELECT as the driver returns them: no per-value type
        processing (booleans may come back as 0/1), for reads of many rows."""
        translate = conn.get_execution_options().get("schema_translate_map")
        compiled = statement.compile(
            dialect=conn.dialect,
            schema_translate_map=translate,
            render_schema_translate=bool(translate),
        )
        params = compiled.params
        if compiled.positiontup is not None:
            params = tuple(params[name] for name in compiled.positiontup)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.string, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def dispose(self) -> None:
        self.engine.dispose()

    def _migrate(self) -> None:
        """Create the schema, or check its version and migrate it forward.

        The version is read before anything is created, so a database written by
        a newer batchor is refused untouched; each migration step runs in the
        same transaction as the version update. A database already at this
        version is only read, so a read-only one can still be read.
        """
        with self.read() as conn:
            version = self._stored_version(conn)
            self._refuse_newer(version)
            if version == schema.SCHEMA_VERSION and self._has_every_table(conn):
                return
        with self.write() as conn:
            if self._lock_for_migration is not None:
                self._lock_for_migration(conn)
            version = self._stored_version(conn)
            self._refuse_newer(version)
            if version is not None:
                for step in range(version + 1, schema.SCHEMA_VERSION + 1):
                    schema.MIGRATIONS[step](conn)
            schema.metadata.create_all(conn, checkfirst=True)
            if version is None:
                conn.execute(
                    schema.meta.insert().values(
                        key="schema_version", value=str(schema.SCHEMA_VERSION)
                    )
                )
            elif version < schema.SCHEMA_VERSION:
                conn.execute(
                    update(schema.meta)
                    .where(schema.meta.c.key == "schema_version")
                    .values(value=str(schema.SCHEMA_VERSION))
                )

    def _refuse_newer(self, version: int | None) -> None:
        if version is not None and version > schema.SCHEMA_VERSION:
            raise StorageError(
                f"{self.name} has schema version {version}, newer than this batchor "
                f"({schema.SCHEMA_VERSION}); upgrade batchor-core"
            )

    @staticmethod
    def _has_every_table(conn: Connection) -> bool:
        translate = conn.get_execution_options().get("schema_translate_map") or {}
        present = set(inspect(conn).get_table_names(schema=translate.get(None)))
        return {table.name for table in schema.metadata.sorted_tables} <= present

    def _stored_version(self, conn: Connection) -> int | None:
        translate = conn.get_execution_options().get("schema_translate_map") or {}
        if not inspect(conn).has_table(schema.meta.name, schema=translate.get(None)):
            return None
        value = conn.execute(
            select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
        ).scalar()
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise StorageError(
                f"{self.name} records schema version {value!r}, which is not a number: it "
                "was not written by batchor, or is damaged"
            ) from None


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, first line only (SQLAlchemy's wrapper repeats the
    statement and its parameters, which may hold user data)."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_WHAT_TO_DO = (
    (
        "readonly database",
        "; it (or its directory) is read-only for this process, and batchor writes the "
        "database and, beside it, its -wal and -shm files: make both writable, or read a "
        "copy elsewhere",
    ),
    (
        "unable to open database file",
        "; check that the file's directory exists and that this process may read and write it",
    ),
    (
        "file is not a database",
        "; it is damaged or not a batchor database: restore it from a backup or point the "
        "storage at another file",
    ),
    (
        "malformed",
        "; it is damaged: restore it from a backup or point the storage at another file",
    ),
    (
        "database is locked",
        "; another process held it longer than the busy timeout (60 s): retry when it is done",
    ),
)


def _what_to_do(reason: str) -> str:
    """A hint for the database errors a user can act on (empty for the others)."""
    lowered = reason.lower()
    for marker, hint in _WHAT_TO_DO:
        if marker in lowered:
            return hint
    return ""
