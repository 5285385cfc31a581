"""Usage errors of the installed executable: exit code 2 and one ``Error:`` line
naming what is wrong, before any run is created. The commands run concurrently once;
each case checks its outcome. More cases, in-process: ``test_cli_validation``."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_kit import (
    TEST_API_KEY,
    Cli,
    Outcome,
    deterministic_environment,
    run_concurrently,
    tickets,
    write_csv,
)

PROMPT = ("--prompt-column", "text", "--model", "gpt-4.1")

CASES: dict[str, tuple[list[str], list[str]]] = {
    # name: (arguments, fragments of the error line)
    "missing id column in a CSV header": (
        ["start", "tickets.csv", "--id-column", "key", *PROMPT],
        ["'--id-column'", "tickets.csv has no column 'key'", "'id', 'text', 'priority'"],
    ),
    "unknown run id": (
        ["status", "batchor_20260101T000000Z_00000000"],
        ["no run 'batchor_20260101T000000Z_00000000'", "batchor runs lists the runs"],
    ),
    "unsupported storage URL": (
        ["runs", "--storage", "mysql://user:hunter2@db/runs"],
        ["'--storage' / $BATCHOR_STORAGE", "unsupported storage scheme 'mysql'",
         "sqlite:///PATH or postgresql+psycopg://"],
    ),
    "unimportable structured-output class": (
        ["start", "tickets.csv", "--id-column", "id", *PROMPT, "--structured-output",
         "no_such_module:Triage"],
        ["cannot import the structured-output class 'no_such_module:Triage'",
         "No module named 'no_such_module'"],
    ),
}  # fmt: skip


START_HOME = "start-home"
"""``$BATCHOR_HOME`` of the ``start`` cases: no storage may be created there."""


@pytest.fixture(scope="module")
def usage_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("usage")


@pytest.fixture(scope="module")
def outcomes(usage_directory: Path) -> dict[str, Outcome]:
    directory = usage_directory
    rows = tickets(3)
    write_csv(directory / "tickets.csv", rows)
    cli = Cli(
        directory,
        deterministic_environment(
            OPENAI_BASE_URL="http://127.0.0.1:9/v1",
            OPENAI_API_KEY=TEST_API_KEY,
            BATCHOR_HOME=str(directory / "home"),
        ),
    )
    start_cli = cli.with_env(BATCHOR_HOME=str(directory / START_HOME))
    return run_concurrently(
        {
            name: (start_cli if arguments[0] == "start" else cli, arguments)
            for name, (arguments, _) in CASES.items()
        }
    )


@pytest.mark.parametrize("case", list(CASES))
def test_usage_error_exits_2_with_one_line_naming_the_problem(
    case: str, outcomes: dict[str, Outcome]
) -> None:
    outcome = outcomes[case]

    assert outcome.code == 2, outcome
    assert outcome.stdout == "", outcome
    [line] = outcome.stderr.splitlines()
    assert line.startswith("Error: "), outcome
    for fragment in CASES[case][1]:
        assert fragment in line, outcome


def test_a_storage_password_is_never_echoed(outcomes: dict[str, Outcome]) -> None:
    assert "hunter2" not in outcomes["unsupported storage URL"].stderr


def test_start_checks_its_options_before_creating_any_storage(
    outcomes: dict[str, Outcome], usage_directory: Path
) -> None:
    assert not (usage_directory / START_HOME).exists()
