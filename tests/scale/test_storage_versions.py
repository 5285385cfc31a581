"""The schema is created on first open, recorded with its version, reopened as it is,
and refused when a newer batchor wrote it; on PostgreSQL several processes may
open a fresh schema at once."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import select, update

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    LocalArtifactStore,
    OpenAIProviderConfig,
    PostgresStorage,
    PromptParts,
    SQLiteStorage,
    Storage,
    StorageError,
)
from batchor.storage import schema
from batchor.testing import LocalBatchServer

Opener = Callable[[], Storage]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the same database again each time it is called."""
    if request.param == "sqlite":
        path = tmp_path / "runs.sqlite3"
        return lambda: SQLiteStorage(path=path)
    first: PostgresStorage = request.getfixturevalue("postgres_storage")
    dsn = first.engine.url.render_as_string(hide_password=False)
    return lambda: PostgresStorage(dsn, schema=first.schema)


def version_rows(storage: Storage) -> list[tuple[str, str]]:
    with storage.engine.connect() as conn:
        return [(row.key, row.value) for row in conn.execute(select(schema.meta))]


def test_reopening_keeps_the_runs_and_one_version_row(reopen: Opener, tmp_path: Path) -> None:
    storage = reopen()
    job = BatchJob(
        items=[BatchItem(item_id="a", payload="x")],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=OpenAIProviderConfig(model="gpt-4.1-mini", api_key="sk-unused"),
    )
    run_id = BatchRunner(storage, LocalArtifactStore(tmp_path / "artifacts")).start(job).run_id
    storage.dispose()

    again = reopen()

    assert version_rows(again) == [("schema_version", str(schema.SCHEMA_VERSION))]
    record = again.runs.get(run_id)
    assert record is not None and record.item_count == 1


def test_a_database_written_by_a_newer_batchor_is_refused(reopen: Opener) -> None:
    storage = reopen()
    with storage.engine.begin() as conn:
        conn.execute(
            update(schema.meta)
            .where(schema.meta.c.key == "schema_version")
            .values(value=str(schema.SCHEMA_VERSION + 1))
        )
    storage.dispose()

    with pytest.raises(StorageError, match=f"schema version {schema.SCHEMA_VERSION + 1}, newer"):
        reopen()


@pytest.mark.postgres
def test_many_processes_may_open_a_fresh_postgres_schema_at_once(
    postgres_storage: PostgresStorage,
) -> None:
    dsn = postgres_storage.engine.url.render_as_string(hide_password=False)
    fresh = f"test_{uuid.uuid4().hex[:12]}"
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            opened = list(pool.map(lambda _: PostgresStorage(dsn, schema=fresh), range(6)))
        assert all(version_rows(storage) == version_rows(opened[0]) for storage in opened)
        assert version_rows(opened[0]) == [("schema_version", str(schema.SCHEMA_VERSION))]
        for storage in opened:
            storage.dispose()
    finally:
        engine = sqlalchemy.create_engine(dsn)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE'))
        engine.dispose()


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_version_1_database_migrates_forward_and_its_runs_go_on(
    tmp_path: Path, server: LocalBatchServer
) -> None:
    """A SQLite database and artifacts written by batchor with schema version 1 (a
    finished run, and one whose items were never submitted) still serve both."""
    database = tmp_path / "runs.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.executescript((FIXTURES / "schema_v1" / "runs.sql").read_text())
    shutil.copytree(FIXTURES / "schema_v1" / "artifacts", tmp_path / "artifacts")

    storage = SQLiteStorage(path=database)
    runner = BatchRunner(
        storage,
        LocalArtifactStore(tmp_path / "artifacts"),
        api_key="sk-migrated",
        base_url=server.base_url,
    )
    finished = runner.get_run("finished_v1").results()
    pending = runner.get_run("pending_v1").wait(timeout=60)

    assert version_rows(storage) == [("schema_version", str(schema.SCHEMA_VERSION))]
    assert [(result.item_id, result.metadata) for result in finished] == [
        (f"d{n}", {"n": n}) for n in range(4)
    ]
    assert all(result.output_text and result.attempts == 1 for result in finished)
    assert pending.completed_items == 3 and pending.provider == "openai"
