"""docs/dagster.md's examples run as written, against the local server.

The Python blocks run in order in one real module (registered in ``sys.modules``), so
the structured-output class they define is importable by name, as batchor requires.
The component's ``defs.yaml`` is loaded from a defs folder and materialized.
"""

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster.components.testing import copy_code_to_file, create_defs_folder_sandbox
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


def component_yaml() -> str:
    """The page's ``defs.yaml`` for the component."""
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    (block,) = [
        text for text in blocks if text.startswith("type: batchor_dagster.BatchorComponent")
    ]
    return block


def support_tickets_module() -> None:
    import dagster as dg
    import pyarrow as pa

    @dg.asset
    def support_tickets() -> pa.Table:
        return pa.table(
            {
                "ticket_id": ["T1", "T2", "T3"],
                "text": ["Where is my parcel?", "I was charged twice.", "Love the product!"],
            }
        )


def test_the_dagster_page_defs_yaml_loads_and_materializes(
    server: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    text = component_yaml().replace("my_project.models:TicketTriage", "dagster_kit:TicketTriage")

    with create_defs_folder_sandbox() as sandbox:
        copy_code_to_file(support_tickets_module, sandbox.defs_folder_path / "support_tickets.py")
        (sandbox.defs_folder_path / "ticket_triage").mkdir()
        (sandbox.defs_folder_path / "ticket_triage" / "defs.yaml").write_text(text)
        with sandbox.build_all_defs() as defs, dg.instance_for_test() as instance:
            result = defs.get_implicit_global_asset_job_def().execute_in_process(instance=instance)
            specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
            (written,) = result.asset_materializations_for_node("ticket_triage_results")
            rows = pq.read_table(written.metadata["path"].value).num_rows

    assert result.success
    assert rows == 3
    assert specs["ticket_triage_batch"].owners == ["team:support"]
    assert specs["ticket_triage_results"].tags["team"] == "support"
    checks = {check.check_name: check.passed for check in result.get_asset_check_evaluations()}
    assert checks == {"failure_rate": True, "coverage": True, "cost_budget": True}
