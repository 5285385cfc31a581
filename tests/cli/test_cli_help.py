"""``--help`` everywhere, and ``docs/cli.md`` showing exactly that help."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_docs import (
    DOC_PATH,
    HELP_COLUMNS,
    block_name,
    command_paths,
    documented_help,
    normalize,
    regenerate,
    render_help,
)
from cli_kit import Cli, deterministic_environment

DOCUMENTED_COMMANDS = {
    "batchor",
    "batchor start",
    "batchor status",
    "batchor runs",
    "batchor wait",
    "batchor results",
    "batchor export",
    "batchor pause",
    "batchor resume",
    "batchor cancel",
    "batchor artifacts",
    "batchor artifacts export",
    "batchor artifacts prune",
    "batchor emulator",
}


@pytest.fixture
def fixed_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", HELP_COLUMNS)


def test_every_command_has_a_help_block_in_the_cli_reference() -> None:
    documented = documented_help(DOC_PATH.read_text(encoding="utf-8"))

    assert set(documented) >= DOCUMENTED_COMMANDS
    assert {block_name(path) for path in command_paths()} == set(documented)


@pytest.mark.usefixtures("fixed_terminal")
def test_the_cli_reference_shows_the_current_help_of_every_command() -> None:
    current = DOC_PATH.read_text(encoding="utf-8")

    assert regenerate(current) == current, "docs/cli.md is stale: run python tests/cli/cli_docs.py"


@pytest.mark.usefixtures("fixed_terminal")
def test_help_names_usage_and_options_of_every_command() -> None:
    for path in command_paths():
        text = render_help(path)
        assert text.startswith(f"Usage: {block_name(path)} "), text
        assert "-h, --help" in text


def test_the_installed_executable_prints_the_documented_help(tmp_path: Path) -> None:
    cli = Cli(tmp_path, deterministic_environment())
    documented = documented_help(DOC_PATH.read_text(encoding="utf-8"))

    outcome = cli("start", "--help")

    assert outcome.code == 0, outcome
    assert normalize(outcome.stdout) == documented["batchor start"]
