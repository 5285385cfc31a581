"""The ``cli`` fixture: ``batchor`` for one test, against its own local server."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_kit import TEST_API_KEY, Cli, deterministic_environment

from batchor.testing import LocalBatchServer


@pytest.fixture
def cli(server: LocalBatchServer, tmp_path: Path) -> Cli:
    """``batchor`` in ``tmp_path``, against the test's local server, with its own
    ``$BATCHOR_HOME`` (so the default SQLite storage is private to the test)."""
    return Cli(
        tmp_path,
        deterministic_environment(
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY=TEST_API_KEY,
            BATCHOR_HOME=str(tmp_path / "home"),
        ),
    )
