"""The one schema, shared by SQLite, in-memory SQLite and PostgreSQL, and its
forward migrations.

Times are epoch seconds (floats). JSON columns hold text. Item request lines
live in request artifacts; an item row keeps where its line is (segment,
offset, length) plus its state and, once terminal, its result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    literal,
    text,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import DDLElement
from sqlalchemy.sql.compiler import DDLCompiler

SCHEMA_VERSION = 2

metadata = MetaData()

meta = Table(
    "batchor_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_pk", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(128), nullable=False, unique=True),
    Column("status", String(32), nullable=False),
    Column("control_state", String(32), nullable=False),
    Column("control_reason", Text),
    Column("provider", String(32)),
    Column("model", String(200), nullable=False),
    Column("config", Text, nullable=False),
    Column("config_fingerprint", String(64), nullable=False),
    Column("source_identity", Text),
    Column("source_checkpoint", Text),
    Column("ingest_complete", Boolean, nullable=False, default=False),
    Column("item_count", BigInteger, nullable=False, default=0),
    Column("next_segment", Integer, nullable=False, default=0),
    Column("next_batch_number", Integer, nullable=False, default=1),
    Column("next_sequence", BigInteger, nullable=False, default=1),
    Column("next_submit_at", Float),
    Column("cost_limit_usd", Float),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", Float),
    Column("last_error", Text),
    Column("raw_outputs_exported_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
)

items = Table(
    "items",
    metadata,
    Column("run_pk", Integer, ForeignKey("runs.run_pk"), primary_key=True),
    Column("item_index", BigInteger, primary_key=True, autoincrement=False),
    Column("item_id", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("resubmissions", Integer, nullable=False, default=0, server_default="0"),
    Column("not_before", Float),
    Column("batch_pk", Integer),
    Column("segment", Integer, nullable=False),
    Column("request_offset", BigInteger, nullable=False),
    Column("request_length", Integer, nullable=False),
    Column("estimated_tokens", Integer, nullable=False),
    Column("metadata", Text),
    Column("sequence", BigInteger),
    Column("output_text", Text),
    Column("error_code", String(100)),
    Column("error_message", Text),
    Column("error_retryable", Boolean),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("cached_input_tokens", BigInteger),
    Column("reasoning_tokens", BigInteger),
    Index("ix_items_run_item_id", "run_pk", "item_id", unique=True),
    # Partial indexes: an item is in each only while it is in that state, so a
    # finished run's items cost one index entry besides their id's.
    Index(
        "ix_items_pending",
        "run_pk",
        "item_index",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "ix_items_submitted",
        "batch_pk",
        "item_index",
        sqlite_where=text("status = 'submitted'"),
        postgresql_where=text("status = 'submitted'"),
    ),
    Index(
        "ix_items_sequence",
        "run_pk",
        "sequence",
        sqlite_where=text("sequence IS NOT NULL"),
        postgresql_where=text("sequence IS NOT NULL"),
    ),
    sqlite_with_rowid=False,  # rows live in the primary key's tree: one copy, not two
)

batches = Table(
    "batches",
    metadata,
    Column("batch_pk", Integer, primary_key=True, autoincrement=True),
    Column("run_pk", Integer, ForeignKey("runs.run_pk"), nullable=False),
    Column("batch_number", Integer, nullable=False),
    Column("local_key", String(200), nullable=False, unique=True),
    Column("model", String(200), nullable=False),
    Column("budget_scope", String(400)),
    Column("state", String(16), nullable=False),
    Column("provider_batch_id", String(200)),
    Column("input_file_id", String(200)),
    Column("provider_status", String(32)),
    Column("request_count", Integer, nullable=False),
    Column("estimated_tokens", BigInteger, nullable=False),
    Column("budget_units", BigInteger, nullable=False, default=0, server_default="0"),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("submitted_at", Float),
    Column("finished_at", Float),
    Column("output_artifact", Text),
    Column("error_artifact", Text),
    Column("error", Text),
    Column("pending_cleanup", Text),
    Index("ix_batches_run_state", "run_pk", "state"),
    Index("ix_batches_scope_state", "budget_scope", "state"),
)

budget_locks = Table(
    "budget_locks",
    metadata,
    Column("scope", String(400), primary_key=True),
)
"""One row per budget scope, locked while a batch is reserved against its budget."""

learned_limits = Table(
    "learned_limits",
    metadata,
    Column("scope", String(400), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("reason", Text),
    Column("learned_at", Float, nullable=False),
)
"""Limits a provider's refusals taught, per budget scope (provider, host, model)."""


# -- forward migrations -------------------------------------------------------------------


class AddColumn(DDLElement):
    """``ALTER TABLE ... ADD COLUMN ...``, for a column of the current schema."""

    inherit_cache = False

    def __init__(self, target: Table, name: str) -> None:
        self.table_ = target
        self.column = target.c[name]


@compiles(AddColumn)
def _add_column_sql(element: AddColumn, compiler: DDLCompiler, **kw: Any) -> str:
    """A column added to a table that has rows needs a server default if NOT NULL."""
    spec = compiler.get_column_specification(element.column)
    return f"ALTER TABLE {compiler.preparer.format_table(element.table_)} ADD COLUMN {spec}"


def _to_version_2(conn: Connection) -> None:
    """Several providers, resubmissions, cached/reasoning tokens, per-scope budgets,
    learned limits, cost limits."""
    for target, name in (
        (runs, "provider"),
        (runs, "cost_limit_usd"),
        (items, "resubmissions"),
        (items, "cached_input_tokens"),
        (items, "reasoning_tokens"),
        (batches, "budget_scope"),
        (batches, "budget_units"),
        (batches, "pending_cleanup"),
    ):
        conn.execute(AddColumn(target, name))
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None)
    for old in ("ix_items_run_status", "ix_items_batch", "ix_items_run_sequence"):
        name = f'"{schema}".{old}' if schema else old
        conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    for index in items.indexes:
        if index.name != "ix_items_run_item_id":
            index.create(conn)
    conn.execute(update(runs).values(provider="openai"))
    conn.execute(
        update(batches).values(
            budget_scope=literal("openai:default:") + batches.c.model,
            budget_units=batches.c.estimated_tokens,
        )
    )


MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _to_version_2}
"""``version -> step``: the step that takes a database from ``version - 1`` to
``version``. New tables are created by ``create_all`` after the steps have run."""
