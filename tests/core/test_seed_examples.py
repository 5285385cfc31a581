"""The user documentation's examples, run exactly as written against the local server.

Each example below is copied verbatim from the Python API guide. The tests only
prepare what the guide assumes exists (an OpenAI endpoint, a ``job``, a run with
the id the guide uses) and check what a reader would expect to see.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from batchor import (
    ArtifactPolicy,
    BatchItem,
    BatchJob,
    BatchRunner,
    OpenAIProviderConfig,
    PromptParts,
    RunControlState,
    RunStatus,
)
from batchor.testing import LocalBatchServer

MINIMAL_TEXT_JOB = """
from batchor import BatchItem, BatchJob, BatchRunner, OpenAIProviderConfig, PromptParts
runner = BatchRunner(storage="memory")
run = runner.run_and_wait(
BatchJob(
items=[BatchItem(item_id="row1", payload="Summarize this text")],
build_prompt=lambda item: PromptParts(prompt=item.payload),
provider_config=OpenAIProviderConfig(
model="gpt-4.1",
api_key="YOUR_OPENAI_API_KEY",
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
OpenAIEnqueueLimitConfig,
OpenAIProviderConfig,
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
provider_config=OpenAIProviderConfig(
model="gpt-4.1",
api_key="YOUR_OPENAI_API_KEY",
enqueue_limits=OpenAIEnqueueLimitConfig(
enqueued_token_limit=2_000_000,
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

DURABLE_LIFECYCLE = """
from batchor import BatchRunner
runner = BatchRunner()
run = runner.start(job)
print(run.run_id)
print(run.status)
print(run.summary())
run.wait(timeout=300)
results = run.results()
"""

REHYDRATE = """
from batchor import BatchRunner, SQLiteStorage
storage = SQLiteStorage(name="default")
runner = BatchRunner(storage=storage)
run = runner.get_run("batchor_20260329T120000Z_ab12cd34")
print(run.summary())
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

CHOOSING_STORAGE = """
from batchor import BatchRunner, LocalArtifactStore, PostgresStorage
runner = BatchRunner(
storage=PostgresStorage(dsn="postgresql+psycopg://localhost/batchor"),
artifact_store=LocalArtifactStore("/mnt/batchor-artifacts"),
)
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
def openai_env(server: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the guide takes for granted: an OpenAI endpoint and key, and a working dir."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment")
    monkeypatch.chdir(tmp_path)


def a_job(count: int = 3) -> BatchJob:
    return BatchJob(
        items=[BatchItem(item_id=f"row{n}", payload=f"text {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=OpenAIProviderConfig(model="gpt-4.1"),
    )


@pytest.mark.usefixtures("openai_env")
def test_minimal_text_job(capsys: pytest.CaptureFixture[str]) -> None:
    scope = execute(MINIMAL_TEXT_JOB)
    assert scope["run"].status is RunStatus.COMPLETED
    assert capsys.readouterr().out.strip() == scope["run"].results()[0].output_text


@pytest.mark.usefixtures("openai_env")
def test_structured_output_job(capsys: pytest.CaptureFixture[str], isolated_home: Path) -> None:
    scope = execute(STRUCTURED_OUTPUT_JOB)
    result = scope["result"]
    assert isinstance(result.output, scope["ClassificationResult"])
    assert capsys.readouterr().out.splitlines() == [str(result.output), result.output_text]
    assert (isolated_home / "default.sqlite3").is_file()


@pytest.mark.usefixtures("openai_env")
def test_durable_run_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    scope = execute(DURABLE_LIFECYCLE, {"job": a_job()})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == scope["run"].run_id and printed[0].startswith("batchor_")
    assert printed[1] == "running"
    assert len(scope["results"]) == 3


@pytest.mark.usefixtures("openai_env")
def test_rehydrate_an_existing_run(capsys: pytest.CaptureFixture[str]) -> None:
    BatchRunner().run_and_wait(a_job(), run_id="batchor_20260329T120000Z_ab12cd34")
    scope = execute(REHYDRATE)
    assert scope["run"].summary().completed_items == 3
    assert "batchor_20260329T120000Z_ab12cd34" in capsys.readouterr().out


@pytest.mark.usefixtures("openai_env")
def test_run_control() -> None:
    BatchRunner().start(a_job(), run_id="batchor_20260403T120000Z_ab12cd34")
    scope = execute(RUN_CONTROL)
    run = scope["run"]
    assert run.summary().control_state is RunControlState.CANCEL_REQUESTED
    summary = run.wait()
    assert summary.status is RunStatus.CANCELLED
    assert {result.error.code for result in run.results()} == {"run_cancelled"}


@pytest.mark.usefixtures("openai_env")
def test_incremental_terminal_results(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = BatchRunner().run_and_wait(a_job(5))
    execute(INCREMENTAL_RESULTS, {"run": run})
    printed = capsys.readouterr().out.splitlines()
    assert printed[:5] == [f"{r.item_id} {r.status}" for r in run.results()]
    assert printed[5] == "5"
    assert len((tmp_path / "exports/partial-results.jsonl").read_text().splitlines()) == 5


@pytest.mark.usefixtures("openai_env")
def test_artifacts_export_and_prune(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = BatchRunner().run_and_wait(a_job())
    scope = execute(ARTIFACTS, {"run": run})
    assert scope["export"].manifest_path == tmp_path / "exports" / run.run_id / "manifest.json"
    assert scope["prune"].removed_artifact_paths
    assert capsys.readouterr().out.splitlines()[0] == str(scope["export"].manifest_path)


@pytest.mark.usefixtures("openai_env")
def test_raw_output_retention_can_be_turned_off() -> None:
    job = BatchJob(
        items=a_job().items,
        build_prompt=a_job().build_prompt,
        provider_config=a_job().provider_config,
        artifact_policy=ArtifactPolicy(persist_raw_output_artifacts=False),
    )
    run = BatchRunner().run_and_wait(job)
    assert run.export_artifacts("exports").exported_artifact_paths == ["requests/000000.jsonl"]


@pytest.mark.postgres
def test_choosing_storage_with_a_shared_control_plane() -> None:
    from tests.conftest import postgres_dsn

    server_url = sqlalchemy.engine.make_url(postgres_dsn())
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(
            sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname='batchor'")
        ).first():
            conn.execute(sqlalchemy.text("CREATE DATABASE batchor"))
        if not conn.execute(
            sqlalchemy.text("SELECT 1 FROM pg_roles WHERE rolname=current_user")
        ).first():
            pytest.skip("no role for the current OS user")
    admin.dispose()
    try:
        scope = execute(CHOOSING_STORAGE)
    except sqlalchemy.exc.OperationalError as exc:
        pytest.skip(f"the guide's DSN (localhost, OS user) does not reach this server: {exc}")
    assert scope["runner"].storage.schema == "batchor"
