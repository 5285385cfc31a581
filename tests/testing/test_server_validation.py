"""Input validation when a batch leaves ``validating``, and the enqueued-token limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from local_server_kit import MODEL, BatchKit, make_client
from openai.types import Batch

from batchor.testing import BatchPace, LocalBatchServer, ManualClock, count_request_tokens


def _validated(kit: BatchKit, text: str, endpoint: str = "/v1/responses") -> Batch:
    uploaded = kit.upload_text(text)
    batch = kit.client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
    )
    return kit.retrieve(batch)


def _line(request: dict[str, Any]) -> str:
    return json.dumps(request) + "\n"


def _request(identifier: str = "a", **changes: Any) -> dict[str, Any]:
    """A valid request with fields replaced (or removed, for None)."""
    request = BatchKit.responses_request(identifier)
    for key, value in changes.items():
        if value is None:
            del request[key]
        else:
            request[key] = value
    return request


GOOD = _line(_request("ok"))


@pytest.mark.parametrize(
    ("bad_line", "code", "param"),
    [
        ("{not json\n", "invalid_json_line", None),
        ("[1, 2]\n", "invalid_json_line", None),
        (_line(_request(custom_id=None)), "missing_required_parameter", "custom_id"),
        (_line(_request(method=None)), "missing_required_parameter", "method"),
        (_line(_request(url=None)), "missing_required_parameter", "url"),
        (_line(_request(body=None)), "missing_required_parameter", "body"),
        (_line(_request(body={"input": "no model"})), "missing_required_parameter", "body.model"),
        (_line(_request(custom_id=7)), "invalid_value", "custom_id"),
        (_line(_request(method="GET")), "invalid_value", "method"),
        (_line(_request(body="text")), "invalid_value", "body"),
        (_line(_request(url="/v1/chat/completions")), "url_mismatch", "url"),
        (
            _line(BatchKit.responses_request("b", model="gpt-4o-mini")),
            "model_mismatch",
            "body.model",
        ),
        (_line(_request("ok")), "duplicate_custom_id", "custom_id"),
    ],
)
def test_a_bad_second_line_fails_the_batch_naming_code_line_and_param(
    kit: BatchKit, bad_line: str, code: str, param: str | None
) -> None:
    batch = _validated(kit, GOOD + bad_line)

    assert batch.status == "failed"
    assert batch.failed_at is not None
    assert batch.errors is not None and batch.errors.object == "list"
    assert batch.errors.data is not None
    [error] = batch.errors.data
    assert (error.code, error.line, error.param) == (code, 2, param)
    assert error.message
    assert batch.output_file_id is None


def test_every_bad_line_is_reported_and_blank_lines_are_skipped(kit: BatchKit) -> None:
    text = "{bad\n" + GOOD + "\n" + _line(_request("x", method="PUT")) + "{also bad\n"

    batch = _validated(kit, text)

    assert batch.errors is not None and batch.errors.data is not None
    assert [(e.code, e.line) for e in batch.errors.data] == [
        ("invalid_json_line", 1),
        ("invalid_value", 4),
        ("invalid_json_line", 5),
    ]


def test_an_empty_file_fails_with_empty_file(kit: BatchKit) -> None:
    batch = _validated(kit, "\n")

    assert batch.errors is not None and batch.errors.data is not None
    assert batch.errors.data[0].code == "empty_file"


def test_more_requests_than_the_limit_fails_with_too_many_tasks(tmp_path: Path) -> None:
    with LocalBatchServer(max_requests_per_batch=3, data_dir=tmp_path / "s") as server:
        kit = BatchKit(make_client(server))
        at_limit = _validated(kit, "".join(_line(_request(str(i))) for i in range(3)))
        over = _validated(kit, "".join(_line(_request(str(i))) for i in range(4)))

    assert at_limit.status == "completed"
    assert over.status == "failed"
    assert over.errors is not None and over.errors.data is not None
    assert over.errors.data[0].code == "too_many_tasks"
    assert "4" in (over.errors.data[0].message or "")


def test_a_batch_over_the_token_limit_fails_with_token_limit_exceeded(tmp_path: Path) -> None:
    request = BatchKit.responses_request("a", "x" * 400)  # 100 tokens
    assert count_request_tokens(request["body"]) == 100
    with LocalBatchServer(token_limits={MODEL: 99}, data_dir=tmp_path / "s") as server:
        batch = BatchKit(make_client(server)).retrieve(
            BatchKit(make_client(server)).submit([request])
        )

    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    error = batch.errors.data[0]
    assert error.code == "token_limit_exceeded"
    assert "Enqueued token limit reached for gpt-4.1" in (error.message or "")
    assert "99" in (error.message or "")


def test_enqueued_tokens_count_live_batches_and_are_freed_when_they_end(tmp_path: Path) -> None:
    clock = ManualClock()
    ten_tokens = [BatchKit.responses_request(str(i), "x" * 40) for i in range(6)]  # 60 tokens
    with LocalBatchServer(
        token_limits={MODEL: 100},
        pace=BatchPace(in_progress=60),
        clock=clock,
        data_dir=tmp_path / "s",
    ) as server:
        kit = BatchKit(make_client(server))
        first = kit.submit(ten_tokens)
        assert server.enqueued_tokens(MODEL) == 60
        second = kit.submit(ten_tokens)
        first_now, second_now = kit.retrieve(first), kit.retrieve(second)
        assert server.enqueued_tokens(MODEL) == 60
        clock.advance(60)
        assert kit.retrieve(first).status == "completed"
        assert server.enqueued_tokens(MODEL) == 0
        third = kit.retrieve(kit.submit(ten_tokens))
        assert server.max_enqueued_tokens_seen == {MODEL: 120}

    assert first_now.status == "in_progress"
    assert second_now.status == "failed"
    assert second_now.errors is not None and second_now.errors.data is not None
    assert second_now.errors.data[0].code == "token_limit_exceeded"
    assert third.status == "in_progress"


def test_the_default_token_limit_applies_to_models_not_listed(tmp_path: Path) -> None:
    request = BatchKit.responses_request("a", "x" * 400, model="gpt-4o-mini")
    with LocalBatchServer(
        token_limits={MODEL: 10_000}, default_token_limit=50, data_dir=tmp_path / "s"
    ) as server:
        kit = BatchKit(make_client(server))
        batch = kit.retrieve(kit.submit([request]))

    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    assert batch.errors.data[0].code == "token_limit_exceeded"


def test_the_token_limit_message_is_worded_as_openai_words_it(tmp_path: Path) -> None:
    request = BatchKit.responses_request("a", "x" * 400)  # 100 tokens
    with LocalBatchServer(token_limits={MODEL: 99}, data_dir=tmp_path / "s") as server:
        kit = BatchKit(make_client(server))
        batch = kit.retrieve(kit.submit([request]))

    assert batch.errors is not None and batch.errors.data is not None
    assert batch.errors.data[0].message == (
        "Enqueued token limit reached for gpt-4.1 in organization org-local. Limit: 99 "
        "enqueued tokens. Please try again once some in_progress batches have been completed."
    )


def test_an_input_file_over_the_batch_byte_limit_fails_the_batch(tmp_path: Path) -> None:
    lines = "".join(_line(_request(str(i))) for i in range(3))
    with LocalBatchServer(max_batch_file_bytes=len(lines) - 1, data_dir=tmp_path / "s") as server:
        kit = BatchKit(make_client(server))
        over = _validated(kit, lines)
        at_limit = _validated(kit, lines[: len(lines) // 2 + 1].rsplit("\n", 1)[0] + "\n")

    assert over.status == "failed"
    assert over.errors is not None and over.errors.data is not None
    [error] = over.errors.data
    assert error.code == "file_too_large"
    assert error.message == (
        f"The batch input file is larger than the {len(lines) - 1} maximum for the gpt-4.1 "
        "model. Please try again with a smaller batch."
    )
    assert at_limit.status == "completed"


def test_too_many_tasks_names_the_limit(tmp_path: Path) -> None:
    with LocalBatchServer(max_requests_per_batch=2, data_dir=tmp_path / "s") as server:
        batch = _validated(
            BatchKit(make_client(server)), "".join(_line(_request(str(i))) for i in range(3))
        )

    assert batch.errors is not None and batch.errors.data is not None
    assert batch.errors.data[0].message == (
        "The batch input file has 3 requests, more than the 2 maximum for the gpt-4.1 model. "
        "Please try again with a smaller batch."
    )
