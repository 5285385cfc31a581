"""Files API: upload (streamed multipart), list, retrieve, content, delete, limits."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from typing import Any

import openai
import pytest
from local_server_kit import BatchKit, make_client

from batchor.testing import LocalBatchServer, ManualClock


def test_upload_returns_a_batch_file_object(kit: BatchKit) -> None:
    uploaded = kit.upload([BatchKit.responses_request("a")])

    assert uploaded.id.startswith("file-")
    assert uploaded.object == "file"
    assert uploaded.purpose == "batch"
    assert uploaded.filename == "requests.jsonl"
    assert uploaded.bytes == len(json.dumps(BatchKit.responses_request("a"))) + 1
    assert uploaded.status == "processed"


def test_retrieve_returns_the_uploaded_file(kit: BatchKit, client: openai.OpenAI) -> None:
    uploaded = kit.upload([BatchKit.responses_request("a")])

    assert client.files.retrieve(uploaded.id) == uploaded


def test_content_returns_the_exact_bytes_of_a_multi_megabyte_upload(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "big.jsonl"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(payload)

    uploaded = client.files.create(file=path, purpose="batch")

    assert uploaded.bytes == len(payload)
    assert client.files.content(uploaded.id).content == payload


def test_list_is_newest_first_and_pages_with_after_and_limit(
    kit: BatchKit, client: openai.OpenAI
) -> None:
    ids = [kit.upload([BatchKit.responses_request(str(i))]).id for i in range(5)]

    first_page = client.files.list(limit=2)
    every_file = [f.id for f in client.files.list(limit=2)]
    oldest_first = [f.id for f in client.files.list(order="asc")]

    assert [f.id for f in first_page.data] == ids[::-1][:2]
    assert first_page.has_more is True
    assert every_file == ids[::-1]
    assert oldest_first == ids


def test_list_filters_by_purpose(kit: BatchKit, client: openai.OpenAI) -> None:
    batch = kit.submit([BatchKit.responses_request("a")])
    output_file_id = kit.retrieve(batch).output_file_id

    outputs = [f.id for f in client.files.list(purpose="batch_output")]

    assert outputs == [output_file_id]


def test_delete_removes_the_file(kit: BatchKit, client: openai.OpenAI) -> None:
    uploaded = kit.upload([BatchKit.responses_request("a")])

    deleted = client.files.delete(uploaded.id)

    assert (deleted.id, deleted.deleted, deleted.object) == (uploaded.id, True, "file")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


@pytest.mark.parametrize("call", ["retrieve", "content", "delete"])
def test_unknown_file_is_not_found(client: openai.OpenAI, call: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        getattr(client.files, call)("file-doesnotexist")

    assert caught.value.status_code == 404
    assert "file-doesnotexist" in caught.value.message


def test_upload_over_max_file_bytes_is_rejected_and_not_stored(tmp_path: Path) -> None:
    with LocalBatchServer(max_file_bytes=1000, data_dir=tmp_path / "s") as server:
        client = make_client(server)

        with pytest.raises(openai.BadRequestError) as caught:
            BatchKit(client).upload_text("x" * 1001)

        assert caught.value.param == "file"
        assert caught.value.code == "file_too_large"
        assert server.files == {}
        assert BatchKit(client).upload_text("x" * 1000).bytes == 1000


def test_upload_with_unknown_purpose_is_rejected(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="holiday")  # type: ignore[arg-type]

    assert caught.value.param == "purpose"


def test_batch_upload_must_be_a_jsonl_file(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("requests.csv", b"a,b\n"), purpose="batch")

    assert caught.value.param == "file"
    assert "jsonl" in caught.value.message


def _raw_post(server: LocalBatchServer, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("POST", "/v1/files", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_upload_without_purpose_names_the_missing_parameter(server: LocalBatchServer) -> None:
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
        b"{}\n\r\n--XyZ--\r\n"
    )
    status, payload = _raw_post(
        server,
        body,
        {"Authorization": "Bearer t", "Content-Type": "multipart/form-data; boundary=XyZ"},
    )

    assert status == 400
    assert payload["error"]["param"] == "purpose"
    assert payload["error"]["code"] == "missing_required_parameter"


def test_chunked_multipart_upload_is_accepted(
    server: LocalBatchServer, client: openai.OpenAI
) -> None:
    content = b'{"custom_id": "a"}\n' * 5000
    body = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="file"; filename="c.jsonl"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--b0undary--\r\n"
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/v1/files")
    connection.putheader("Authorization", "Bearer t")
    connection.putheader("Content-Type", "multipart/form-data; boundary=b0undary")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    for start in range(0, len(body), 7000):
        piece = body[start : start + 7000]
        connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()

    assert response.status == 200, payload
    assert client.files.content(payload["id"]).content == content


def test_raw_bytes_are_accepted_as_a_batch_file_when_they_read_as_jsonl(
    client: openai.OpenAI,
) -> None:
    content = (json.dumps(BatchKit.responses_request("a")) + "\n").encode()

    uploaded = client.files.create(file=content, purpose="batch")

    assert uploaded.filename == "upload"
    assert client.files.content(uploaded.id).content == content


def test_raw_bytes_that_are_not_jsonl_are_refused_for_batch(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=b"id,text\n1,hello\n", purpose="batch")

    assert (caught.value.param, caught.value.code) == ("file", "invalid_file_format")


def test_a_batch_file_expires_after_30_days_unless_told_otherwise(client: openai.OpenAI) -> None:
    default = client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    hour = client.files.create(
        file=("b.jsonl", b"{}\n"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    kept = client.files.create(file=("c.txt", b"notes"), purpose="user_data")

    assert default.expires_at == default.created_at + 30 * 24 * 3600
    assert hour.expires_at == hour.created_at + 3600
    assert kept.expires_at is None


def test_an_expired_file_is_gone(client: openai.OpenAI, clock: ManualClock) -> None:
    uploaded = client.files.create(
        file=("a.jsonl", b"{}\n"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    clock.advance(3599)
    still_there = client.files.retrieve(uploaded.id)
    clock.advance(1)

    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    assert still_there.id == uploaded.id
    assert [f.id for f in client.files.list()] == []


@pytest.mark.parametrize(
    ("expires_after", "param", "code"),
    [
        (
            {"anchor": "created_at", "seconds": 60},
            "expires_after.seconds",
            "integer_below_min_value",
        ),
        (
            {"anchor": "created_at", "seconds": 2_592_001},
            "expires_after.seconds",
            "integer_above_max_value",
        ),
        ({"anchor": "last_active_at", "seconds": 3600}, "expires_after.anchor", "invalid_value"),
    ],
)
def test_expires_after_is_validated_as_the_spec_says(
    client: openai.OpenAI, expires_after: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(
            file=("a.jsonl", b"{}\n"),
            purpose="batch",
            expires_after=expires_after,  # type: ignore[arg-type]
        )

    assert (caught.value.param, caught.value.code) == (param, code)


def test_deletions_are_counted_by_purpose(
    server: LocalBatchServer, kit: BatchKit, client: openai.OpenAI
) -> None:
    batch = kit.retrieve(kit.submit([BatchKit.responses_request("a")]))
    assert batch.output_file_id is not None

    client.files.delete(batch.input_file_id)
    client.files.delete(batch.output_file_id)

    assert server.counters.files_deleted == {"batch": 1, "batch_output": 1}
