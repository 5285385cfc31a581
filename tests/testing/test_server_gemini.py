"""The local server's Gemini API, driven by the official ``google-genai`` SDK as a
user would drive Google's: resumable uploads, batches created from a file, their
lifecycle, results, listing, cancel, delete, and Google's error envelopes."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from batchor.testing import BatchPace, LocalBatchServer, ManualClock

MODEL = "gemini-2.5-flash"


def client_for(server: LocalBatchServer, key: str = "AIza-test", **options: Any) -> genai.Client:
    return genai.Client(
        api_key=key,
        vertexai=False,
        http_options=types.HttpOptions(base_url=server.gemini_url, timeout=30_000, **options),
    )


@pytest.fixture
def client(server: LocalBatchServer) -> genai.Client:
    return client_for(server)


def request_line(key: str, text: str = "hello") -> dict[str, Any]:
    return {"key": key, "request": {"contents": [{"role": "user", "parts": [{"text": text}]}]}}


def upload(client: genai.Client, lines: list[dict[str, Any]]) -> types.File:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return client.files.upload(
        file=io.BytesIO(data), config={"mime_type": "jsonl", "display_name": "requests.jsonl"}
    )


def submit(client: genai.Client, keys: list[str], name: str = "job") -> types.BatchJob:
    uploaded = upload(client, [request_line(key) for key in keys])
    assert uploaded.name is not None
    return client.batches.create(model=MODEL, src=uploaded.name, config={"display_name": name})


def results(client: genai.Client, job: types.BatchJob) -> list[dict[str, Any]]:
    assert job.dest is not None and job.dest.file_name is not None
    data = client.files.download(file=job.dest.file_name)
    return [json.loads(line) for line in data.decode().splitlines()]


def test_a_large_upload_goes_in_resumable_chunks(
    client: genai.Client, server: LocalBatchServer
) -> None:
    data = b"x" * (9 * 1024 * 1024)  # two chunks of the SDK's 8 MiB
    uploaded = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})

    assert uploaded.size_bytes == len(data) and uploaded.state == types.FileState.ACTIVE
    assert uploaded.source == types.FileSource.UPLOADED
    assert server.call_counts["POST /gemini/upload/{version}/files"] == 3  # start + 2 chunks
    assert client.files.get(name=uploaded.name or "").sha256_hash == uploaded.sha256_hash
    with pytest.raises(errors.ClientError, match="Only generated files can be downloaded"):
        client.files.download(file=uploaded.name or "")


def test_a_batch_runs_and_answers_every_request_in_input_order(
    server: LocalBatchServer, clock: ManualClock
) -> None:
    client = client_for(server)  # the SDK's default API version, v1
    job = submit(client, ["b", "a", "c"], name="run-1/000001")
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert job.display_name == "run-1/000001" and (job.name or "").startswith("batches/")

    job = client.batches.get(name=job.name or "")
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.done
    lines = results(client, job)
    assert [line["key"] for line in lines] == ["b", "a", "c"]
    reply = types.GenerateContentResponse._from_response(response=lines[0]["response"], kwargs={})
    assert reply.text == "Local reply to: hello"
    assert reply.usage_metadata is not None and reply.usage_metadata.prompt_token_count == 6
    assert server.counters.requests_executed == {MODEL: 3}


def test_any_version_segment_is_accepted(server: LocalBatchServer) -> None:
    for version in ("v1", "v1beta", "v1alpha"):
        client = client_for(server, api_version=version)
        job = submit(client, ["a"], name=version)
        assert client.batches.get(name=job.name or "").state == types.JobState.JOB_STATE_SUCCEEDED


def test_batches_are_listed_newest_first_page_by_page(
    client: genai.Client, server: LocalBatchServer
) -> None:
    names = [submit(client, [f"k{n}"], name=f"job-{n}").display_name for n in range(3)]

    pager = client.batches.list(config={"page_size": 2})
    assert [job.display_name for job in pager.page] == ["job-2", "job-1"]
    assert [job.display_name for job in pager] == names[::-1]
    assert server.call_counts["GET /gemini/{version}/batches"] == 2


@pytest.mark.parametrize("pace", [BatchPace(in_progress=100)])
def test_a_cancelled_batch_keeps_what_it_answered(
    tmp_path: Any, clock: ManualClock, pace: BatchPace
) -> None:
    with LocalBatchServer(clock=clock, pace=pace, data_dir=tmp_path / "s") as server:
        client = client_for(server)
        job = submit(client, [f"k{n}" for n in range(10)])
        clock.advance(50)
        assert client.batches.get(name=job.name or "").state == types.JobState.JOB_STATE_RUNNING
        client.batches.cancel(name=job.name or "")

        job = client.batches.get(name=job.name or "")
        assert job.state == types.JobState.JOB_STATE_CANCELLED
        assert [line["key"] for line in results(client, job)] == [f"k{n}" for n in range(5)]

        finished = submit(client, ["z"])
        clock.advance(100)
        with pytest.raises(errors.ClientError, match="FAILED_PRECONDITION"):
            client.batches.cancel(name=finished.name or "")


def test_a_batch_still_running_after_48_hours_expires_with_no_results(
    tmp_path: Any, clock: ManualClock
) -> None:
    pace = BatchPace(in_progress=3 * 86_400)
    with LocalBatchServer(clock=clock, pace=pace, data_dir=tmp_path / "s") as server:
        client = client_for(server)
        job = submit(client, ["a", "b"])
        clock.advance(48 * 3600)
        job = client.batches.get(name=job.name or "")
        assert job.state == types.JobState.JOB_STATE_EXPIRED and job.dest is None
        assert server.counters.requests_executed == {}


def test_deleted_batches_and_files_are_gone(client: genai.Client, server: LocalBatchServer) -> None:
    job = client.batches.get(name=submit(client, ["a"]).name or "")
    assert job.dest is not None and job.dest.file_name is not None
    client.batches.delete(name=job.name or "")
    client.files.delete(name=job.dest.file_name)

    with pytest.raises(errors.ClientError, match="NOT_FOUND"):
        client.batches.get(name=job.name or "")
    with pytest.raises(errors.ClientError, match="PERMISSION_DENIED"):
        client.files.get(name=job.dest.file_name)
    assert server.counters.files_deleted == {"batch_output": 1}


def test_a_bad_line_fails_only_its_request(client: genai.Client) -> None:
    uploaded = upload(client, [request_line("a"), {"key": "b", "request": {}}, request_line("c")])
    job = client.batches.create(model=MODEL, src=uploaded.name or "", config={"display_name": "x"})
    lines = results(client, client.batches.get(name=job.name or ""))
    assert [sorted(line) for line in lines] == [
        ["key", "response"],
        ["error", "key"],
        ["key", "response"],
    ]
    assert lines[1]["error"]["code"] == 3


@pytest.mark.parametrize(
    ("status", "canonical"), [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE")]
)
def test_injected_faults_arrive_in_googles_error_envelope(
    client: genai.Client, server: LocalBatchServer, status: int, canonical: str
) -> None:
    server.faults.http_error("GET", "/gemini/v1/batches", status, retry_after=3)
    with pytest.raises(errors.APIError) as raised:
        client.batches.list()
    error = raised.value
    assert (error.code, error.status) == (status, canonical)
    details = error.details["error"]["details"]
    assert details == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]


def test_a_call_without_a_valid_key_is_refused(tmp_path: Any) -> None:
    with LocalBatchServer(api_key="AIza-right", data_dir=tmp_path / "s") as server:
        wrong_client, right_client = (
            client_for(server, "AIza-wrong"),
            client_for(server, "AIza-right"),
        )
        with pytest.raises(errors.ClientError) as wrong:
            wrong_client.batches.list()
        assert (wrong.value.code, wrong.value.status) == (400, "INVALID_ARGUMENT")
        assert "API key not valid" in str(wrong.value.message)
        assert wrong.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        assert right_client.batches.list().page == []


def test_creates_are_checked_like_the_api_checks_them(
    client: genai.Client, server: LocalBatchServer
) -> None:
    uploaded = upload(client, [request_line(f"k{n}", "x" * 40) for n in range(3)])
    with pytest.raises(errors.ClientError, match="display_name: required"):
        client.batches.create(model=MODEL, src=uploaded.name or "")
    server.gemini.store.max_requests_per_batch = 2
    with pytest.raises(errors.ClientError, match="at most 2 requests"):
        client.batches.create(model=MODEL, src=uploaded.name or "", config={"display_name": "x"})


@pytest.mark.batchor_server(token_limits={MODEL: 20})
def test_a_create_over_the_enqueued_token_limit_is_refused_with_the_limit(
    batchor_server: LocalBatchServer,
) -> None:
    client = client_for(batchor_server)
    uploaded = upload(client, [request_line("a", "x" * 40), request_line("b", "x" * 40)])
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model=MODEL, src=uploaded.name or "", config={"display_name": "x"})
    assert (refused.value.code, refused.value.status) == (429, "RESOURCE_EXHAUSTED")
    (quota, _help) = refused.value.details["error"]["details"]
    assert quota["violations"][0]["quotaValue"] == "20"
    assert batchor_server.counters.batches_created == {}


def test_a_restarted_server_still_has_its_files_and_batches(tmp_path: Any) -> None:
    with LocalBatchServer(data_dir=tmp_path / "s") as first:
        client = client_for(first)
        job = submit(client, ["a", "b"], name="kept")
    with LocalBatchServer(data_dir=tmp_path / "s") as second:
        client = client_for(second)
        job = client.batches.get(name=job.name or "")
        assert (job.display_name, job.state) == ("kept", types.JobState.JOB_STATE_SUCCEEDED)
        assert [line["key"] for line in results(client, job)] == ["a", "b"]


@pytest.mark.slow
def test_the_command_line_serves_gemini_beside_openai(tmp_path: Any) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "batchor.testing", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()  # the OpenAI API's line
        found = re.search(
            r"(http://127\.0\.0\.1:\d+/gemini) \(GEMINI_BASE_URL\)", process.stdout.readline()
        )
        assert found
        client = genai.Client(
            api_key="AIza-cli", http_options=types.HttpOptions(base_url=found.group(1))
        )
        job = submit(client, ["a"], name="from-the-cli")
        assert client.batches.get(name=job.name or "").state == types.JobState.JOB_STATE_SUCCEEDED
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
