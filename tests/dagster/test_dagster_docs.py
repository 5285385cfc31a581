"""docs/dagster.md's Python examples run as written, against the local server.

The blocks run in order in one real module (registered in ``sys.modules``), so the
structured-output class they define is importable by name, as batchor requires.
"""

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchor.testing import LocalBatchServer

PAGE = Path(__file__).resolve().parents[2] / "docs" / "dagster.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
MODULE = "batchor_dagster_docs_example"


@pytest.fixture
def docs_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType(MODULE)
    sys.modules[MODULE] = module
    yield module
    del sys.modules[MODULE]


def test_the_dagster_page_examples_run(
    docs_module: types.ModuleType,
    server: LocalBatchServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 3

    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"dagster.md example {number}", "exec"), docs_module.__dict__)

    assert docs_module.results.num_rows == 3
