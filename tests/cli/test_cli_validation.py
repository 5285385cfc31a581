"""Option and input checks, run in-process through ``batchor.cli.main`` (the function
the executable calls), where a subprocess per case would cost a second each.
The executable's own usage errors are in ``test_cli_usage_errors``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_kit import Invoke, tickets, write_csv, write_parquet

from batchor.cli.inputs import template_fields
from batchor.cli.settings import load_env_file

PROMPT = ("--prompt-column", "text", "--model", "gpt-4.1")


USAGE_ERRORS: dict[str, tuple[list[str], str]] = {
    "both prompt options": (
        ["start", "tickets.csv", "--id-column", "id", "--prompt-template", "{text}", *PROMPT],
        "Error: Invalid value for '--prompt-column' / '--prompt-template': give exactly one "
        "of --prompt-column COLUMN or --prompt-template TEXT (see 'batchor start --help')",
    ),
    "neither prompt option": (
        ["start", "tickets.csv", "--id-column", "id", "--model", "gpt-4.1"],
        "Error: Invalid value for '--prompt-column' / '--prompt-template': give exactly one "
        "of --prompt-column COLUMN or --prompt-template TEXT (see 'batchor start --help')",
    ),
    "positional template field": (
        ["start", "tickets.csv", "--id-column", "id", "--prompt-template", "Say {}",
         "--model", "gpt-4.1"],
        "Error: Invalid value for '--prompt-template': {} is positional; name a column "
        "instead, e.g. {text} (see 'batchor start --help')",
    ),
    "missing template field in a JSONL input": (
        ["start", "tickets.jsonl", "--id-column", "id", "--prompt-template", "Say {body}",
         "--model", "gpt-4.1"],
        "Error: Invalid value for '--prompt-template': tickets.jsonl has no column 'body' "
        "(its columns: 'id', 'text', 'priority') (see 'batchor start --help')",
    ),
    "missing prompt column in a Parquet schema": (
        ["start", "tickets.parquet", "--id-column", "id", "--prompt-column", "body",
         "--model", "gpt-4.1"],
        "Error: Invalid value for '--prompt-column': tickets.parquet has no column 'body' "
        "(its columns: 'id', 'text', 'priority') (see 'batchor start --help')",
    ),
    "missing column in the second of several inputs": (
        ["start", "tickets.csv", "other.csv", "--id-column", "id", *PROMPT],
        "Error: Invalid value for '--prompt-column': other.csv has no column 'text' "
        "(its columns: 'id', 'body') (see 'batchor start --help')",
    ),
    "unknown input format": (
        ["start", "notes.txt", "--id-column", "id", *PROMPT],
        "Error: Invalid value for 'INPUT': notes.txt: unknown input format '.txt'; use "
        "one of .csv, .jsonl, .ndjson, .parquet, .pq (see 'batchor start --help')",
    ),
    "input file that does not exist": (
        ["start", "missing.csv", "--id-column", "id", *PROMPT],
        "Error: Invalid value for 'INPUT': file 'missing.csv' does not exist. "
        "(see 'batchor start --help')",
    ),
    "JSONL input whose first line is not an object": (
        ["start", "list.jsonl", "--id-column", "id", *PROMPT],
        "Error: Invalid value for 'INPUT': list.jsonl, line 1: expected a JSON object, "
        "got list (see 'batchor start --help')",
    ),
    "structured output that is not MODULE:CLASS": (
        ["start", "tickets.csv", "--id-column", "id", *PROMPT, "--structured-output", "Triage"],
        "Error: Invalid value for '--structured-output': 'Triage' is not MODULE:CLASS, e.g. "
        "myproject.models:Ticket (see 'batchor start --help')",
    ),
    "timeout without wait": (
        ["start", "tickets.csv", "--id-column", "id", *PROMPT, "--timeout", "5"],
        "Error: Invalid value for '--timeout': --timeout needs --wait (see 'batchor start --help')",
    ),
    "bad run id": (
        ["start", "tickets.csv", "--id-column", "id", *PROMPT, "--run-id", "../escape"],
        "Error: run_id '../escape' must be 1-128 characters of letters, digits, '_', '.', '-' "
        "starting with a letter or digit",
    ),
    "in-memory SQLite storage": (
        ["runs", "--storage", "sqlite://"],
        "Error: Invalid value for '--storage' / $BATCHOR_STORAGE: an in-memory SQLite database "
        "does not outlive this process; give a file: sqlite:///PATH (relative) or "
        "sqlite:////PATH (absolute) (see 'batchor runs --help')",
    ),
    "PostgreSQL storage without an artifact directory": (
        ["runs", "--storage", "postgresql+psycopg://batchor@db.invalid/runs"],
        "Error: Invalid value for '--artifacts' / $BATCHOR_ARTIFACTS: PostgreSQL storage needs "
        "an artifact directory that outlives this command: pass --artifacts DIR or set "
        "$BATCHOR_ARTIFACTS (see 'batchor runs --help')",
    ),
    "missing required option": (
        ["start", "tickets.csv", "--id-column", "id", "--prompt-column", "text"],
        "Error: Missing option '--model'. (see 'batchor start --help')",
    ),
    "unknown command": (
        ["stats"],
        "Error: No such command 'stats'. Did you mean 'status', 'start'? (see 'batchor --help')",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_error_is_exit_2_and_one_line(case: str, invoke: Invoke, tmp_path: Path) -> None:
    arguments, message = USAGE_ERRORS[case]
    write_csv(tmp_path / "other.csv", [{"id": 1, "body": "x"}])
    (tmp_path / "notes.txt").write_text("id,text\n1,hello\n")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    write_parquet(tmp_path / "tickets.parquet", tickets(3))

    code, stdout, stderr = invoke(*arguments)

    assert (code, stdout) == (2, "")
    assert stderr.splitlines() == [message]


def test_a_storage_url_from_the_environment_is_checked_too(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHOR_STORAGE", "mysql://db/runs")

    code, _, stderr = invoke("runs")

    assert code == 2
    assert stderr.splitlines() == [
        "Error: Invalid value for '--storage' / $BATCHOR_STORAGE: unsupported storage scheme "
        "'mysql'; expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DATABASE "
        "(see 'batchor runs --help')"
    ]


def test_start_without_an_api_key_says_where_to_set_it(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")

    code, _, stderr = invoke("start", "tickets.csv", "--id-column", "id", *PROMPT)

    assert code == 2
    assert stderr.splitlines() == [
        "Error: no OpenAI API key: set OPENAI_API_KEY in the environment or in ./.env"
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["wait", "nope"],
        ["results", "nope", "-o", "out.jsonl"],
        ["export", "nope", "-o", "out.jsonl"],
        ["pause", "nope"],
        ["resume", "nope"],
        ["cancel", "nope"],
        ["artifacts", "export", "nope", "dir"],
        ["artifacts", "prune", "nope"],
    ],
)
def test_every_run_command_reports_an_unknown_run_id(command: list[str], invoke: Invoke) -> None:
    code, _, stderr = invoke(*command)

    assert code == 2
    [line] = stderr.splitlines()
    assert line.startswith("Error: no run 'nope' in SQLiteStorage(")
    assert line.endswith("; batchor runs lists the runs it has")


def test_no_arguments_prints_the_help(invoke: Invoke) -> None:
    code, stdout, _ = invoke()

    assert code == 0
    assert stdout.startswith("Usage: batchor [OPTIONS] COMMAND [ARGS]...")


def test_template_fields_are_the_columns_it_names_in_order() -> None:
    assert template_fields("{title}: {body!r} ({score:.2f}) {title} {meta[lang]}") == (
        "title",
        "body",
        "score",
        "meta",
    )
    assert template_fields("no fields, {{literal}} braces") == ()


def test_env_file_sets_what_the_environment_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CLI_TEST_PLAIN", "CLI_TEST_QUOTED", "CLI_TEST_EXPORTED", "CLI_TEST_KEPT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLI_TEST_KEPT", "from the environment")
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\n"
        "\n"
        "CLI_TEST_PLAIN=plain value # trailing comment\n"
        "CLI_TEST_QUOTED='quoted # not a comment'\n"
        'export CLI_TEST_EXPORTED="exported"\n'
        "CLI_TEST_KEPT=from the file\n"
        "not an assignment\n"
    )

    assigned = load_env_file(env_file)

    assert assigned == ["CLI_TEST_PLAIN", "CLI_TEST_QUOTED", "CLI_TEST_EXPORTED"]
    assert os.environ["CLI_TEST_PLAIN"] == "plain value"
    assert os.environ["CLI_TEST_QUOTED"] == "quoted # not a comment"
    assert os.environ["CLI_TEST_EXPORTED"] == "exported"
    assert os.environ["CLI_TEST_KEPT"] == "from the environment"
    assert load_env_file(tmp_path / "absent.env") == []
