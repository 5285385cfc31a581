"""The local server speaks Anthropic's Message Batches API as the official ``anthropic``
SDK expects it: plain SDK scripts, no batchor, on a manual clock."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic_kit import API_KEY, MODEL
from pydantic import BaseModel, ConfigDict

from batchor.testing import AnthropicLimits, BatchPace, LocalBatchServer, ManualClock, UsageSplit

HOUR = 3600.0


def request(custom_id: str, text: str = "Say hello", **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": text}],
            **params,
        },
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(tmp_path: Path, clock: ManualClock) -> Iterator[LocalBatchServer]:
    pace = BatchPace(in_progress=60, per_request=1, cancelling=5)
    with LocalBatchServer(clock=clock, pace=pace, data_dir=tmp_path / "server") as running:
        yield running


def results_of(client: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    return {line.custom_id: line.result for line in client.messages.batches.results(batch_id)}


def test_a_batch_runs_from_create_to_results_to_delete(
    server: LocalBatchServer, claude: anthropic.Anthropic, clock: ManualClock
) -> None:
    batch = claude.messages.batches.create(requests=[request(f"r{n}") for n in range(3)])  # type: ignore[misc]
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3 and batch.request_counts.succeeded == 0
    assert batch.expires_at.timestamp() - batch.created_at.timestamp() == 24 * HOUR
    assert batch.results_url is None and batch.ended_at is None

    clock.advance(63)  # 60 s + 1 s per request
    ended = claude.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.model_dump() == {
        "processing": 0,
        "succeeded": 3,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert ended.results_url == f"{server.url}/v1/messages/batches/{batch.id}/results"
    assert ended.ended_at is not None

    results = results_of(claude, batch.id)
    assert sorted(results) == ["r0", "r1", "r2"]
    message = results["r0"].message
    assert message.content[0].text == "Local reply to: Say hello"
    assert (message.role, message.stop_reason, message.usage.service_tier) == (
        "assistant",
        "end_turn",
        "batch",
    )

    assert claude.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError) as raised:
        claude.messages.batches.retrieve(batch.id)
    assert raised.value.type == "not_found_error" and raised.value.request_id


def test_lists_page_newest_first_both_ways(claude: anthropic.Anthropic) -> None:
    made = [claude.messages.batches.create(requests=[request("a")]).id for _ in range(5)]  # type: ignore[misc]
    newest_first = made[::-1]

    assert [batch.id for batch in claude.messages.batches.list(limit=2)] == newest_first
    page = claude.messages.batches.list(limit=2, after_id=newest_first[1])
    assert [batch.id for batch in page.data] == newest_first[2:4] and page.has_more
    page = claude.messages.batches.list(limit=2, before_id=newest_first[3])
    assert [batch.id for batch in page.data] == newest_first[1:3] and page.has_more
    assert (page.first_id, page.last_id) == (newest_first[1], newest_first[2])


def test_results_come_in_their_own_order_with_each_outcome(
    tmp_path: Path, clock: ManualClock
) -> None:
    with LocalBatchServer(
        clock=clock, data_dir=tmp_path / "s", usage=UsageSplit(cached_fraction=0.5)
    ) as server:
        client = anthropic.Anthropic(api_key=API_KEY, base_url=server.url, max_retries=0)
        server.faults.fail_requests(["r1"], status_code=529, message="busy")
        requests = [request(f"r{n}", "x" * 40) for n in range(20)]
        requests[2]["params"]["max_tokens"] = 0  # judged when it runs, not at create
        batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        lines = list(client.messages.batches.results(batch.id))

    assert [line.custom_id for line in lines] != [r["custom_id"] for r in requests]
    results = {line.custom_id: line.result for line in lines}
    assert results["r1"].type == "errored"
    assert (results["r1"].error.error.type, results["r1"].error.error.message) == (
        "overloaded_error",
        "busy",
    )
    assert results["r2"].error.error.type == "invalid_request_error"
    assert "max_tokens" in results["r2"].error.error.message
    usage = results["r0"].message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (7, 7)  # 4 + 10, half cached


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    score: float


def test_structured_output_and_forced_tools_get_replies_that_match_their_schema(
    claude: anthropic.Anthropic, clock: ManualClock
) -> None:
    schema = anthropic.transform_schema(Verdict)
    tool = {"name": "emit", "description": "Emit a verdict", "input_schema": schema}
    batch = claude.messages.batches.create(
        requests=[  # type: ignore[list-item]
            request("json", output_config={"format": {"type": "json_schema", "schema": schema}}),
            request("tool", tools=[tool], tool_choice={"type": "tool", "name": "emit"}),
        ]
    )
    clock.advance(62)
    results = results_of(claude, batch.id)

    Verdict.model_validate_json(results["json"].message.content[0].text)
    (call,) = results["tool"].message.content
    assert (call.type, call.name, results["tool"].message.stop_reason) == (
        "tool_use",
        "emit",
        "tool_use",
    )
    Verdict.model_validate(call.input)


def test_a_cancelled_batch_keeps_what_ran_and_cancels_the_rest(
    claude: anthropic.Anthropic, clock: ManualClock
) -> None:
    batch = claude.messages.batches.create(requests=[request(f"r{n}") for n in range(10)])  # type: ignore[misc]
    clock.advance(35)  # half of the 70 s of processing
    canceling = claude.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None

    clock.advance(5)
    ended = claude.messages.batches.retrieve(batch.id)
    assert (ended.processing_status, ended.request_counts.succeeded) == ("ended", 5)
    assert ended.request_counts.canceled == 5
    assert (
        sorted(r.type for r in results_of(claude, batch.id).values())
        == ["canceled"] * 5 + ["succeeded"] * 5
    )


def test_a_batch_not_done_in_24_hours_expires_the_rest(tmp_path: Path, clock: ManualClock) -> None:
    slow = BatchPace(in_progress=48 * HOUR)
    with LocalBatchServer(clock=clock, pace=slow, data_dir=tmp_path / "s") as server:
        client = anthropic.Anthropic(api_key=API_KEY, base_url=server.url, max_retries=0)
        batch = client.messages.batches.create(requests=[request(f"r{n}") for n in range(4)])  # type: ignore[misc]
        clock.advance(24 * HOUR)
        ended = client.messages.batches.retrieve(batch.id)

    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.expired) == (2, 2)


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests: List should have at least 1 item after validation, not 0"),
        ([request("x" * 65)], "requests.0.custom_id: String should have at most 64 characters"),
        (
            [request("ok"), request("not ok")],
            "requests.1.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'",
        ),
        ([request("same"), request("same")], "requests.1.custom_id: Duplicate custom_id 'same'"),
        ([{"custom_id": "a"}], "requests.0.params: Field required"),
        ([request(f"r{n}") for n in range(4)], "requests: List should have at most 3 items"),
    ],
    ids=["empty", "long-id", "bad-id", "duplicate-id", "no-params", "too-many"],
)
def test_a_bad_create_is_refused_at_once_naming_the_field(
    tmp_path: Path, requests: list[dict[str, Any]], message: str
) -> None:
    limits = AnthropicLimits(max_requests_per_batch=3)
    with LocalBatchServer(anthropic_limits=limits, data_dir=tmp_path / "s") as server:
        client = anthropic.Anthropic(api_key=API_KEY, base_url=server.url, max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as raised:
            client.messages.batches.create(requests=requests)  # type: ignore[arg-type]

    assert raised.value.type == "invalid_request_error"
    assert raised.value.api_message is not None and raised.value.api_message.startswith(message)


def test_limits_answer_413_for_bytes_and_429_for_a_full_queue(tmp_path: Path) -> None:
    limits = AnthropicLimits(max_batch_bytes=1_000, queued_request_limit=2)
    with LocalBatchServer(anthropic_limits=limits, data_dir=tmp_path / "s") as server:
        client = anthropic.Anthropic(api_key=API_KEY, base_url=server.url, max_retries=0)
        with pytest.raises(anthropic.RequestTooLargeError) as too_large:
            client.messages.batches.create(requests=[request(f"r{n}") for n in range(10)])  # type: ignore[misc]
        with pytest.raises(anthropic.RateLimitError) as queue_full:
            client.messages.batches.create(requests=[request(f"r{n}") for n in range(3)])  # type: ignore[misc]

    assert too_large.value.type == "request_too_large"
    assert queue_full.value.type == "rate_limit_error"
    assert "processing queue would exceed the limit of 2" in str(queue_full.value.api_message)
    assert queue_full.value.response.headers["retry-after"] == "1"


def test_an_unended_batch_cannot_be_deleted(claude: anthropic.Anthropic) -> None:
    batch = claude.messages.batches.create(requests=[request("a")])  # type: ignore[list-item]
    with pytest.raises(anthropic.BadRequestError) as raised:
        claude.messages.batches.delete(batch.id)
    assert "cannot be deleted while it is in_progress" in str(raised.value.api_message)


def test_injected_faults_come_in_anthropics_envelope_and_are_retried_by_the_sdk(
    server: LocalBatchServer,
) -> None:
    server.faults.http_error("GET", "/messages/batches", 529, times=2, retry_after=0.01)
    retrying = anthropic.Anthropic(api_key=API_KEY, base_url=server.url, max_retries=2)
    assert retrying.messages.batches.list().data == []
    assert server.call_counts["GET /v1/messages/batches"] == 3

    server.faults.http_error("GET", "/messages/batches", 529, times=1, code="capacity")
    with pytest.raises(anthropic.OverloadedError) as raised:
        anthropic.Anthropic(
            api_key=API_KEY, base_url=server.url, max_retries=0
        ).messages.batches.list()
    assert raised.value.body == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": "Overloaded",
            "details": {"error_code": "capacity"},
        },
        "request_id": raised.value.request_id,
    }


def raw_get(server: LocalBatchServer, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    call = urllib.request.Request(f"{server.url}/v1/messages/batches", headers=headers)
    try:
        with urllib.request.urlopen(call) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_credentials_come_as_x_api_key_or_bearer_with_a_version(tmp_path: Path) -> None:
    with LocalBatchServer(api_key="sk-ant-right", data_dir=tmp_path / "s") as server:
        version = {"anthropic-version": "2023-06-01"}
        assert raw_get(server, {"x-api-key": "sk-ant-right", **version})[0] == 200
        assert raw_get(server, {"Authorization": "Bearer sk-ant-right", **version})[0] == 200
        status, body = raw_get(server, {"x-api-key": "sk-ant-wrong", **version})
        assert (status, body["error"]) == (
            401,
            {"type": "authentication_error", "message": "invalid x-api-key"},
        )
        status, body = raw_get(server, {"x-api-key": "sk-ant-right"})
        assert (status, body["error"]["type"]) == (400, "invalid_request_error")
        assert body["error"]["message"] == "anthropic-version: header is required"


@pytest.mark.slow
def test_the_command_line_serves_anthropic_with_its_limits(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "batchor.testing", "--port", "0"]
    command += ["--data-dir", str(tmp_path / "served"), "--anthropic-queue-limit", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        announced = process.stdout.readline()
        found = re.search(r"Anthropic at (http://127\.0\.0\.1:\d+)", announced)
        assert found, announced
        client = anthropic.Anthropic(api_key=API_KEY, base_url=found.group(1), max_retries=0)
        with pytest.raises(anthropic.RateLimitError):
            client.messages.batches.create(requests=[request(f"r{n}") for n in range(3)])  # type: ignore[misc]
        assert (
            client.messages.batches.create(requests=[request("r0")]).request_counts.processing == 1
        )  # type: ignore[list-item]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
