"""The Python API guide's examples, with ``AnthropicProviderConfig`` in place of
``OpenAIProviderConfig``, run as written against the local server.

The tests only prepare what the examples take for granted (an Anthropic endpoint and
key in the environment, a ``job``, a run with the id the guide uses, an input file)
and check what a reader would expect to see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from anthropic_kit import MODEL

from batchor import (
    LINEAGE_KEY,
    AnthropicProviderConfig,
    BatchItem,
    BatchJob,
    BatchRunner,
    LocalArtifactStore,
    PostgresStorage,
    PromptParts,
    RunControlState,
    RunStatus,
)
from batchor.testing import LocalBatchServer

MINIMAL_TEXT_JOB = """
from batchor import AnthropicProviderConfig, BatchItem, BatchJob, BatchRunner, PromptParts
runner = BatchRunner(storage="memory")
run = runner.run_and_wait(
BatchJob(
items=[BatchItem(item_id="row1", payload="Summarize this text")],
build_prompt=lambda item: PromptParts(prompt=item.payload),
provider_config=AnthropicProviderConfig(
model="claude-haiku-4-5",
api_key="YOUR_ANTHROPIC_API_KEY",
),
)
)
print(run.results()[0].output_text)
"""

STRUCTURED_OUTPUT_JOB = """
from pydantic import BaseModel
from batchor import (
AnthropicEnqueueLimitConfig,
AnthropicProviderConfig,
BatchItem,
BatchJob,
BatchRunner,
PromptParts,
)
class ClassificationResult(BaseModel):
    label: str
    score: float
runner = BatchRunner()
run = runner.start(
BatchJob(
items=[BatchItem(item_id="row1", payload={"text": "classify this"})],
build_prompt=lambda item: PromptParts(prompt=item.payload["text"]),
structured_output=ClassificationResult,
provider_config=AnthropicProviderConfig(
model="claude-haiku-4-5",
api_key="YOUR_ANTHROPIC_API_KEY",
enqueue_limits=AnthropicEnqueueLimitConfig(
enqueued_request_limit=100_000,
target_ratio=0.7,
headroom=5_000,
max_batch_requests=50_000,
),
),
)
)
run.wait()
result = run.results()[0]
print(result.output)
print(result.output_text)
"""

REHYDRATE = """
from batchor import BatchRunner, SQLiteStorage
storage = SQLiteStorage(name="default")
runner = BatchRunner(storage=storage)
run = runner.get_run("batchor_20260329T120000Z_ab12cd34")
print(run.summary())
"""

JSONL_SOURCE = """
from batchor import AnthropicProviderConfig, BatchJob, BatchRunner, JsonlItemSource, PromptParts
source = JsonlItemSource(
"input/items.jsonl",
item_id_from_row=lambda row: str(row["id"]) if isinstance(row, dict) else "",
payload_from_row=lambda row: {"text": row["text"]} if isinstance(row, dict) else {},
)
runner = BatchRunner()
run = runner.start(
BatchJob(
items=source,
build_prompt=lambda item: PromptParts(prompt=item.payload["text"]),
provider_config=AnthropicProviderConfig(model="claude-haiku-4-5"),
),
run_id="customer_export_20260403",
)
"""

RUN_CONTROL = """
from batchor import BatchRunner, RunControlState, SQLiteStorage
runner = BatchRunner(storage=SQLiteStorage(name="default"))
run = runner.get_run("batchor_20260403T120000Z_ab12cd34")
run.pause()
assert run.summary().control_state is RunControlState.PAUSED
run.resume()
run.cancel()
"""

INCREMENTAL_RESULTS = """
page = run.read_terminal_results(after_sequence=0, limit=100)
for item in page.items:
    print(item.item_id, item.status)
export = run.export_terminal_results(
"exports/partial-results.jsonl",
after_sequence=0,
append=False,
limit=100,
)
print(export.next_after_sequence)
"""

ARTIFACTS = """
export = run.export_artifacts("exports")
print(export.manifest_path)
prune = run.prune_artifacts()
print(prune.removed_artifact_paths)
"""


def execute(example: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run an example as a script would (its own module namespace)."""
    scope: dict[str, Any] = {"__name__": "seed_example"} if namespace is None else namespace
    exec(compile(textwrap.dedent(example), "<seed example>", "exec"), scope)
    return scope


@pytest.fixture
def anthropic_env(
    server: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the guide takes for granted: an Anthropic endpoint and key, a working dir."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-environment")
    monkeypatch.chdir(tmp_path)


def a_job(count: int = 3) -> BatchJob:
    return BatchJob(
        items=[BatchItem(item_id=f"row{n}", payload=f"text {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=AnthropicProviderConfig(model=MODEL, poll_interval=0.02),
    )


@pytest.mark.usefixtures("anthropic_env")
def test_minimal_text_job(capsys: pytest.CaptureFixture[str], server: LocalBatchServer) -> None:
    scope = execute(MINIMAL_TEXT_JOB)
    assert scope["run"].status is RunStatus.COMPLETED
    assert capsys.readouterr().out.strip() == scope["run"].results()[0].output_text
    assert server.call_counts["POST /v1/messages/batches"] == 1


@pytest.mark.usefixtures("anthropic_env")
def test_structured_output_job(capsys: pytest.CaptureFixture[str]) -> None:
    scope = execute(STRUCTURED_OUTPUT_JOB)
    result = scope["result"]
    assert isinstance(result.output, scope["ClassificationResult"])
    assert capsys.readouterr().out.splitlines() == [str(result.output), result.output_text]


@pytest.mark.usefixtures("anthropic_env")
def test_a_fresh_process_rehydrates_the_run_and_drives_it_on_anthropic(
    server: LocalBatchServer, isolated_home: Path
) -> None:
    BatchRunner().start(a_job(), run_id="batchor_20260329T120000Z_ab12cd34")
    assert server.call_counts == {}  # start only ingests

    script = REHYDRATE + "print(run.wait().status.value)\n"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "BATCHOR_HOME": str(isolated_home)},
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "provider='anthropic'" in done.stdout
    assert done.stdout.splitlines()[-1] == "completed"
    assert server.call_counts["POST /v1/messages/batches"] == 1


@pytest.mark.usefixtures("anthropic_env")
def test_a_file_source_runs_with_lineage(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    rows = [{"id": n, "text": f"document {n}"} for n in range(4)]
    (tmp_path / "input/items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    run = execute(JSONL_SOURCE)["run"]
    assert run.wait(timeout=30).status is RunStatus.COMPLETED
    results = sorted(run.results(), key=lambda result: result.item_id)
    assert [result.item_id for result in results] == ["0", "1", "2", "3"]
    assert results[2].metadata[LINEAGE_KEY]["source_item_index"] == 2


@pytest.mark.usefixtures("anthropic_env")
def test_run_control() -> None:
    BatchRunner().start(a_job(), run_id="batchor_20260403T120000Z_ab12cd34")
    run = execute(RUN_CONTROL)["run"]
    assert run.summary().control_state is RunControlState.CANCEL_REQUESTED
    assert run.wait(timeout=30).status is RunStatus.CANCELLED
    assert {result.error.code for result in run.results()} == {"run_cancelled"}


@pytest.mark.usefixtures("anthropic_env")
def test_incremental_terminal_results(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = BatchRunner().run_and_wait(a_job(5))
    execute(INCREMENTAL_RESULTS, {"run": run})
    printed = capsys.readouterr().out.splitlines()
    assert printed[:5] == [f"{r.item_id} {r.status}" for r in run.results()]
    assert printed[5] == "5"
    assert len((tmp_path / "exports/partial-results.jsonl").read_text().splitlines()) == 5


@pytest.mark.usefixtures("anthropic_env")
def test_artifacts_export_and_prune(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = BatchRunner().run_and_wait(a_job())
    scope = execute(ARTIFACTS, {"run": run})
    manifest = json.loads(scope["export"].manifest_path.read_text())
    assert scope["export"].manifest_path == tmp_path / "exports" / run.run_id / "manifest.json"
    assert any("output" in str(entry) for entry in manifest["files"])  # the raw results
    assert scope["prune"].removed_artifact_paths
    assert capsys.readouterr().out.splitlines()[0] == str(scope["export"].manifest_path)


@pytest.mark.postgres
@pytest.mark.usefixtures("anthropic_env")
def test_postgres_storage_is_a_shared_control_plane(
    postgres_storage: PostgresStorage, tmp_path: Path
) -> None:
    artifacts = LocalArtifactStore(tmp_path / "shared-artifacts")
    started = BatchRunner(storage=postgres_storage, artifact_store=artifacts).start(a_job())
    other_worker = BatchRunner(storage=postgres_storage, artifact_store=artifacts)

    run = other_worker.get_run(started.run_id)
    assert run.wait(timeout=30).status is RunStatus.COMPLETED
    assert run.summary().provider == "anthropic"
    assert len(run.results()) == 3
