"""Fixtures for the hardening tests: the installed ``batchor`` against the test's
local server, and a finished run to export from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tests.cli.cli_kit import TEST_API_KEY, Cli, Invoke, deterministic_environment

from batchor.cli import main
from batchor.testing import LocalBatchServer


@pytest.fixture
def cli(server: LocalBatchServer, tmp_path: Path) -> Cli:
    """``batchor`` in ``tmp_path``, against the test's local server, with its own
    ``$BATCHOR_HOME`` and ``$BATCHOR_STORAGE=sqlite:///runs.sqlite3``."""
    return Cli(
        tmp_path,
        deterministic_environment(
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY=TEST_API_KEY,
            BATCHOR_HOME=str(tmp_path / "home"),
            BATCHOR_STORAGE="sqlite:///runs.sqlite3",
        ),
    )


@pytest.fixture
def invoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Invoke:
    """``batchor ARGS`` in-process (``batchor.cli.main``) in ``tmp_path``:
    ``(exit code, stdout, stderr)``, for checks that need no process of their own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("COLUMNS", "100")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
