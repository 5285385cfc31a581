"""A Parquet file mapped by column names is ingested column by column, and what it
stores is exactly what the row-by-row path stores for the same rows.

The column path is taken for the rows ``batchor start --id-column ...
--prompt-column / --prompt-template`` reads (:class:`ColumnRows` functions and a
:class:`PromptBuilder`); the row path for the same source with any other
``build_prompt``. A plan's fingerprint covers every request line byte, item id
and stored metadata, so equal fingerprints mean equal runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchor import (
    AnthropicProviderConfig,
    BatchItem,
    BatchJob,
    BatchRunner,
    ChunkPolicy,
    GeminiProviderConfig,
    ItemBuildError,
    LocalArtifactStore,
    OpenAIProviderConfig,
    ParquetItemSource,
    PromptBuilder,
    PromptParts,
    SourceRowError,
    SQLiteStorage,
)
from batchor.engine.slices import ColumnReading
from batchor.sources.columns import ColumnRows
from batchor.testing import LocalBatchServer

PROVIDERS: dict[str, Callable[[], Any]] = {
    "openai": lambda: OpenAIProviderConfig(model="gpt-4.1-mini", api_key="sk-test"),
    "anthropic": lambda: AnthropicProviderConfig(model="claude-haiku-4-5", api_key="sk-test"),
    "gemini": lambda: GeminiProviderConfig(model="gemini-2.5-flash", api_key="AIza-test"),
}


OPENAI = OpenAIProviderConfig(model="gpt-4.1-mini", api_key="sk-test")


def write_rows(path: Path, columns: dict[str, list[Any]], row_group_size: int = 7) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def tickets(count: int) -> dict[str, list[Any]]:
    return {
        "id": [f"t{n:03d}" for n in range(count)],
        "text": [f'ticket {n}: "quoted" \\ naïve ☃\n line' for n in range(count)],
        "n": list(range(count)),
        "score": [None if n % 5 == 0 else n / 3 for n in range(count)],
        "flag": [n % 2 == 0 for n in range(count)],
    }


def jobs(
    path: Path,
    builder: PromptBuilder,
    provider: Any,
    slice_size: int = 10,
    payload: tuple[str, ...] | None = None,
) -> tuple[BatchJob, BatchJob]:
    """The same rows and prompt, read by columns and by rows (``payload``: the payload
    columns, by default the prompt's)."""
    rows = ColumnRows("id", payload or builder.fields)

    def job(build_prompt: Callable[[BatchItem], PromptParts]) -> BatchJob:
        source = ParquetItemSource(
            path,
            item_id_from_row=rows.item_id,
            payload_from_row=rows.payload,
            columns=["id", *rows.fields],
        )
        return BatchJob(
            items=source,
            build_prompt=build_prompt,
            provider_config=provider,
            chunk_policy=ChunkPolicy(ingest_slice_size=slice_size),
        )

    by_columns = job(builder)
    by_rows = job(lambda item: builder(item))
    assert ColumnReading.of(by_columns.items, builder) is not None  # type: ignore[arg-type]
    assert ColumnReading.of(by_rows.items, by_rows.build_prompt) is None  # type: ignore[arg-type]
    return by_columns, by_rows


BUILDERS = {
    "column": PromptBuilder.from_column("text"),
    "column with system prompt": PromptBuilder.from_column("text", "Triage the ticket."),
    "template": PromptBuilder.from_template("#{n} [{score}] {flag}: {text!r:.40}"),
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_columns_build_what_rows_build(tmp_path: Path, kind: str, provider: str) -> None:
    path = write_rows(tmp_path / "tickets.parquet", tickets(37))
    by_columns, by_rows = jobs(path, BUILDERS[kind], PROVIDERS[provider]())
    runner = BatchRunner(storage=SQLiteStorage(path=tmp_path / "runs.sqlite3"))
    column_plan, row_plan = runner.plan(by_columns), runner.plan(by_rows)
    assert column_plan.fingerprint == row_plan.fingerprint
    assert column_plan.first_request_line == row_plan.first_request_line
    assert column_plan.item_count == 37
    assert column_plan.estimated_input_tokens == row_plan.estimated_input_tokens


def test_integer_ids_and_runs_end_to_end(tmp_path: Path) -> None:
    """Ids of an integer column are their text; results carry the same lineage."""
    columns = tickets(23)
    columns["id"] = [1000 + n for n in range(23)]
    path = write_rows(tmp_path / "tickets.parquet", columns)
    builder = PromptBuilder.from_column("text")
    results = {}
    with LocalBatchServer() as server:
        provider = OpenAIProviderConfig(
            model="gpt-4.1-mini", api_key="sk-test", base_url=server.base_url
        )
        for name, job in zip(("columns", "rows"), jobs(path, builder, provider), strict=True):
            runner = BatchRunner(
                storage=SQLiteStorage(path=tmp_path / f"{name}.sqlite3"),
                artifact_store=LocalArtifactStore(tmp_path / f"{name}-artifacts"),
            )
            run = runner.run_and_wait(job, timeout=60)
            results[name] = [
                (result.item_id, result.status, result.output_text, result.metadata)
                for result in run.results()
            ]
    assert results["columns"] == results["rows"]
    assert results["columns"][0][0] == "1000"
    assert results["columns"][0][3]["batchor_lineage"]["source_item_index"] == 0


def test_errors_are_the_row_paths_errors(tmp_path: Path) -> None:
    """An empty prompt, a template that cannot format a value and a missing id are
    reported as the row path reports them, naming the same row."""
    builder = PromptBuilder.from_column("text")
    columns = tickets(30)
    columns["text"][17] = "   "
    empty = write_rows(tmp_path / "empty.parquet", columns)
    columns = tickets(30)
    columns["id"][21] = None
    missing = write_rows(tmp_path / "missing.parquet", columns)
    template = PromptBuilder.from_template("{n:d} {score:d}")  # a float cannot take :d

    def failure(job: BatchJob, run_id: str) -> str:
        runner = BatchRunner(storage=SQLiteStorage(path=tmp_path / f"{run_id}.sqlite3"))
        with pytest.raises((ItemBuildError, SourceRowError)) as raised:
            runner.start(job, run_id=run_id)
        stored = runner.get_run(run_id).summary().total_items
        return f"{type(raised.value).__name__}: {raised.value} ({stored} stored)"

    for name, path, prompt, payload in [
        ("empty", empty, builder, None),
        ("missing", missing, builder, None),
        ("template", empty, template, None),
        ("wider-payload", empty, builder, ("text", "flag", "n")),
    ]:
        by_columns, by_rows = jobs(path, prompt, OPENAI, payload=payload)
        column_error = failure(by_columns, f"{name}-columns")
        assert column_error == failure(by_rows, f"{name}-rows").replace("-rows", "-columns")
        assert "stored)" in column_error
    assert "t017" in failure(jobs(empty, builder, OPENAI)[0], "again")
    assert "row 22" in failure(jobs(missing, builder, OPENAI)[0], "again-missing")


def test_resumes_where_the_row_path_stopped(tmp_path: Path) -> None:
    """A run whose ingestion stopped after some slices (here: a ``build_prompt`` that
    gives up at row 26) is resumed by the column path: the checkpoints are the same,
    and the run ends as one ingested by rows alone."""
    path = write_rows(tmp_path / "tickets.parquet", tickets(45), row_group_size=4)
    builder = PromptBuilder.from_column("text")
    calls = 0

    def gives_up_at_row_26(item: BatchItem) -> PromptParts:
        nonlocal calls
        calls += 1
        if calls > 25:
            raise RuntimeError("interrupted")
        return builder(item)

    results = {}
    with LocalBatchServer() as server:
        provider = OpenAIProviderConfig(
            model="gpt-4.1-mini", api_key="sk-test", base_url=server.base_url
        )
        for name in ("mixed", "rows"):
            runner = BatchRunner(
                storage=SQLiteStorage(path=tmp_path / f"{name}.sqlite3"),
                artifact_store=LocalArtifactStore(tmp_path / f"{name}-artifacts"),
            )
            by_columns, by_rows = jobs(path, builder, provider, slice_size=10)
            if name == "mixed":
                interrupted = dataclasses.replace(by_rows, build_prompt=gives_up_at_row_26)
                with pytest.raises(ItemBuildError, match="interrupted"):
                    runner.start(interrupted, run_id=name)
                assert runner.get_run(name).summary().total_items == 20
                run = runner.start(by_columns, run_id=name)
            else:
                run = runner.start(by_rows, run_id=name)
            run.wait(timeout=60)
            results[name] = [
                (r.item_id, r.status, r.output_text, r.metadata, r.usage) for r in run.results()
            ]
    assert len(results["mixed"]) == 45
    assert results["mixed"] == results["rows"]
