"""Shared fixtures: the local OpenAI-compatible server and every storage backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from batchor import (
    BatchRunner,
    LocalArtifactStore,
    MemoryStorage,
    OpenAIProviderConfig,
    PostgresStorage,
    SQLiteStorage,
    Storage,
)
from batchor.testing import LocalBatchServer

DEFAULT_POSTGRES_DSN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TEST_API_KEY = "sk-test-batchor-secret-0123456789"


def postgres_dsn() -> str:
    """The PostgreSQL server to test against, or a skip saying why there is none.

    With ``BATCHOR_TEST_POSTGRES_DSN`` set the server must be reachable (CI);
    without it a local default is tried and the tests skip if it is not there.
    """
    configured = os.environ.get("BATCHOR_TEST_POSTGRES_DSN")
    dsn = configured or DEFAULT_POSTGRES_DSN
    try:
        engine = sqlalchemy.create_engine(dsn, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        if configured:
            raise RuntimeError(
                f"BATCHOR_TEST_POSTGRES_DSN={configured} is unreachable: {exc}"
            ) from exc
        pytest.skip(f"no PostgreSQL server at {dsn} (set BATCHOR_TEST_POSTGRES_DSN): {exc}")
    return dsn


@pytest.fixture
def postgres_storage() -> Iterator[PostgresStorage]:
    """A PostgresStorage in a fresh schema, dropped afterwards."""
    dsn = postgres_dsn()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    storage = PostgresStorage(dsn, schema=schema)
    yield storage
    storage.dispose()
    engine = sqlalchemy.create_engine(dsn)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each storage backend in turn: the runtime behaves the same on all of them."""
    if request.param == "memory":
        return MemoryStorage()
    if request.param == "sqlite":
        return SQLiteStorage(path=tmp_path / "runs.sqlite3")
    result: Storage = request.getfixturevalue("postgres_storage")
    return result


@pytest.fixture
def server() -> Iterator[LocalBatchServer]:
    with LocalBatchServer() as running:
        yield running


@pytest.fixture
def artifact_root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def runner(storage: Storage, artifact_root: Path) -> BatchRunner:
    return BatchRunner(storage=storage, artifact_store=LocalArtifactStore(artifact_root))


@pytest.fixture
def provider_config(server: LocalBatchServer) -> OpenAIProviderConfig:
    return OpenAIProviderConfig(model="gpt-4.1", api_key=TEST_API_KEY, base_url=server.base_url)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep ``$BATCHOR_HOME`` (the default SQLite storage) inside the test's tmp dir."""
    home = tmp_path / "batchor-home"
    monkeypatch.setenv("BATCHOR_HOME", str(home))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return home
