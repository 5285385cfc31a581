"""The examples in docs/local-server.md run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from batchor.testing import LocalBatchServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "local-server.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


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
