"""Storage from one string: what the CLI's ``--storage`` and the Dagster resource's
``storage`` setting accept."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from batchor.errors import ConfigurationError
from batchor.storage.base import Storage
from batchor.storage.postgres import PostgresStorage
from batchor.storage.sqlite import SQLiteStorage

STORAGE_URL_FORMS = "sqlite:///PATH or postgresql+psycopg://USER@HOST/DATABASE"


def parse_storage_url(location: str) -> URL:
    """The parsed storage URL, or a
    :class:`~batchor.ConfigurationError` saying which forms work. Messages never
    repeat the URL itself, which may hold a password."""
    text = location.strip()
    if not text:
        raise ConfigurationError(f"the storage location is empty; expected {STORAGE_URL_FORMS}")
    if "://" not in text and ":" not in text.partition("/")[0]:
        return URL.create("sqlite", database=text)  # a plain file path
    try:
        parsed = make_url(text)
    except ArgumentError:
        raise ConfigurationError(f"not a storage URL; expected {STORAGE_URL_FORMS}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError(
                "an in-memory SQLite database does not outlive this process; give a file: "
                "sqlite:///PATH (relative) or sqlite:////PATH (absolute)"
            )
        return parsed
    if backend == "postgresql":
        if not parsed.database:
            raise ConfigurationError("the PostgreSQL URL names no database (.../DATABASE)")
        return parsed
    raise ConfigurationError(
        f"unsupported storage scheme {parsed.drivername!r}; expected {STORAGE_URL_FORMS}"
    )


def is_postgres_location(location: str) -> bool:
    """Whether ``location`` names a PostgreSQL database (which needs an explicit
    artifact store every worker can reach)."""
    return parse_storage_url(location).get_backend_name() == "postgresql"


def open_storage(location: str | None) -> Storage:
    """The storage ``location`` names; ``None`` is the default SQLite file
    ``$BATCHOR_HOME/default.sqlite3``. PostgreSQL URLs may carry ``?schema=NAME``
    (default ``batchor``)."""
    if location is None:
        return SQLiteStorage(name="default")
    parsed = parse_storage_url(location)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        return SQLiteStorage(path=parsed.database)
    schema = parsed.query.get("schema", "batchor")
    if not isinstance(schema, str):
        raise ConfigurationError("give ?schema= at most once in the storage URL")
    dsn = parsed.difference_update_query(["schema"]).render_as_string(hide_password=False)
    try:
        return PostgresStorage(dsn, schema=schema)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"PostgreSQL storage needs a driver ({exc.name} is not installed): "
            "pip install 'batchor-core[postgres]'"
        ) from None
