"""Operating runs from the shell: ``start --wait`` and ``wait`` exit codes, ``status``,
``runs``, ``results``, ``export``, ``pause``/``resume``/``cancel``, ``artifacts``.

``batchor`` takes over a second to start, so the module arranges its runs once and
then runs every independent command (or chain of dependent commands) at the same
time; each test checks one outcome.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_kit import (
    TEST_API_KEY,
    Cli,
    Outcome,
    deterministic_environment,
    run_chains,
    tickets,
    write_csv,
    write_jsonl,
)

from batchor import BatchRunner, SQLiteStorage
from batchor.testing import BatchPace, LocalBatchServer

REFUSED_API_KEY = "sk-wrong-key-that-must-never-be-printed-4242"
START = ("--id-column", "id", "--prompt-template", "Triage: {text}", "--model", "gpt-4.1")


@dataclass(frozen=True)
class Runs:
    """The module's runs, all in one SQLite storage named by ``$BATCHOR_STORAGE``.

    ``started`` holds each ``batchor start``, by run id:

    * ``composite``: ``a.csv`` + ``b.jsonl`` (both with ids 1 and 2), ``--wait --json``;
      the server refuses the request of ``b.jsonl``'s item 2;
    * ``running``: 5 tickets, never driven, so still running;
    * ``slow``: 5 tickets, ``--wait --timeout 1`` at a server that keeps batches in
      progress for an hour, so one batch stays in flight;
    * ``refused``: ``--wait`` with a key the server rejects.

    ``then`` holds what the commands run afterwards printed, by chain name.
    """

    directory: Path
    started: dict[str, Outcome]
    then: dict[str, list[Outcome]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    directory = tmp_path_factory.mktemp("runs")
    write_csv(directory / "tickets.csv", tickets(5))
    write_csv(directory / "a.csv", [{"id": 1, "text": "from a"}, {"id": 2, "text": "also a"}])
    write_jsonl(directory / "b.jsonl", [{"id": 1, "text": "from b"}, {"id": 2, "text": "also b"}])
    (directory / "appended.jsonl").write_text('{"earlier": "line"}\n')
    with (
        LocalBatchServer() as server,
        LocalBatchServer(pace=BatchPace(in_progress=3600)) as slow_server,
        LocalBatchServer(api_key="sk-the-only-accepted-key") as locked_server,
    ):
        server.faults.fail_requests(
            ["1-b:2"], status_code=400, code="invalid_request_error", times=None
        )
        cli = Cli(
            directory,
            deterministic_environment(
                OPENAI_BASE_URL=server.base_url,
                OPENAI_API_KEY=TEST_API_KEY,
                BATCHOR_HOME=str(directory / "home"),
                BATCHOR_STORAGE="sqlite:///runs.sqlite3",
            ),
        )
        started = run_chains(
            {
                "composite": [(cli, ["start", "a.csv", "b.jsonl", *START, "--run-id",
                                     "composite", "--wait", "--json"])],
                "running": [(cli, ["start", "tickets.csv", *START, "--run-id", "running"])],
                "slow": [(cli.with_env(OPENAI_BASE_URL=slow_server.base_url),
                          ["start", "tickets.csv", *START, "--run-id", "slow", "--wait",
                           "--timeout", "1", "--poll-interval", "0.1"])],
                "refused": [(cli.with_env(OPENAI_BASE_URL=locked_server.base_url,
                                          OPENAI_API_KEY=REFUSED_API_KEY),
                             ["start", "tickets.csv", *START, "--run-id", "refused",
                              "--wait"])],
            }
        )  # fmt: skip
        then = run_chains(
            {
                "status": [(cli, ["status", "composite"])],
                "runs": [(cli, ["runs"])],
                "export": [(cli, ["export", "composite", "-o", "appended.jsonl",
                                  "--after-sequence", "1", "--limit", "2", "--append"])],
                "pause, resume": [(cli, ["pause", "running", "--json"]),
                                  (cli, ["resume", "running", "--json"])],
                "cancel remote, wait": [(cli, ["cancel", "slow", "--remote", "--json"]),
                                        (cli, ["wait", "slow", "--json",
                                               "--poll-interval", "0.1"])],
                "export, prune": [(cli, ["artifacts", "export", "composite", "exported",
                                         "--json"]),
                                  (cli, ["artifacts", "prune", "composite"])],
            }
        )  # fmt: skip
        yield Runs(directory, {name: chain[0] for name, chain in started.items()}, then)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- start --wait and wait ------------------------------------------------------------------


def test_start_wait_exits_1_when_items_failed_and_prints_the_summary(runs: Runs) -> None:
    outcome = runs.started["composite"]

    assert outcome.code == 1, outcome
    summary = outcome.json()
    assert (summary["run_id"], summary["status"]) == ("composite", "completed_with_failures")
    assert (summary["completed_items"], summary["failed_items"]) == (3, 1)


def test_start_without_wait_prints_only_the_run_id(runs: Runs) -> None:
    outcome = runs.started["running"]

    assert outcome.code == 0, outcome
    assert outcome.stdout == "running\n"
    assert "running: 5 items stored; batchor wait running runs it" in outcome.stderr


def test_wait_reports_progress_on_stderr_when_stdout_is_json(runs: Runs) -> None:
    progress = runs.started["composite"].stderr.splitlines()

    assert any(
        "] composite completed_with_failures: 4/4 items terminal (3 completed, 1 failed), "
        "0 batches in flight, tokens " in line
        for line in progress
    ), progress


def test_wait_timeout_exits_3_and_says_how_to_keep_waiting(runs: Runs) -> None:
    outcome = runs.started["slow"]

    assert outcome.code == 3, outcome
    assert outcome.error_lines == [
        "Error: run 'slow' is still running after 1 s (0/5 items terminal); "
        "it goes on: wait again (batchor wait slow) to keep waiting"
    ]


def test_a_provider_refusal_is_one_line_that_never_shows_the_key(runs: Runs) -> None:
    outcome = runs.started["refused"]

    assert outcome.code == 4, outcome
    [line] = outcome.error_lines
    assert "the provider refused run 'refused'" in line
    assert "Traceback" not in outcome.stderr
    assert REFUSED_API_KEY not in outcome.stdout + outcome.stderr


# -- status, runs, results, export ----------------------------------------------------------


def test_status_shows_the_run_summary(runs: Runs) -> None:
    [outcome] = runs.then["status"]

    assert outcome.code == 0, outcome
    lines = outcome.stdout.splitlines()
    assert lines[:3] == [
        "run       composite",
        "status    completed_with_failures",
        "model     gpt-4.1",
    ]
    assert "items     4/4 terminal: 3 completed, 1 failed, 0 pending, 0 submitted" in lines
    assert "batches   0 in flight, 1 total" in lines


def test_runs_lists_every_run_with_status_and_counts(runs: Runs) -> None:
    [outcome] = runs.then["runs"]

    assert outcome.code == 0, outcome
    header, *rows = outcome.stdout.splitlines()
    assert header.split() == [
        "RUN", "ID", "STATUS", "PROVIDER", "MODEL", "ITEMS", "FAILED", "IN", "FLIGHT", "CREATED"
    ]  # fmt: skip
    by_id = {row.split()[0]: row.split() for row in rows}
    assert set(by_id) == {"composite", "running", "slow", "refused"}
    assert by_id["composite"][1:6] == [
        "completed_with_failures", "openai", "gpt-4.1", "4/4", "1"
    ]  # fmt: skip
    assert by_id["running"][4:6] == ["0/5", "0"]


def test_export_appends_the_results_after_a_cursor(runs: Runs) -> None:
    [outcome] = runs.then["export"]

    assert outcome.code == 0, outcome
    assert outcome.stdout == (
        f"wrote 2 results to {runs.directory / 'appended.jsonl'}; next_after_sequence=3\n"
    )
    appended = read_jsonl(runs.directory / "appended.jsonl")
    assert appended[0] == {"earlier": "line"}
    assert [row["sequence"] for row in appended[1:]] == [2, 3]


def test_several_inputs_become_one_run_with_ids_namespaced_per_file(runs: Runs) -> None:
    storage = SQLiteStorage(path=runs.directory / "runs.sqlite3")
    results = BatchRunner(storage=storage).get_run("composite").results()

    by_id = {result.item_id: result for result in results}
    assert sorted(by_id) == ["0-a:1", "0-a:2", "1-b:1", "1-b:2"]
    assert "from b" in str(by_id["1-b:1"].output_text)
    assert by_id["1-b:2"].error is not None
    assert by_id["1-b:2"].error.code == "invalid_request_error"
    lineage = by_id["1-b:2"].metadata["batchor_lineage"]
    assert (lineage["source_namespace"], lineage["source_primary_key"]) == ("1-b", "2")


# -- control --------------------------------------------------------------------------------


def test_pause_then_resume_sets_and_clears_the_control_state(runs: Runs) -> None:
    paused, resumed = runs.then["pause, resume"]

    assert paused.code == 0, paused
    assert (paused.json()["status"], paused.json()["control_state"]) == ("running", "paused")
    assert resumed.code == 0, resumed
    assert resumed.json()["control_state"] == "running"


def test_cancel_remote_stops_batches_in_flight_and_wait_exits_1(runs: Runs) -> None:
    cancelled, waited = runs.then["cancel remote, wait"]

    assert cancelled.code == 0, cancelled
    assert cancelled.json()["control_state"] == "cancel_requested"
    assert waited.code == 1, waited
    summary = waited.json()
    assert summary["status"] == "cancelled"
    assert (summary["failed_items"], summary["batches_in_flight"]) == (5, 0)


# -- artifacts ------------------------------------------------------------------------------


def test_artifacts_export_writes_a_manifest_and_prune_removes_them(runs: Runs) -> None:
    exported, pruned = runs.then["export, prune"]

    assert exported.code == 0, exported
    manifest_path = Path(exported.json()["manifest_path"])
    assert manifest_path == runs.directory / "exported" / "composite" / "manifest.json"
    files = json.loads(manifest_path.read_text())["files"]
    assert "results.jsonl" in [entry["path"] for entry in files]
    for entry in files:
        content = (manifest_path.parent / entry["path"]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
    assert pruned.code == 0, pruned
    assert pruned.stdout.startswith("removed ")
    assert pruned.stdout.rstrip().endswith("kept 0")
