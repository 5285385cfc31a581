"""Fault injection: HTTP errors, per-request errors, failed/expired batches, bad output."""

from __future__ import annotations

import json

import openai
import pytest
from local_server_kit import BatchKit, make_client
from openai.types.responses import Response

from batchor.testing import LocalBatchServer

FOUR = [BatchKit.responses_request(str(i), f"prompt {i}") for i in range(4)]


def test_http_429_carries_retry_after_and_fires_once(
    server: LocalBatchServer, kit: BatchKit, client: openai.OpenAI
) -> None:
    server.faults.http_error("POST", "/v1/files", status=429, retry_after=7)

    with pytest.raises(openai.RateLimitError) as caught:
        kit.upload(FOUR)
    uploaded = kit.upload(FOUR)

    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert uploaded.id.startswith("file-")
    assert server.call_counts["POST /v1/files"] == 2


def test_http_500_fires_the_requested_number_of_times_on_any_matching_path(
    server: LocalBatchServer, kit: BatchKit, client: openai.OpenAI
) -> None:
    batch = kit.submit(FOUR)
    server.faults.http_error("GET", "/batches", status=500, times=2)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.batches.retrieve(batch.id)
    assert client.batches.retrieve(batch.id).status == "completed"


def test_an_sdk_client_with_retries_recovers_from_a_transient_429(
    server: LocalBatchServer,
) -> None:
    server.faults.http_error("*", "/v1/batches", status=429, retry_after=0.01)
    client = openai.OpenAI(api_key="t", base_url=server.base_url, max_retries=2, timeout=10)

    page = client.batches.list()

    assert page.data == []
    assert server.call_counts["GET /v1/batches"] == 2


def test_failed_requests_land_in_the_error_file_with_their_status(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.fail_requests(["1"], status_code=500)
    server.faults.fail_requests(["2"], status_code=400, code="invalid_prompt", message="nope")

    batch = kit.retrieve(kit.submit(FOUR))
    errors = kit.errors(batch)

    assert batch.status == "completed"
    assert sorted(kit.outputs(batch)) == ["0", "3"]
    assert errors["1"]["response"]["status_code"] == 500
    assert errors["1"]["response"]["body"]["error"]["type"] == "server_error"
    assert errors["2"]["response"]["body"]["error"] == {
        "message": "nope",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_prompt",
    }
    assert errors["2"]["error"] is None
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 2)


def test_request_faults_fire_the_given_number_of_times(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.fail_requests(["0"])
    server.faults.fail_requests(["1"], times=None)

    first = kit.retrieve(kit.submit(FOUR))
    second = kit.retrieve(kit.submit(FOUR))

    assert sorted(kit.errors(first)) == ["0", "1"]
    assert sorted(kit.errors(second)) == ["1"]


def test_fail_next_batch_fails_at_validation_with_the_given_error(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.fail_next_batch(code="server_error", message="Try again later.")

    failed = kit.retrieve(kit.submit(FOUR))
    next_one = kit.retrieve(kit.submit(FOUR))

    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data is not None
    assert (failed.errors.data[0].code, failed.errors.data[0].message) == (
        "server_error",
        "Try again later.",
    )
    assert failed.in_progress_at is None
    assert failed.output_file_id is None
    assert next_one.status == "completed"


def test_fail_next_batch_with_a_completed_fraction_keeps_partial_results(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.fail_next_batch(completed_fraction=0.5)

    batch = kit.retrieve(kit.submit(FOUR))

    assert batch.status == "failed"
    assert batch.in_progress_at is not None and batch.failed_at is not None
    assert sorted(kit.outputs(batch)) == ["0", "1"]
    assert batch.error_file_id is None


def test_expire_next_batch_writes_batch_expired_errors_for_the_rest(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.expire_next_batch(completed_fraction=0.5)

    batch = kit.retrieve(kit.submit(FOUR))
    errors = kit.errors(batch)

    assert batch.status == "expired"
    assert batch.expired_at is not None
    assert sorted(kit.outputs(batch)) == ["0", "1"]
    assert sorted(errors) == ["2", "3"]
    assert errors["2"]["response"] is None
    assert errors["2"]["error"]["code"] == "batch_expired"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 2)


def test_malformed_output_line_is_not_json_but_names_the_request(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.malform_output(["2"], kind="invalid_json_line")

    batch = kit.retrieve(kit.submit(FOUR))
    raw_lines = kit.client.files.content(batch.output_file_id or "").text.splitlines()

    broken = [line for line in raw_lines if '"custom_id": "2"' in line]
    assert len(raw_lines) == 4
    assert len(broken) == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken[0])
    assert batch.request_counts is not None and batch.request_counts.completed == 4


def test_invalid_reply_text_is_a_valid_line_whose_text_is_not_json(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.malform_output(["1"], kind="invalid_reply_text")
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    text_format = {"format": {"type": "json_schema", "name": "a", "schema": schema, "strict": True}}
    requests = [BatchKit.responses_request(str(i), text=text_format) for i in range(2)]

    outputs = kit.outputs(kit.retrieve(kit.submit(requests)))
    texts = {
        k: Response.model_validate(v["response"]["body"]).output_text for k, v in outputs.items()
    }

    assert isinstance(json.loads(texts["0"])["a"], str)
    with pytest.raises(json.JSONDecodeError):
        json.loads(texts["1"])


def test_clear_forgets_faults_not_yet_fired(server: LocalBatchServer, kit: BatchKit) -> None:
    server.faults.http_error("*", "/v1", status=500, times=None)
    server.faults.fail_next_batch()
    server.faults.fail_requests(["0"])
    server.faults.clear()

    batch = kit.retrieve(kit.submit(FOUR))

    assert batch.status == "completed"
    assert batch.error_file_id is None


@pytest.mark.parametrize(
    "inject",
    [
        lambda f: f.http_error("GET", "/v1/batches", status=200),
        lambda f: f.http_error("GET", "/v1/batches", times=0),
        lambda f: f.fail_requests(["a"], status_code=200),
        lambda f: f.fail_next_batch(completed_fraction=1.5),
        lambda f: f.expire_next_batch(completed_fraction=-0.1),
        lambda f: f.malform_output(["a"], kind="garbled"),
    ],
)
def test_impossible_faults_are_refused(server: LocalBatchServer, inject: object) -> None:
    with pytest.raises(ValueError):
        inject(server.faults)  # type: ignore[operator]


def test_faults_are_per_server(server: LocalBatchServer) -> None:
    server.faults.http_error("*", "/v1", status=500, times=None)
    with LocalBatchServer() as other:
        assert make_client(other).batches.list().data == []


def test_a_missing_line_is_counted_completed_but_absent(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.malform_output(["1"], kind="missing_line")

    batch = kit.retrieve(kit.submit(FOUR))

    assert sorted(kit.outputs(batch)) == ["0", "2", "3"]
    assert batch.request_counts is not None and batch.request_counts.completed == 4
    assert batch.error_file_id is None


def test_an_expired_batch_can_leave_the_rest_without_any_line(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.expire_next_batch(completed_fraction=0.5, expired_lines=False)

    batch = kit.retrieve(kit.submit(FOUR))

    assert batch.status == "expired"
    assert sorted(kit.outputs(batch)) == ["0", "1"]
    assert batch.error_file_id is None
    assert server.counters.requests_executed == {"gpt-4.1": 2}


def test_batch_faults_can_hit_several_batches(server: LocalBatchServer, kit: BatchKit) -> None:
    server.faults.fail_next_batch(times=2)

    statuses = [kit.retrieve(kit.submit(FOUR)).status for _ in range(3)]

    assert statuses == ["failed", "failed", "completed"]


def test_a_request_share_fails_about_that_share_of_every_batch(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.fail_request_share(0.25, status_code=503)
    many = [BatchKit.responses_request(str(i)) for i in range(200)]

    first = kit.retrieve(kit.submit(many))
    second = kit.retrieve(kit.submit(many))
    first_failed, second_failed = set(kit.errors(first)), set(kit.errors(second))

    assert 30 <= len(first_failed) <= 70
    assert first_failed != second_failed  # a resubmitted request draws again
    assert {line["response"]["status_code"] for line in kit.errors(first).values()} == {503}


def test_an_output_share_is_malformed_in_every_batch(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    server.faults.malform_output_share(0.5, kind="missing_line")
    many = [BatchKit.responses_request(str(i)) for i in range(100)]

    batch = kit.retrieve(kit.submit(many))

    assert 30 <= len(kit.outputs(batch)) <= 70
    assert batch.request_counts is not None and batch.request_counts.completed == 100
