"""An export interrupted midway never destroys, nor half-grows, the file it writes.

The Ctrl-C tests start ``batchor`` on a finished run of 20,000 items, wait until
the child has its output file open (so the export is under way), then send it
SIGINT, as a terminal does. A crash mid-line (power loss, a full disk) is what an
append must repair before it adds anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.cli.cli_kit import TEST_API_KEY, Cli, deterministic_environment

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    OpenAIProviderConfig,
    PromptParts,
    SQLiteStorage,
)
from batchor.testing import LocalBatchServer

ITEMS = 20_000
ATTEMPTS = 5

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """``batchor`` in a directory whose ``runs.sqlite3`` holds the finished run ``big``
    of :data:`ITEMS` items."""
    directory = tmp_path_factory.mktemp("exports")
    with LocalBatchServer() as server:
        runner = BatchRunner(storage=SQLiteStorage(path=directory / "runs.sqlite3"))
        runner.run_and_wait(
            BatchJob(
                items=[BatchItem(f"item{number:05d}", f"text {number}") for number in range(ITEMS)],
                build_prompt=lambda item: PromptParts(prompt=item.payload),
                provider_config=OpenAIProviderConfig(
                    model="gpt-4.1", api_key=TEST_API_KEY, base_url=server.base_url
                ),
            ),
            run_id="big",
        )
        runner.storage.dispose()
    yield Cli(
        directory,
        deterministic_environment(
            OPENAI_API_KEY=TEST_API_KEY,
            BATCHOR_HOME=str(directory / "home"),
            BATCHOR_STORAGE="sqlite:///runs.sqlite3",
        ),
    )


def writing(process: subprocess.Popen[str], target: Path) -> bool:
    """Whether ``process`` has ``target``, or a file beside it, open."""
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{process.pid}/fd").iterdir()]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(
        Path(link).parent == target.parent and target.name in Path(link).name for link in links
    )


def signal_midway(
    cli: Cli, target: Path, signum: int, *args: str, grown_from: int | None = None
) -> subprocess.Popen[str]:
    """Start ``batchor ARGS``, send ``signum`` once it writes near ``target`` (and, with
    ``grown_from``, once ``target`` has grown past that size), and return the finished
    process (retrying when it finished first)."""

    def under_way(process: subprocess.Popen[str]) -> bool:
        if not writing(process, target):
            return False
        return grown_from is None or target.stat().st_size > grown_from

    for _ in range(ATTEMPTS):
        process = cli.spawn(*args)
        while process.poll() is None and not under_way(process):
            time.sleep(0.002)
        if process.poll() is None:
            process.send_signal(signum)
        process.wait(timeout=60)
        if process.returncode != 0:
            return process
    raise AssertionError(f"batchor {' '.join(args)} always finished before it could be signalled")


@pytest.mark.parametrize("name", ["full.jsonl", "full.parquet"])
def test_ctrl_c_during_an_export_leaves_the_previous_file_whole(finished: Cli, name: str) -> None:
    target = finished.cwd / name
    runner = BatchRunner(storage=SQLiteStorage(path=finished.cwd / "runs.sqlite3"))
    runner.get_run("big").export_terminal_results(target)
    runner.storage.dispose()
    before = target.read_bytes()

    interrupted = signal_midway(finished, target, signal.SIGINT, "results", "big", "-o", name)
    _, stderr = interrupted.communicate()

    assert interrupted.returncode == 130
    assert f"interrupted: {name} was left as it was" in stderr
    assert target.read_bytes() == before
    assert [path.name for path in finished.cwd.iterdir() if name in path.name] == [name]
    if name.endswith(".parquet"):
        assert pq.read_table(target).num_rows == ITEMS


def test_ctrl_c_during_an_append_appends_nothing(finished: Cli) -> None:
    target = finished.cwd / "growing.jsonl"
    target.write_text('{"kept": "a line written before"}\n')
    before = target.read_bytes()

    interrupted = signal_midway(
        finished, target, signal.SIGINT, "export", "big", "-o", "growing.jsonl", "--append",
        grown_from=len(before),
    )  # fmt: skip
    _, stderr = interrupted.communicate()

    assert interrupted.returncode == 130
    assert "interrupted: growing.jsonl was left as it was (nothing appended)" in stderr
    assert target.read_bytes() == before


def test_an_append_after_a_crash_mid_line_first_removes_the_torn_line(finished: Cli) -> None:
    target = finished.cwd / "torn.jsonl"
    target.write_text('{"kept": "a whole line"}\n{"item_id": "item00000", "seq')
    run = BatchRunner(storage=SQLiteStorage(path=finished.cwd / "runs.sqlite3")).get_run("big")

    written = run.export_terminal_results(target, append=True, limit=2)

    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert written.count == 2
    assert records[0] == {"kept": "a whole line"}
    assert [record["item_id"] for record in records[1:]] == ["item00000", "item00001"]
