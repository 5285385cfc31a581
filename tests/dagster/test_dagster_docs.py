"""docs/dagster.md's Python examples run as written, against the local server.

The blocks run in order in one real module (registered in ``sys.modules``), so the
structured-output class they define is importable by name, as batchor requires.
"""

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.docs_examples import DOCS, python_blocks, run_blocks

from batchor.testing import LocalBatchServer

PAGE = DOCS / "dagster.md"
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
    assert len(python_blocks(PAGE)) >= 3

    run_blocks(PAGE, docs_module.__dict__)

    assert docs_module.results.num_rows == 3
