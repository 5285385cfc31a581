"""Command behaviours checked in-process through ``batchor.cli.main`` (the function the
executable calls), on runs arranged with the Python API."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from cli_kit import TEST_API_KEY

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    OpenAIProviderConfig,
    PromptParts,
    Run,
    SQLiteStorage,
)
from batchor.testing import LocalBatchServer
from conftest import Invoke

STORAGE = ("--storage", "sqlite:///runs.sqlite3")


def start_run(server: LocalBatchServer, directory: Path, run_id: str, *, wait: bool) -> Run:
    runner = BatchRunner(storage=SQLiteStorage(path=directory / "runs.sqlite3"))
    job = BatchJob(
        items=[BatchItem(f"{run_id}-{number}", f"item {number}") for number in range(3)],
        build_prompt=lambda item: PromptParts(prompt=str(item.payload)),
        provider_config=OpenAIProviderConfig(
            model="gpt-4.1", api_key=TEST_API_KEY, base_url=server.base_url
        ),
    )
    return runner.run_and_wait(job, run_id=run_id) if wait else runner.start(job, run_id=run_id)


@pytest.fixture
def finished(server: LocalBatchServer, tmp_path: Path) -> Run:
    return start_run(server, tmp_path, "finished", wait=True)


@pytest.fixture
def pending(server: LocalBatchServer, tmp_path: Path) -> Run:
    return start_run(server, tmp_path, "pending", wait=False)


def test_status_refresh_advances_the_run_one_step(pending: Run, invoke: Invoke) -> None:
    code, stdout, _ = invoke("status", "pending", "--refresh", "--json", *STORAGE)

    assert code == 0
    assert '"batches_total": 1' in stdout


def test_runs_active_lists_only_runs_still_running(
    finished: Run, pending: Run, invoke: Invoke
) -> None:
    code, stdout, _ = invoke("runs", "--active", *STORAGE)

    assert code == 0
    assert [line.split()[0] for line in stdout.splitlines()[1:]] == ["pending"]


def test_runs_of_an_empty_storage_says_so(invoke: Invoke) -> None:
    code, stdout, stderr = invoke("runs", *STORAGE)

    assert (code, stdout) == (0, "")
    assert stderr == "no runs in this storage\n"


def test_a_parquet_export_cannot_append(finished: Run, invoke: Invoke) -> None:
    code, _, stderr = invoke("export", "finished", "-o", "page.parquet", "--append", *STORAGE)

    assert code == 2
    assert stderr == "Error: append=True is only supported for JSONL exports\n"


def test_results_needs_a_jsonl_or_parquet_file(finished: Run, invoke: Invoke) -> None:
    code, _, stderr = invoke("results", "finished", "-o", "results.csv", *STORAGE)

    assert code == 2
    assert stderr == (
        "Error: Invalid value for '--output': results.csv: write .jsonl or .parquet "
        "(by extension) (see 'batchor results --help')\n"
    )


def test_results_refuses_a_run_that_is_still_running(pending: Run, invoke: Invoke) -> None:
    code, stdout, stderr = invoke("results", "pending", "--output", "early.parquet", *STORAGE)

    assert (code, stdout) == (2, "")
    assert stderr == (
        "Error: results needs a finished run, and 'pending' is still running (0/3 items "
        "terminal): batchor wait pending first, or batchor export for what has finished so far\n"
    )
    assert not Path("early.parquet").exists()


def test_export_limit_stops_at_a_cursor_to_continue_from(finished: Run, invoke: Invoke) -> None:
    code, stdout, _ = invoke("export", "finished", "-o", "page.jsonl", "--limit", "2", *STORAGE)

    assert code == 0
    assert stdout.endswith("; next_after_sequence=2\n")
    assert len(Path("page.jsonl").read_text().splitlines()) == 2


def test_raw_outputs_cannot_be_pruned_before_they_are_exported(
    finished: Run, invoke: Invoke
) -> None:
    code, _, stderr = invoke("artifacts", "prune", "finished", *STORAGE)

    assert code == 2
    assert stderr == (
        "Error: the raw output files of run 'finished' must be exported before they are "
        "pruned: batchor artifacts export finished DIR first, or prune with --requests-only\n"
    )


def test_prune_requests_only_keeps_the_raw_outputs(finished: Run, invoke: Invoke) -> None:
    code, stdout, _ = invoke("artifacts", "prune", "finished", "--requests-only", *STORAGE)

    assert code == 0
    assert stdout.startswith("removed 1 artifact, kept ")
    assert not stdout.startswith("removed 1 artifact, kept 0")


def test_artifacts_of_a_running_run_cannot_be_exported(pending: Run, invoke: Invoke) -> None:
    code, _, stderr = invoke("artifacts", "export", "pending", "out", *STORAGE)

    assert code == 2
    assert stderr.startswith("Error: artifacts export needs a finished run, and 'pending'")


def test_control_of_a_finished_run_is_refused(finished: Run, invoke: Invoke) -> None:
    code, _, stderr = invoke("pause", "finished", *STORAGE)

    assert code == 2
    assert stderr == "Error: run 'finished' is already completed; cannot pause it\n"


def test_cancel_without_remote_leaves_provider_batches_alone(pending: Run, invoke: Invoke) -> None:
    code, stdout, _ = invoke("cancel", "pending", *STORAGE)

    assert code == 0
    assert stdout == "cancel requested for pending; batchor wait pending drains it\n"
    assert pending.summary().control_state.value == "cancel_requested"


def test_start_stores_the_job_its_options_describe(
    server: LocalBatchServer,
    invoke: Invoke,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)

    code, stdout, _ = invoke(
        "start", "tickets.csv", "--id-column", "id",
        "--prompt-template", "Ticket {id} (priority {priority}): {text}",
        "--system-prompt", "Answer in one word.",
        "--endpoint", "/v1/chat/completions", "--model", "gpt-4.1-mini",
        "--enqueued-token-limit", "5000", "--run-id", "described", *STORAGE,
    )  # fmt: skip

    assert (code, stdout) == (0, "described\n")
    run = BatchRunner(storage=SQLiteStorage(path=tmp_path / "runs.sqlite3")).get_run("described")
    provider = run.config.provider
    assert (provider.model, provider.endpoint) == ("gpt-4.1-mini", "/v1/chat/completions")
    assert provider.base_url == server.base_url
    assert provider.enqueue_limits is not None
    assert provider.enqueue_limits.enqueued_token_limit == 5000
    segment = tmp_path / "runs.artifacts" / "runs" / "described" / "requests" / "000000.jsonl.gz"
    lines = gzip.decompress(segment.read_bytes()).decode()
    first = json.loads(lines.splitlines()[0])
    assert first["custom_id"] == "t0"
    assert first["body"]["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Ticket t0 (priority 0): ticket 0 about billing"},
    ]
    assert TEST_API_KEY not in lines


def test_start_refuses_to_resume_with_another_prompt(
    server: LocalBatchServer, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    options = ("--id-column", "id", "--model", "gpt-4.1", "--run-id", "prompted", *STORAGE)
    assert invoke("start", "tickets.csv", "--prompt-template", "A: {text}", *options)[0] == 0

    code, _, stderr = invoke("start", "tickets.csv", "--prompt-template", "B: {text}", *options)

    assert code == 2
    assert stderr == (
        "Error: run 'prompted' was started with other options: --id-column, --prompt-column, "
        "--prompt-template and --system-prompt must be the same to resume it; or start a new "
        "run with another --run-id\n"
    )


def test_start_again_with_the_same_options_stores_nothing_twice(
    server: LocalBatchServer, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    arguments = ("start", "tickets.csv", "--id-column", "id", "--prompt-column", "text",
                 "--model", "gpt-4.1", "--run-id", "again", "--json", *STORAGE)  # fmt: skip
    first = invoke(*arguments)

    code, stdout, stderr = invoke(*arguments)

    assert (first[0], code) == (0, 0)
    assert json.loads(stdout)["total_items"] == 3
    assert "again: every item is already stored (3); nothing to ingest" in stderr


def test_worker_until_idle_drives_every_active_run(
    server: LocalBatchServer, tmp_path: Path, invoke: Invoke
) -> None:
    first = start_run(server, tmp_path, "first", wait=False)
    second = start_run(server, tmp_path, "second", wait=False)

    code, stdout, _ = invoke("worker", "--until-idle", "--json", *STORAGE)

    report = json.loads(stdout)
    assert code == 0
    assert report["stop_reason"] == "idle"
    assert sorted(report["finished_run_ids"]) == ["first", "second"]
    assert first.summary().completed_items == second.summary().completed_items == 3
