"""``batchor emulator`` serves the local OpenAI Batch API that ``batchor`` can run
against, with credentials from a ``.env`` file."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from cli_kit import Cli, deterministic_environment, tickets, write_csv

ENV_FILE_KEY = "sk-from-dotenv-file-0123456789"


@pytest.mark.slow
def test_emulator_serves_runs_until_terminated(tmp_path: Path) -> None:
    cli = Cli(tmp_path, deterministic_environment(BATCHOR_HOME=str(tmp_path / "home")))
    emulator = cli.spawn("emulator", "--port", "0", "--data-dir", "served")
    try:
        assert emulator.stdout is not None
        announced = emulator.stdout.readline()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1)", announced)
        assert found, announced
        (tmp_path / ".env").write_text(
            f"# credentials for the local emulator\nOPENAI_BASE_URL={found.group(1)}\n"
            f"export OPENAI_API_KEY='{ENV_FILE_KEY}'\n"
        )
        write_csv(tmp_path / "tickets.csv", tickets(3))

        outcome = cli(
            "start", "tickets.csv", "--id-column", "id", "--prompt-column", "text",
            "--model", "gpt-4.1", "--wait", "--json",
        )  # fmt: skip
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.communicate(timeout=30)

    assert outcome.code == 0, outcome
    assert outcome.json()["completed_items"] == 3
    assert ENV_FILE_KEY not in outcome.stdout + outcome.stderr
    assert emulator.returncode == 0
    assert list((tmp_path / "served" / "batches").glob("*.json"))
