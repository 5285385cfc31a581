"""The smaller edges, each once: storage that cannot be written or read, prompts that
would be too large, a failed ingestion, and command-line odds and ends. Every
failure is one ``Error:`` line saying what, where and what to do."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.cli.cli_kit import (
    TEST_API_KEY,
    Cli,
    Invoke,
    batchor_executable,
    deterministic_environment,
)

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ItemBuildError,
    OpenAIProviderConfig,
    PromptParts,
    SQLiteStorage,
)
from batchor.testing import LocalBatchServer

START = ("--id-column", "id", "--prompt-column", "text", "--model", "gpt-4.1")

# A root process reads and writes whatever the permission bits say; dropping these two
# capabilities before exec makes them apply to it as to anyone else.
_AS_AN_ORDINARY_USER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
os.execv(sys.argv[1], sys.argv[1:])
"""


def can_drop_root_file_access() -> bool:
    if os.geteuid() != 0:
        return True
    status = Path("/proc/self/status")
    if not status.is_file():
        return False
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 8))  # CAP_SETPCAP
    return False


def start_run(directory: Path, server: LocalBatchServer, run_id: str) -> None:
    storage = SQLiteStorage(path=directory / "runs.sqlite3")
    BatchRunner(storage=storage).start(
        BatchJob(
            items=[BatchItem(f"{run_id}{number}", f"text {number}") for number in range(2)],
            build_prompt=lambda item: PromptParts(prompt=item.payload),
            provider_config=OpenAIProviderConfig(
                model="gpt-4.1", api_key=TEST_API_KEY, base_url=server.base_url
            ),
        ),
        run_id=run_id,
    )
    storage.dispose()


@pytest.mark.skipif(not can_drop_root_file_access(), reason="cannot make files read-only to root")
def test_a_read_only_storage_directory_still_answers_read_only_commands(
    server: LocalBatchServer, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    start_run(shared, server, "kept")
    environment = deterministic_environment(
        OPENAI_API_KEY=TEST_API_KEY,
        OPENAI_BASE_URL=server.base_url,
        BATCHOR_HOME=str(tmp_path / "home"),
        BATCHOR_STORAGE="sqlite:///shared/runs.sqlite3",
    )
    prefix = [sys.executable, "-c", _AS_AN_ORDINARY_USER] if os.geteuid() == 0 else []

    def batchor(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, batchor_executable(), *args],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    shared.chmod(0o555)
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            runs, status, wait = pool.map(
                lambda args: batchor(*args), [["runs"], ["status", "kept"], ["wait", "kept"]]
            )
    finally:
        shared.chmod(0o755)

    assert (runs.returncode, status.returncode) == (0, 0), (runs.stderr, status.stderr)
    assert "kept" in runs.stdout and "status    running" in status.stdout
    assert wait.returncode == 4
    (error,) = wait.stderr.splitlines()
    assert error.startswith(f"Error: SQLite database {shared / 'runs.sqlite3'} (read-only")
    assert "attempt to write a readonly database" in error and "make both writable" in error


def test_a_damaged_database_or_a_foreign_schema_version_names_the_file(
    invoke: Invoke, tmp_path: Path
) -> None:
    (tmp_path / "damaged.sqlite3").write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    SQLiteStorage(path=tmp_path / "foreign.sqlite3").dispose()
    with sqlite3.connect(tmp_path / "foreign.sqlite3") as connection:
        connection.execute("UPDATE batchor_meta SET value = 'v2' WHERE key = 'schema_version'")

    damaged = invoke("runs", "--storage", "sqlite:///damaged.sqlite3")
    foreign = invoke("runs", "--storage", "sqlite:///foreign.sqlite3")

    assert damaged[0] == 4 and foreign[0] == 4
    assert damaged[2].startswith(f"Error: SQLite database {tmp_path / 'damaged.sqlite3'}: ")
    assert "restore it from a backup" in damaged[2]
    assert foreign[2] == (
        f"Error: SQLite database {tmp_path / 'foreign.sqlite3'} records schema version 'v2', "
        "which is not a number: it was not written by batchor, or is damaged\n"
    )


def test_a_prompt_larger_than_the_provider_takes_is_refused_at_ingestion(
    provider_config: OpenAIProviderConfig,
) -> None:
    runner = BatchRunner(storage="memory")
    limit = 190 * 1024 * 1024
    job = BatchJob(
        items=[BatchItem("small", "fine"), BatchItem("huge", "x")],
        build_prompt=lambda item: PromptParts(
            prompt="x" * (limit + 1) if item.item_id == "huge" else item.payload
        ),
        provider_config=provider_config,
    )

    with pytest.raises(ItemBuildError, match=r"the request for item 'huge' .* is larger than"):
        runner.start(job, run_id="too_large")
    assert runner.get_run("too_large").summary().total_items == 0


def test_a_template_asking_for_a_gigabyte_is_refused_before_anything_is_stored(
    invoke: Invoke, tmp_path: Path
) -> None:
    (tmp_path / "tickets.csv").write_text("id,text\n1,hello\n")

    code, _, stderr = invoke(
        "start", "tickets.csv", "--id-column", "id", "--model", "gpt-4.1",
        "--prompt-template", "{text:>1000000000}", "--storage", "sqlite:///runs.sqlite3",
    )  # fmt: skip

    assert code == 2
    assert "{text:>1000000000} asks for 1,000,000,000 characters" in stderr
    assert invoke("runs", "--storage", "sqlite:///runs.sqlite3")[2] == "no runs in this storage\n"


def test_a_failed_ingestion_is_listed_as_incomplete_with_its_reason_and_resumes(
    invoke: Invoke, tmp_path: Path
) -> None:
    storage = ("--storage", "sqlite:///runs.sqlite3")
    (tmp_path / "tickets.csv").write_text("id,text\n1,fine\n2,too,many\n")
    failed = invoke("start", "tickets.csv", *START, "--run-id", "partial", *storage)
    active = invoke("runs", "--active", *storage)
    status = invoke("status", "partial", *storage)
    (tmp_path / "tickets.csv").write_text("id,text\n1,fine\n2,fixed\n")
    resumed = invoke("start", "tickets.csv", *START, "--run-id", "partial", *storage)

    assert failed[0] == 2
    assert active[1].splitlines()[1].split("  ")[:2] == ["partial", "running (ingest incomplete)"]
    assert "last error  ingestion stopped: " in status[1]
    assert "tickets.csv, row 3: expected 2 fields" in status[1]
    assert resumed[0] == 0, resumed
    assert "running (ingest incomplete)" not in invoke("runs", "--active", *storage)[1]


def test_command_line_odds_and_ends_are_one_error_line_or_an_answer(
    invoke: Invoke, cli: Cli, tmp_path: Path
) -> None:
    (tmp_path / "tickets.csv").write_text("id,text\n1,hello\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        emulator = cli("emulator", "--port", port)
    base_model = invoke("start", "tickets.csv", *START, "--structured-output", "pydantic:BaseModel")
    version = invoke("--version")

    assert emulator.code == 2
    assert emulator.stderr == (
        f"Error: Invalid value for '--port': 127.0.0.1:{port} is already in use; stop what "
        "listens there or pick another port (--port 0 picks a free one) "
        "(see 'batchor emulator --help')\n"
    )
    assert base_model[0] == 2
    assert base_model[2] == (
        "Error: Invalid value for '--structured-output': pydantic:BaseModel is "
        "pydantic.BaseModel itself, which has no fields; name your own model class, e.g. "
        "myproject.models:Ticket (see 'batchor start --help')\n"
    )
    assert version[0] == 0 and version[1].startswith("batchor ")
