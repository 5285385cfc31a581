"""The examples in docs/local-server.md run as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.docs_examples import DOCS, python_blocks

from batchor.testing import LocalBatchServer

DOC = DOCS / "local-server.md"
EXAMPLES = python_blocks(DOC)


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_example_runs(source: str, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_example"}

    exec(compile(source, str(DOC), "exec"), namespace)

    for name, value in namespace.items():
        if name.startswith("test_") and callable(value):
            with LocalBatchServer(data_dir=tmp_path / name) as server:
                value(server)
