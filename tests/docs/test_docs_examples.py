"""The documentation's Python examples run as written, so they cannot rot.

Each page's ```python blocks run in order in one namespace, in a temporary
working directory, with ``OPENAI_BASE_URL`` pointing at the local server. A
block preceded by ``<!-- not-tested: reason -->`` is skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from batchor.testing import LocalBatchServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"(<!-- not-tested[^>]*-->\s*)?```python\n(.*?)```", re.S)
PAGES = ["index.md", "python-api.md", "storage.md"]


def python_blocks(page: Path) -> list[str]:
    """The page's tested Python blocks, in order."""
    return [code for skip, code in BLOCK.findall(page.read_text(encoding="utf-8")) if not skip]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(
    page: str, server: LocalBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no tested examples"
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{page} example {number}", "exec"), namespace)
