"""PostgreSQL storage: the shared control plane for many workers."""

from __future__ import annotations

import re

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from batchor.errors import ConfigurationError
from batchor.storage.base import Storage

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresStorage(Storage):
    """Runs in a PostgreSQL database (psycopg 3), in their own ``schema``.

    ``dsn`` is a SQLAlchemy URL such as ``postgresql+psycopg://user@host/db``.
    """

    def __init__(self, dsn: str, *, schema: str = "batchor", pool_size: int = 5) -> None:
        url = make_url(dsn)
        if url.get_backend_name() != "postgresql":
            raise ConfigurationError(
                f"PostgresStorage needs a postgresql:// DSN, got {url.drivername!r}"
            )
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        if not _SCHEMA_NAME.match(schema):
            raise ConfigurationError(f"schema {schema!r} must be a lower-case SQL identifier")
        self.schema = schema
        engine = create_engine(url, pool_size=pool_size, pool_pre_ping=True).execution_options(
            schema_translate_map={None: schema}
        )
        description = (
            f"PostgreSQL database {url.render_as_string(hide_password=True)} (schema {schema})"
        )
        super().__init__(engine, description=description)

    def _lock_for_migration(self, conn: Connection) -> None:
        """One process at a time creates or migrates the schema (which may not exist yet)."""
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('batchor-schema'))"))
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
