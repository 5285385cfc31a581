"""Every Python example of docs/use-cases.md runs, in order, in one namespace.

The page's examples read files under ``input/`` and reach OpenAI through
``OPENAI_BASE_URL``; the test writes those files into a temporary working
directory and points the environment at the local server. A block preceded by
``<!-- not-tested: reason -->`` would be skipped (the page has none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.docs_examples import DOCS, python_blocks, run_blocks

from batchor import Run, RunStatus
from batchor.testing import LocalBatchServer

PAGE = DOCS / "use-cases.md"


def write_inputs(directory: Path) -> None:
    """The files the page's examples read (their shapes are shown on the page)."""
    directory.mkdir()
    texts = ["The parcel arrived two weeks late.", "Please refund the second charge."]
    (directory / "items.jsonl").write_text(
        "".join(json.dumps({"id": n, "text": text}) + "\n" for n, text in enumerate(texts, 1))
    )
    (directory / "tickets.csv").write_text(
        "ticket_id,customer_id,body\n"
        'T-1001,C-17,"My order arrived damaged, the box was crushed."\n'
        "T-1002,C-42,I was charged twice for one order.\n"
    )
    pq.write_table(
        pa.table({"id": [1, 2, 3], "text": ["first", "second", "third"], "notes": ["x", "y", "z"]}),
        directory / "items.parquet",
    )
    (directory / "items-a.csv").write_text("id,text\n1,alpha\n2,beta\n3,gamma\n")
    (directory / "items-b.jsonl").write_text(
        '{"id": 1, "text": "delta"}\n{"id": 17, "text": "e"}\n'
    )
    (directory / "legacy.pipe").write_text("L-1|an old complaint\nL-2|another one\n")
    (directory / "orders.jsonl").write_text(
        '{"id": "O-1", "text": "Cancel my order."}\n'
        '{"id": "O-2", "text": "Change the address."}\n'
        '{"id": "O-3", "text": "Where is my parcel?"\n'
        '{"id": "O-4", "text": "Send an invoice."}\n'
    )


def test_the_page_covers_the_use_cases() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for heading in (
        "## One file",
        "## Several files as one run",
        "## Your own format",
        "## Resume after a crash",
        "## Bad rows",
    ):
        assert heading in text
    assert len(python_blocks(PAGE)) >= 10
    assert "<!-- not-tested" not in text


def test_every_example_runs_in_order(
    server: LocalBatchServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs")
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path / "input")
    namespace: dict[str, Any] = {"__name__": "use_cases"}

    run_blocks(PAGE, namespace)

    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("1 completed ")
    assert "C-17" in printed
    assert "('0-items-a', '1-items-b')" in printed
    assert "['0-items-a:1', '0-items-a:2', '0-items-a:3']" in printed
    assert str(tmp_path / "input" / "items-b.jsonl") in printed
    assert "1 17 1-items-b" in printed
    assert "0-legacy:L-1" in printed
    assert any(
        line.startswith("3 ") and "orders.jsonl, row 3: invalid JSON" in line for line in printed
    )
    assert printed[-1] == "4"
    run = namespace["run"]
    assert isinstance(run, Run) and run.status is RunStatus.COMPLETED
