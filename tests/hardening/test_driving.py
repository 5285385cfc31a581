"""Driving a run from the shell: another endpoint, a paused run, and what goes where.

``batchor wait`` reaches the provider through ``--base-url`` or ``$OPENAI_BASE_URL``
before the address stored with the run; when it gives up it says why (a pause, a
connection error naming the address); progress is narration on stderr, and
stdout carries only the result.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli.cli_kit import TEST_API_KEY, Cli

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


def start_run(directory: Path, base_url: str, run_id: str) -> Run:
    """A run of three items in ``directory/runs.sqlite3``, ingested, nothing submitted."""
    runner = BatchRunner(storage=SQLiteStorage(path=directory / "runs.sqlite3"))
    return runner.start(
        BatchJob(
            items=[BatchItem(f"{run_id}{number}", f"text {number}") for number in range(3)],
            build_prompt=lambda item: PromptParts(prompt=item.payload),
            provider_config=OpenAIProviderConfig(
                model="gpt-4.1", api_key=TEST_API_KEY, base_url=base_url, max_retries=0
            ),
        ),
        run_id=run_id,
    )


def test_a_run_moves_to_another_endpoint_and_a_lost_one_is_named(cli: Cli, tmp_path: Path) -> None:
    with LocalBatchServer() as lost:
        lost_url = lost.base_url
        start_run(tmp_path, lost_url, "moved")

    stuck = cli("wait", "moved", "--base-url", lost_url, "--timeout", "0.5")
    moved = cli("wait", "moved", "--timeout", "60")  # $OPENAI_BASE_URL: the live server

    assert stuck.code == 3, stuck
    (error,) = stuck.error_lines
    assert f"last error: APIConnectionError: Connection error. (POST {lost_url}/files)" in error
    assert moved.code == 0, moved
    assert moved.stdout.splitlines()[:2] == ["run       moved", "status    completed"]
    assert "moved completed: 3/3 items terminal" in moved.stderr


def test_waiting_on_a_paused_run_shows_the_pause_and_says_so_when_it_gives_up(
    cli: Cli, server: LocalBatchServer, tmp_path: Path
) -> None:
    start_run(tmp_path, server.base_url, "held").pause()

    outcome = cli("wait", "held", "--timeout", "0.5", "--poll-interval", "0.1")

    assert outcome.code == 3, outcome
    assert outcome.stdout == ""
    progress, error = outcome.stderr.splitlines()
    assert "held running (paused) [paused by request]: 0/3 items terminal" in progress
    assert error.startswith("Error: run 'held' is still running after 0.5 s (0/3 items terminal)")
    assert (
        "it is paused (paused by request) with nothing in flight, so it will not move until "
        "resumed (resume() it, or batchor resume)" in error
    )
