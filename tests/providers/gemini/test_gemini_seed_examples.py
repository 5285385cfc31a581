"""The Python API guide's examples, written with ``GeminiProviderConfig`` in place of
``OpenAIProviderConfig``, run as written against the local server's Gemini API.

The tests prepare only what the guide assumes exists (a Gemini endpoint and key in
the environment, a ``job``, a run with the id the guide uses) and check what a
reader would expect to see.
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

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    GeminiProviderConfig,
    ItemStatus,
    LocalArtifactStore,
    PostgresStorage,
    PromptParts,
    RunControlState,
    RunStatus,
)
from batchor.testing import LocalBatchServer

MINIMAL_TEXT_JOB = """
from batchor import BatchItem, BatchJob, BatchRunner, GeminiProviderConfig, PromptParts
runner = BatchRunner(storage="memory")
run = runner.run_and_wait(
    BatchJob(
        items=[BatchItem(item_id="row1", payload="Summarize this text")],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=GeminiProviderConfig(
            model="gemini-2.5-flash",
            api_key="YOUR_GEMINI_API_KEY",
        ),
    )
)
print(run.results()[0].output_text)
"""

STRUCTURED_OUTPUT_JOB = """
from pydantic import BaseModel
from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    EnqueueLimitConfig,
    GeminiProviderConfig,
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
        provider_config=GeminiProviderConfig(
            model="gemini-2.5-flash",
            api_key="YOUR_GEMINI_API_KEY",
            enqueue_limits=EnqueueLimitConfig(
                enqueued_token_limit=3_000_000,
                target_ratio=0.7,
                headroom=50_000,
                max_batch_enqueued_tokens=500_000,
            ),
        ),
    )
)
run.wait()
result = run.results()[0]
print(result.output)
print(result.output_text)
"""

SOURCE_JOB = """
from batchor import BatchJob, BatchRunner, GeminiProviderConfig, JsonlItemSource, PromptParts
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
        provider_config=GeminiProviderConfig(model="gemini-2.5-flash"),
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

FRESH_PROCESS = """
import sys
from batchor import BatchRunner, SQLiteStorage
run = BatchRunner(storage=SQLiteStorage(name="default")).get_run(sys.argv[1])
summary = run.wait(poll_interval=0.05)
print(summary.provider, summary.status.value, summary.completed_items)
"""


def execute(example: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run an example as a script would (its own module namespace)."""
    scope: dict[str, Any] = {"__name__": "seed_example"} if namespace is None else namespace
    exec(compile(textwrap.dedent(example), "<seed example>", "exec"), scope)
    return scope


@pytest.fixture
def gemini_env(server: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the guide takes for granted: a Gemini endpoint and key, and a working dir."""
    monkeypatch.setenv("GEMINI_BASE_URL", server.gemini_url)
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-from-environment")
    monkeypatch.chdir(tmp_path)


def a_job(count: int = 3) -> BatchJob:
    return BatchJob(
        items=[BatchItem(item_id=f"row{n}", payload=f"text {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=GeminiProviderConfig(model="gemini-2.5-flash"),
    )


@pytest.mark.usefixtures("gemini_env")
def test_minimal_text_job(capsys: pytest.CaptureFixture[str], server: LocalBatchServer) -> None:
    scope = execute(MINIMAL_TEXT_JOB)
    assert scope["run"].status is RunStatus.COMPLETED
    assert capsys.readouterr().out.strip() == "Local reply to: Summarize this text"
    assert server.counters.batches_created == {"gemini-2.5-flash": 1}


@pytest.mark.usefixtures("gemini_env")
def test_structured_output_job(capsys: pytest.CaptureFixture[str], isolated_home: Path) -> None:
    scope = execute(STRUCTURED_OUTPUT_JOB)
    result = scope["result"]
    assert isinstance(result.output, scope["ClassificationResult"])
    assert capsys.readouterr().out.splitlines() == [str(result.output), result.output_text]
    assert (isolated_home / "default.sqlite3").is_file()


@pytest.mark.usefixtures("gemini_env")
def test_a_fresh_process_rebuilds_the_gemini_adapter_from_storage(
    isolated_home: Path, tmp_path: Path
) -> None:
    run = BatchRunner().start(a_job(4), run_id="batchor_20260329T120000Z_ab12cd34")
    assert run.summary().pending_items == 4

    child = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, run.run_id],
        capture_output=True,
        text=True,
        env={**os.environ, "BATCHOR_HOME": str(isolated_home)},
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["gemini", "completed", "4"]


@pytest.mark.usefixtures("gemini_env")
def test_a_file_source_resumes_by_run_id(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    rows = [{"id": n, "text": f"document {n}"} for n in range(5)]
    (tmp_path / "input/items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scope = execute(SOURCE_JOB)
    again = execute(SOURCE_JOB)  # the same start, rerun: resumes, duplicates nothing
    summary = again["run"].wait(poll_interval=0.05)
    assert scope["run"].run_id == again["run"].run_id == "customer_export_20260403"
    assert summary.status is RunStatus.COMPLETED and summary.total_items == 5
    lineage = again["run"].results()[0].metadata["batchor_lineage"]
    assert lineage["source_ref"] == str(tmp_path / "input/items.jsonl")


@pytest.mark.usefixtures("gemini_env")
def test_run_control() -> None:
    BatchRunner().start(a_job(), run_id="batchor_20260403T120000Z_ab12cd34")
    scope = execute(RUN_CONTROL)
    run = scope["run"]
    assert run.summary().control_state is RunControlState.CANCEL_REQUESTED
    summary = run.wait()
    assert summary.status is RunStatus.CANCELLED
    assert {result.error.code for result in run.results()} == {"run_cancelled"}


@pytest.mark.usefixtures("gemini_env")
def test_incremental_terminal_results(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = BatchRunner().run_and_wait(a_job(5))
    execute(INCREMENTAL_RESULTS, {"run": run})
    printed = capsys.readouterr().out.splitlines()
    assert printed[:5] == [f"{r.item_id} {r.status}" for r in run.results()]
    assert printed[5] == "5"
    assert len((tmp_path / "exports/partial-results.jsonl").read_text().splitlines()) == 5


@pytest.mark.usefixtures("gemini_env")
def test_artifacts_export_and_prune(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = BatchRunner().run_and_wait(a_job())
    scope = execute(ARTIFACTS, {"run": run})
    manifest = scope["export"].manifest_path
    assert manifest == tmp_path / "exports" / run.run_id / "manifest.json"
    assert any("outputs/" in path for path in scope["export"].exported_artifact_paths)
    assert scope["prune"].removed_artifact_paths
    assert capsys.readouterr().out.splitlines()[0] == str(manifest)


@pytest.mark.postgres
def test_a_gemini_run_on_postgres_is_driven_by_any_process(
    postgres_storage: PostgresStorage, server: LocalBatchServer, tmp_path: Path
) -> None:
    config = GeminiProviderConfig(
        model="gemini-2.5-flash", api_key="AIza-postgres", base_url=server.gemini_url
    )
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    started = BatchRunner(storage=postgres_storage, artifact_store=artifacts).start(
        BatchJob(
            items=[BatchItem(item_id=f"row{n}", payload=f"text {n}") for n in range(4)],
            build_prompt=lambda item: PromptParts(prompt=item.payload),
            provider_config=config,
        )
    )

    worker = BatchRunner(storage=postgres_storage, artifact_store=artifacts, api_key="AIza-pg")
    summary = worker.get_run(started.run_id).wait(poll_interval=0.05)

    assert summary.status is RunStatus.COMPLETED and summary.provider == "gemini"
    results = worker.get_run(started.run_id).results()
    assert {r.status for r in results} == {ItemStatus.COMPLETED}
    assert summary.input_tokens == sum(r.usage.input_tokens for r in results) > 0


def test_the_enqueue_limit_shape_of_openai_configs_is_accepted() -> None:
    from batchor import OpenAIEnqueueLimitConfig

    config = GeminiProviderConfig(
        model="gemini-2.5-flash",
        enqueue_limits=OpenAIEnqueueLimitConfig(enqueued_token_limit=1_000, target_ratio=0.5),
    )
    assert config.enqueue_limits is not None
    assert config.enqueue_limits.enqueued_token_budget == 500
