"""Durable run state: one schema and one code path for SQLite, memory and PostgreSQL."""

from batchor.storage.base import Storage
from batchor.storage.postgres import PostgresStorage
from batchor.storage.sqlite import MemoryStorage, SQLiteStorage

__all__ = ["MemoryStorage", "PostgresStorage", "SQLiteStorage", "Storage"]
