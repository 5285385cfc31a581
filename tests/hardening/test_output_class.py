"""Paid results stay readable whatever becomes of the structured-output class.

A class changed after the run (a required field added) and a class no other
process can import (defined in a script's ``__main__``) both leave every result
loadable: ``output=None``, the stored ``output_text``, and ``output_error``
saying why. A process that cannot import the class still collects the run,
checking each reply against the schema its request asked for.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.cli.cli_kit import TEST_API_KEY, Cli, deterministic_environment, run_concurrently

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ItemStatus,
    OpenAIProviderConfig,
    PromptParts,
    SQLiteStorage,
)
from batchor.testing import LocalBatchServer, default_responder

TRIAGE = """
from typing import Literal

from pydantic import BaseModel


class Triage(BaseModel):
    topic: Literal["billing", "shipping"]
    urgency: int
"""
TRIAGE_WITH_CONFIDENCE = TRIAGE + "    confidence: float\n"


def test_results_of_a_class_that_gained_a_required_field_still_load_and_export(
    server: LocalBatchServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    (tmp_path / "models.py").write_text(TRIAGE)
    models = importlib.import_module("models")
    monkeypatch.delitem(sys.modules, "models")
    storage = SQLiteStorage(path=tmp_path / "runs.sqlite3")
    BatchRunner(storage=storage).run_and_wait(
        BatchJob(
            items=[BatchItem(f"t{number}", f"ticket {number}") for number in range(3)],
            build_prompt=lambda item: PromptParts(prompt=item.payload),
            provider_config=OpenAIProviderConfig(
                model="gpt-4.1", api_key=TEST_API_KEY, base_url=server.base_url
            ),
            structured_output=models.Triage,
        ),
        run_id="triaged",
    )
    (tmp_path / "models.py").write_text(TRIAGE_WITH_CONFIDENCE)
    importlib.invalidate_caches()

    run = BatchRunner(storage=storage).get_run("triaged")
    results = run.results()
    page = run.read_terminal_results(limit=10)
    exported = run_concurrently(
        {
            name: (cli(server, tmp_path), ["results", "triaged", "-o", name])
            for name in ("results.jsonl", "results.parquet")
        }
    )

    assert [result.item_id for result in page.items] == [result.item_id for result in results]
    for result in [*results, *page.items]:
        assert result.status is ItemStatus.COMPLETED and result.output is None
        assert json.loads(result.output_text or "")["topic"] in ("billing", "shipping")
        assert "field 'confidence': Field required" in (result.output_error or "")
    assert all(outcome.code == 0 for outcome in exported.values()), exported
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    rows = pq.read_table(tmp_path / "results.parquet").to_pylist()
    for record in [*records, *rows]:
        assert record["status"] == "completed"
        assert json.loads(record["output_text"])["urgency"] is not None
        assert "field 'confidence': Field required" in record["output_error"]
    assert [record["output"] for record in records] == [None] * 3
    assert [row["confidence"] for row in rows] == [None] * 3


def cli(server: LocalBatchServer, directory: Path) -> Cli:
    return Cli(
        directory,
        deterministic_environment(
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY=TEST_API_KEY,
            BATCHOR_HOME=str(directory / "home"),
            BATCHOR_STORAGE="sqlite:///runs.sqlite3",
        ),
    )


MAIN_SCRIPT = """
import sys
from typing import Literal

from pydantic import BaseModel

from batchor import (
    BatchItem, BatchJob, BatchRunner, OpenAIProviderConfig, PromptParts, RetryPolicy,
    SQLiteStorage,
)


class Verdict(BaseModel):
    label: Literal["spam", "ham"]


runner = BatchRunner(storage=SQLiteStorage(path=sys.argv[1]))
run = runner.start(
    BatchJob(
        items=[BatchItem(f"mail{number}", f"mail {number}") for number in range(4)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=OpenAIProviderConfig(
            model="gpt-4.1", api_key="sk-test-main", base_url=sys.argv[2]
        ),
        structured_output=Verdict,
        retry_policy=RetryPolicy(max_attempts=1),
    ),
    run_id="from_main",
)
run.refresh()
print(run.summary().batches_in_flight)
"""


def odd_verdict_for_mail2(body: dict[str, Any]) -> str | dict[str, Any]:
    """Replies that satisfy the schema, except for ``mail 2``: a label it does not allow."""
    if body.get("input") == "mail 2":
        return {"label": "maybe"}
    return default_responder(body)


def test_a_run_whose_class_lives_in_main_is_collected_and_read_by_another_process(
    tmp_path: Path,
) -> None:
    script = tmp_path / "classify.py"
    script.write_text(MAIN_SCRIPT)
    with LocalBatchServer(responder=odd_verdict_for_mail2) as server:
        started = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "runs.sqlite3"), server.base_url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (started.returncode, started.stdout) == (0, "1\n"), started.stderr
        cli = Cli(
            tmp_path,
            deterministic_environment(
                OPENAI_API_KEY="sk-test-cli",
                BATCHOR_HOME=str(tmp_path / "home"),
                BATCHOR_STORAGE="sqlite:///runs.sqlite3",
            ),
        )
        waited = cli("wait", "from_main", "--json")
    results = BatchRunner(storage=SQLiteStorage(path=tmp_path / "runs.sqlite3")).get_run(
        "from_main"
    )

    assert waited.code == 1, waited
    assert (waited.json()["completed_items"], waited.json()["failed_items"]) == (3, 1)
    by_id = {result.item_id: result for result in results.results()}
    refused = by_id.pop("mail2")
    assert refused.error is not None and refused.error.code == "invalid_output"
    assert "does not validate as Verdict: label: must be one of 'spam', 'ham'" in (
        refused.error.message
    )
    for result in by_id.values():
        assert json.loads(result.output_text or "")["label"] in ("spam", "ham")
        assert result.output is None
        assert "cannot import the structured-output class '__main__:Verdict'" in (
            result.output_error or ""
        )
