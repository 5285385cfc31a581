"""Durable run state: one schema and one code path for SQLite, memory and PostgreSQL.

:class:`Storage` is the handle users pass to :class:`~batchor.BatchRunner`; the
rest of batchor reaches the database only through its ports (see
:mod:`batchor.storage.base`).
"""

from batchor.storage.base import Storage
from batchor.storage.postgres import PostgresStorage
from batchor.storage.sqlite import MemoryStorage, SQLiteStorage
from batchor.storage.urls import open_storage

__all__ = ["MemoryStorage", "PostgresStorage", "SQLiteStorage", "Storage", "open_storage"]
