"""The "Deterministic sources" examples of the Python API guide, run exactly as written.

Each example is copied verbatim from the guide. The tests only create what the
examples take for granted (the input files under ``input/`` in the working
directory, an OpenAI endpoint and key in the environment) and then wait for the
run and check what a reader would expect: every row one result, with lineage.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from source_runs_kit import rows, write_file

from batchor import LINEAGE_KEY, BatchRunner, RunStatus, SourceRowError
from batchor.testing import LocalBatchServer

JSONL_SOURCE = """
from batchor import BatchJob, BatchRunner, JsonlItemSource, OpenAIProviderConfig, PromptParts
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
provider_config=OpenAIProviderConfig(model="gpt-4.1"),
),
run_id="customer_export_20260403",
)
"""

PARQUET_SOURCE = """
from batchor import BatchJob, BatchRunner, OpenAIProviderConfig, ParquetItemSource, PromptParts
source = ParquetItemSource(
"input/items.parquet",
item_id_from_row=lambda row: str(row["id"]),
payload_from_row=lambda row: {"text": str(row["text"])},
columns=["id", "text"],
)
runner = BatchRunner()
run = runner.start(
BatchJob(
items=source,
build_prompt=lambda item: PromptParts(prompt=item.payload["text"]),
provider_config=OpenAIProviderConfig(model="gpt-4.1"),
),
run_id="customer_export_20260403",
)
"""

COMPOSITE_SOURCE = """
from batchor import (
BatchJob,
BatchRunner,
CompositeItemSource,
CsvItemSource,
JsonlItemSource,
OpenAIProviderConfig,
PromptParts,
)
source = CompositeItemSource(
[
CsvItemSource(
"input/items-a.csv",
item_id_from_row=lambda row: row["id"],
payload_from_row=lambda row: {"text": row["text"]},
),
JsonlItemSource(
"input/items-b.jsonl",
item_id_from_row=lambda row: str(row["id"]) if isinstance(row, dict) else "",
payload_from_row=lambda row: {"text": row["text"]} if isinstance(row, dict) else {},
),
]
)
runner = BatchRunner()
run = runner.start(
BatchJob(
items=source,
build_prompt=lambda item: PromptParts(prompt=item.payload["text"]),
provider_config=OpenAIProviderConfig(model="gpt-4.1"),
),
run_id="customer_export_20260403",
)
"""

ROWS = rows(12)


def execute(example: str) -> dict[str, Any]:
    """Run an example as a script would, in its own module namespace."""
    scope: dict[str, Any] = {"__name__": "seed_example"}
    exec(compile(textwrap.dedent(example), "<seed example>", "exec"), scope)
    return scope


@pytest.fixture
def workdir(server: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """What the guide takes for granted: an OpenAI endpoint and key, and a working dir."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lineage(path: Path, index: int, key: str, namespace: str | None = None) -> dict[str, Any]:
    return {
        "source_ref": str(path),
        "partition_id": None,
        "source_item_index": index,
        "source_primary_key": key,
        "source_namespace": namespace,
    }


def test_a_jsonl_file(workdir: Path, isolated_home: Path) -> None:
    path = write_file(workdir / "input" / "items.jsonl", ROWS)

    run = execute(JSONL_SOURCE)["run"]

    assert run.run_id == "customer_export_20260403"
    assert run.wait().status is RunStatus.COMPLETED
    results = run.results()
    assert [result.item_id for result in results] == [row["id"] for row in ROWS]
    assert [result.metadata[LINEAGE_KEY] for result in results] == [
        lineage(path, index, row["id"]) for index, row in enumerate(ROWS)
    ]
    assert all(result.output_text for result in results)
    assert (isolated_home / "default.sqlite3").is_file()


def test_rerunning_the_jsonl_example_does_not_duplicate_items(workdir: Path) -> None:
    write_file(workdir / "input" / "items.jsonl", ROWS)
    execute(JSONL_SOURCE)["run"].wait()

    again = execute(JSONL_SOURCE)["run"]

    assert again.summary().total_items == len(ROWS)
    assert len(again.results()) == len(ROWS)


def test_the_jsonl_example_resumes_after_a_bad_line_is_fixed(workdir: Path) -> None:
    many = rows(10_050)
    path = write_file(workdir / "input" / "items.jsonl", many)
    good = path.read_bytes()
    path.write_bytes(good.replace(b'"r10020"', b'"r10020",,'))
    with pytest.raises(SourceRowError, match=r"items\.jsonl, row 10021: invalid JSON"):
        execute(JSONL_SOURCE)
    assert BatchRunner().get_run("customer_export_20260403").summary().total_items == 10_000
    path.write_bytes(good)

    run = execute(JSONL_SOURCE)["run"]

    assert run.summary().total_items == len(many)
    assert run.wait().completed_items == len(many)


def test_a_parquet_file_with_projected_columns(workdir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = workdir / "input" / "items.parquet"
    path.parent.mkdir()
    pq.write_table(
        pa.table(
            {
                "id": list(range(len(ROWS))),
                "text": [row["text"] for row in ROWS],
                "unused": ["x" * 100] * len(ROWS),
            }
        ),
        path,
        row_group_size=5,
    )

    run = execute(PARQUET_SOURCE)["run"]

    assert run.wait().status is RunStatus.COMPLETED
    results = run.results()
    assert [result.item_id for result in results] == [str(n) for n in range(len(ROWS))]
    assert [result.metadata[LINEAGE_KEY] for result in results] == [
        lineage(path, index, str(index)) for index in range(len(ROWS))
    ]


def test_a_composite_of_csv_and_jsonl(workdir: Path) -> None:
    first = write_file(workdir / "input" / "items-a.csv", ROWS[:5])
    second = write_file(workdir / "input" / "items-b.jsonl", ROWS[:3])

    run = execute(COMPOSITE_SOURCE)["run"]

    assert run.wait().status is RunStatus.COMPLETED
    results = run.results()
    assert [result.item_id for result in results] == [
        *(f"0-items-a:{row['id']}" for row in ROWS[:5]),
        *(f"1-items-b:{row['id']}" for row in ROWS[:3]),
    ]
    assert [result.metadata[LINEAGE_KEY] for result in results] == [
        *(lineage(first, n, row["id"], "0-items-a") for n, row in enumerate(ROWS[:5])),
        *(lineage(second, n, row["id"], "1-items-b") for n, row in enumerate(ROWS[:3])),
    ]
