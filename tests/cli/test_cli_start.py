"""``batchor start`` end to end: a Parquet round trip with structured output, and
resuming an ingestion killed half-way."""

from __future__ import annotations

import datetime
import json
import re
import signal

import pyarrow.parquet as pq
import pytest
from cli_kit import (
    STRUCTURED_OUTPUT_MODULE,
    Cli,
    run_id_of,
    tickets,
    write_csv,
    write_parquet,
)

from batchor.testing import LocalBatchServer


@pytest.mark.slow
def test_parquet_input_round_trips_through_start_wait_and_results(cli: Cli) -> None:
    rows = [
        {**row, "received": datetime.date(2026, 3, 29), "ignored": b"\x00binary"}
        for row in tickets(4)
    ]
    write_parquet(cli.cwd / "tickets.parquet", rows)
    (cli.cwd / "cli_models.py").write_text(STRUCTURED_OUTPUT_MODULE)

    started = cli(
        "start", "tickets.parquet",
        "--id-column", "id",
        "--prompt-template", "Triage (priority {priority}, {received}): {text}",
        "--system-prompt", "You triage support tickets.",
        "--structured-output", "cli_models:Triage",
        "--model", "gpt-4.1-mini",
    )  # fmt: skip
    assert started.code == 0, started
    run_id = run_id_of(started)
    assert re.fullmatch(r"batchor_\d{8}T\d{6}Z_[0-9a-f]{8}", run_id)
    assert started.stdout == run_id + "\n"

    waited = cli("wait", run_id, "--poll-interval", "0.1")
    assert waited.code == 0, waited
    progress = [line for line in waited.stderr.splitlines() if line.startswith("[")]
    assert progress, waited  # plain lines on stderr: it is not a terminal
    assert f"] {run_id} completed: 4/4 items terminal (4 completed, 0 failed)" in progress[-1]
    assert "status    completed" in waited.stdout

    written = cli("results", run_id, "--output", "results.parquet")
    assert written.code == 0, written
    assert written.stdout.strip() == f"wrote 4 results to {cli.cwd / 'results.parquet'}"

    table = pq.read_table(cli.cwd / "results.parquet").to_pylist()
    assert sorted(row["item_id"] for row in table) == ["t0", "t1", "t2", "t3"]
    assert {row["status"] for row in table} == {"completed"}
    assert [row["sequence"] for row in table] == [1, 2, 3, 4]
    for row in table:
        output = json.loads(row["output_text"])
        assert set(output) == {"topic", "urgency"}
        assert row["topic"] == output["topic"] and row["topic"] in ("billing", "shipping", "other")
        assert row["urgency"] == output["urgency"]
        assert row["input_tokens"] > 0


@pytest.mark.slow
def test_start_again_with_the_run_id_resumes_an_ingestion_killed_midway(cli: Cli) -> None:
    total = 30_000  # three 10,000-item ingestion slices
    write_csv(cli.cwd / "big.csv", tickets(total))
    arguments = (
        "start", "big.csv", "--id-column", "id", "--prompt-column", "text",
        "--model", "gpt-4.1", "--run-id", "big-run", "--json",
    )  # fmt: skip

    process = cli.spawn(*arguments)
    assert process.stderr is not None
    for line in process.stderr:
        if "ingested 10,000 items" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL

    resumed = cli(*arguments)

    assert resumed.code == 0, resumed
    stored_before = re.search(r"resuming ingestion after ([\d,]+) stored items", resumed.stderr)
    assert stored_before, resumed
    assert 10_000 <= int(stored_before.group(1).replace(",", "")) < total
    summary = resumed.json()
    assert summary["total_items"] == total
    assert summary["ingest_complete"] is True
    assert summary["pending_items"] == total


def test_plan_prints_the_estimate_and_starts_nothing(cli: Cli) -> None:
    write_csv(cli.cwd / "tickets.csv", tickets(12))

    planned = cli(
        "plan", "tickets.csv",
        "--id-column", "id",
        "--prompt-column", "text",
        "--model", "gpt-4.1-mini",
        "--cost-limit", "5",
        "--json",
    )  # fmt: skip
    listed = cli("runs", "--json")

    assert planned.code == 0, planned
    estimate = planned.json()
    assert (estimate["item_count"], estimate["batch_count"]) == (12, 1)
    assert estimate["estimated_cost_usd"] > 0 and estimate["output_tokens_assumed"] is True
    assert json.loads(estimate["first_request_line"])["custom_id"] == "t0"
    assert listed.json() == []


@pytest.mark.slow
def test_another_provider_runs_from_the_command_line_with_its_own_variables(
    cli: Cli, server: LocalBatchServer
) -> None:
    write_csv(cli.cwd / "tickets.csv", tickets(3))
    gemini = cli.without_env("OPENAI_API_KEY", "OPENAI_BASE_URL").with_env(
        GEMINI_API_KEY="gemini-test-key", GEMINI_BASE_URL=server.gemini_url
    )

    started = gemini(
        "start", "tickets.csv",
        "--provider", "gemini",
        "--id-column", "id",
        "--prompt-column", "text",
        "--model", "gemini-2.5-flash",
        "--wait", "--poll-interval", "0.05", "--json",
    )  # fmt: skip
    refused = gemini(
        "start",
        "tickets.csv",
        "--provider",
        "gemini",
        "--id-column",
        "id",
        "--prompt-column",
        "text",
        "--model",
        "m",
        "--endpoint",
        "/v1/embeddings",
    )
    listed = gemini("runs")

    assert started.code == 0, started
    assert started.json()["provider"] == "gemini" and started.json()["completed_items"] == 3
    assert refused.code == 2 and "gemini takes no --endpoint" in refused.stderr
    assert " gemini " in listed.stdout.splitlines()[1]
