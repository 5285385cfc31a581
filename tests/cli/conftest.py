"""Fixtures: ``cli`` runs the installed executable for one test, against its own local
server; ``invoke`` runs ``batchor.cli.main`` in-process, for cases where a subprocess
per check would cost more than a second each."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cli_kit import (
    TEST_API_KEY,
    Cli,
    Invoke,
    deterministic_environment,
    tickets,
    write_csv,
    write_jsonl,
)

from batchor.cli import main
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


@pytest.fixture
def invoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Invoke:
    """``batchor ARGS`` in-process in ``tmp_path``: ``(exit code, stdout, stderr)``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    # no OPENAI_BASE_URL: it would win over the address stored with each run
    monkeypatch.setenv("COLUMNS", "100")
    write_csv(tmp_path / "tickets.csv", tickets(3))
    write_jsonl(tmp_path / "tickets.jsonl", tickets(3))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
