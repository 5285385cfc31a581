"""The examples of the storage and workers page (docs/storage-workers.md) run as
written, with the conventions of tests/docs: blocks in order, one namespace, a
temporary working directory, ``OPENAI_BASE_URL`` set to the local server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from batchor.testing import LocalBatchServer

PAGE = Path(__file__).resolve().parents[2] / "docs" / "storage-workers.md"
BLOCK = re.compile(r"(<!-- not-tested[^>]*-->\s*)?```python\n(.*?)```", re.S)


def test_the_workers_page_examples_run(
    server: LocalBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not PAGE.exists():
        pytest.skip("docs/storage-workers.md has been folded into docs/storage.md")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs")
    monkeypatch.chdir(tmp_path)
    blocks = [code for skip, code in BLOCK.findall(PAGE.read_text("utf-8")) if not skip]
    assert blocks
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"storage-workers.md example {number}", "exec"), namespace)

    report = namespace["report"]
    assert report.stop_reason == "idle" and len(report.finished_run_ids) == 2
