"""The documentation's Python examples run as written, so they cannot rot.

Each page's ```python blocks run in order in one namespace, in a temporary
working directory, with ``OPENAI_BASE_URL`` pointing at the local server. A
block preceded by ``<!-- not-tested: reason -->`` is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.docs_examples import DOCS, python_blocks, run_blocks

from batchor.testing import LocalBatchServer

PAGES = ["index.md", "python-api.md", "storage.md", "providers.md"]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(
    page: str, server: LocalBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs")
    monkeypatch.chdir(tmp_path)
    assert python_blocks(DOCS / page), f"{page} has no tested examples"
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    run_blocks(DOCS / page, namespace)
