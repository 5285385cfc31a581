"""Conformance with OpenAI's published OpenAPI document, checked as an outsider would.

One realistic session over raw HTTP (no SDK, no batchor code on the client side):
uploads, retrievals and lists of files, a batch on every endpoint the spec lists,
polling through every status, lists of batches paged with ``limit`` and ``after``,
cancel, expiry, failures, output and error files, deletion, and errors 400, 401,
404, 409 and 429. Every JSON reply is validated against the schema the spec
declares for its operation (errors against ``ErrorResponse``), every output and
error line against ``BatchRequestOutput``, every input line against
``BatchRequestInput``, and every ``response.body`` against the reply schema of its
endpoint. The run's summary prints how many of each were validated.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai_spec import TALLY, VALIDATED_PROPERTY, SpecValidator

from batchor.testing import BatchPace, LocalBatchServer, ManualClock

API_KEY = "sk-conformance-0123456789"
MODEL = "gpt-4.1-mini"
SMALL_MODEL = "gpt-4.1-nano"
PACE = BatchPace(validating=10, in_progress=100, finalizing=10, cancelling=10)

TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["bug", "question"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["label", "urgency"],
    "additionalProperties": False,
}


def _responses(i: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "input": f"Classify ticket {i}",
        "instructions": "Be brief.",
    }
    if i % 2:
        body["text"] = {
            "format": {
                "type": "json_schema",
                "name": "ticket",
                "strict": True,
                "schema": TICKET_SCHEMA,
            }
        }
    return body


BODIES: dict[str, Callable[[int], dict[str, Any]]] = {
    "/v1/responses": _responses,
    "/v1/chat/completions": lambda i: {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"Ticket {i}: the export button does nothing."},
        ],
    },
    "/v1/embeddings": lambda i: {
        "model": "text-embedding-3-small",
        "input": [f"ticket {i}", "the export button"],
    },
    "/v1/completions": lambda i: {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": [f"Ticket {i}:", "Summary:"] if i % 2 else f"Ticket {i}:",
        "max_tokens": 16,
    },
    "/v1/moderations": lambda i: {"model": "omni-moderation-latest", "input": f"ticket {i}"},
    "/v1/images/generations": lambda i: {"model": "gpt-image-1", "prompt": f"A lighthouse {i}"},
    "/v1/images/edits": lambda i: {
        "model": "gpt-image-1",
        "prompt": f"Add a boat {i}",
        "images": [{"image_url": "https://example.com/lighthouse.png"}],
    },
}
"""A realistic request body per endpoint the emulator answers."""


def _line(endpoint: str, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


class RawSession:
    """A client written from the spec: http.client, hand-built multipart, a bearer key.

    Every JSON reply is validated on the way in; :meth:`call` returns the status,
    the headers and the decoded payload (or the raw bytes of a non-JSON reply).
    """

    def __init__(self, server: LocalBatchServer, spec: SpecValidator) -> None:
        self.server = server
        self.spec = spec

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = API_KEY,
    ) -> tuple[int, http.client.HTTPMessage, Any]:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(self.server.host, self.server.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        if response.headers.get_content_type() != "application/json":
            assert response.status == 200, (method, path, response.status)
            return response.status, response.headers, raw
        payload = json.loads(raw)
        self.spec.reply(method, path.split("?")[0].removeprefix("/v1"), response.status, payload)
        return response.status, response.headers, payload

    def ok(self, method: str, path: str, **options: Any) -> Any:
        status, _, payload = self.call(method, path, **options)
        assert status == 200, (method, path, payload)
        return payload

    def upload(
        self, content: bytes, filename: str, purpose: str = "batch", **fields: str
    ) -> tuple[int, Any]:
        boundary = uuid.uuid4().hex
        parts = [(name, value) for name, value in {"purpose": purpose, **fields}.items()]
        body = b"".join(
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in parts
        )
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        body += content + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, _, payload = self.call("POST", "/v1/files", body=body, headers=headers)
        return status, payload

    def submit(
        self,
        endpoint: str,
        lines: list[dict[str, Any]],
        filename: str = "requests.jsonl",
        **create: Any,
    ) -> dict[str, Any]:
        for line in lines:
            self.spec.schema("BatchRequestInput", line, "input lines", line["custom_id"])
        status, uploaded = self.upload(_jsonl(lines), filename)
        assert status == 200, uploaded
        return self.ok(
            "POST",
            "/v1/batches",
            json_body={
                "input_file_id": uploaded["id"],
                "endpoint": endpoint,
                "completion_window": "24h",
                **create,
            },
        )

    def lines(self, file_id: str | None, endpoint: str) -> list[dict[str, Any]]:
        """Download an output or error file and validate every line, and every body."""
        if file_id is None:
            return []
        _, _, raw = self.call("GET", f"/v1/files/{file_id}/content")
        found = []
        for text in raw.decode().splitlines():
            line = json.loads(text)
            where = f"{file_id} line {line['custom_id']}"
            self.spec.schema("BatchRequestOutput", line, "output and error lines", where)
            response = line["response"]
            if response is not None and response["status_code"] == 200:
                self.spec.endpoint_body(endpoint, response["body"], where)
            elif response is not None:
                self.spec.schema("ErrorResponse", response["body"], "error bodies", where)
            found.append(line)
        return found


@pytest.fixture
def session(tmp_path: Path, clock: ManualClock) -> Any:
    with LocalBatchServer(
        pace=PACE,
        clock=clock,
        token_limits={SMALL_MODEL: 50},
        api_key=API_KEY,
        data_dir=tmp_path / "server",
    ) as server:
        yield RawSession(server, SpecValidator())


def _walk_batch_list(session: RawSession) -> list[str]:
    ids: list[str] = []
    after: str | None = None
    while True:
        query = "?limit=2" + (f"&after={after}" if after else "")
        page = session.ok("GET", f"/v1/batches{query}")
        ids += [batch["id"] for batch in page["data"]]
        if not page["has_more"]:
            return ids
        after = page["last_id"]


def test_a_session_over_raw_http_conforms_to_openais_published_spec(
    session: RawSession, clock: ManualClock, record_property: Any
) -> None:
    spec, server = session.spec, session.server
    statuses_seen: set[str] = set()
    before = sum(TALLY.values())

    def look(batch: dict[str, Any]) -> dict[str, Any]:
        current = session.ok("GET", f"/v1/batches/{batch['id']}")
        statuses_seen.add(current["status"])
        return current

    # Files: an upload named like a file, one sent as raw bytes (no extension), one
    # with an expiry; retrieve and list them.
    status, named = session.upload(_jsonl([_line("/v1/responses", "x", _responses(0))]), "in.jsonl")
    status_raw, raw = session.upload(_jsonl([_line("/v1/responses", "y", _responses(1))]), "upload")
    _, expiring = session.upload(
        b'{"a": 1}\n',
        "notes.jsonl",
        "user_data",
        **{"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"},
    )
    assert (status, status_raw) == (200, 200)
    assert named["expires_at"] == named["created_at"] + 30 * 24 * 3600
    assert expiring["expires_at"] == expiring["created_at"] + 3600
    assert session.ok("GET", f"/v1/files/{raw['id']}") == raw

    # A batch on every endpoint the spec lists: answered, or refused like OpenAI refuses
    # an endpoint it does not support.
    endpoints = spec.document["components"]["schemas"]["CreateBatchRequest"]["properties"][
        "endpoint"
    ]["enum"]
    server.faults.fail_requests(["/v1/chat/completions-1"], status_code=500)
    server.faults.fail_requests(["/v1/responses-2"], status_code=400, code="invalid_prompt")
    running: dict[str, dict[str, Any]] = {}
    refused: list[str] = []
    for endpoint in endpoints:
        if endpoint not in BODIES:
            _, uploaded = session.upload(
                _jsonl([_line(endpoint, "v", {"model": "sora-2"})]), "v.jsonl"
            )
            status, _, error = session.call(
                "POST",
                "/v1/batches",
                json_body={
                    "input_file_id": uploaded["id"],
                    "endpoint": endpoint,
                    "completion_window": "24h",
                },
            )
            assert (status, error["error"]["param"]) == (400, "endpoint")
            refused.append(endpoint)
            continue
        lines = [_line(endpoint, f"{endpoint}-{i}", BODIES[endpoint](i)) for i in range(4)]
        running[endpoint] = session.submit(
            endpoint,
            lines,
            filename="upload" if endpoint == "/v1/embeddings" else "requests.jsonl",
            metadata={"run": "conformance", "endpoint": endpoint},
            output_expires_after={"anchor": "created_at", "seconds": 7200},
        )
    assert refused == ["/v1/videos"]

    for step in (0, 10, 50, 50, 10):
        clock.advance(step)
        for endpoint, batch in running.items():
            running[endpoint] = look(batch)
    for endpoint, batch in running.items():
        assert batch["status"] == "completed", batch
        assert batch["usage"]["input_tokens"] > 0
        outputs = session.lines(batch["output_file_id"], endpoint)
        errors = session.lines(batch["error_file_id"], endpoint)
        assert len(outputs) + len(errors) == 4
    assert statuses_seen >= {"validating", "in_progress", "finalizing", "completed"}

    # Cancel while processing: cancelling (twice: the same answer), then cancelled.
    chat = [
        _line("/v1/chat/completions", f"c-{i}", BODIES["/v1/chat/completions"](i))
        for i in range(10)
    ]
    cancelled = session.submit("/v1/chat/completions", chat)
    clock.advance(10 + 30)
    first = session.ok("POST", f"/v1/batches/{cancelled['id']}/cancel")
    again = session.ok("POST", f"/v1/batches/{cancelled['id']}/cancel")
    statuses_seen.add(first["status"])
    clock.advance(10)
    cancelled = look(cancelled)
    assert (first["status"], again["status"], cancelled["status"]) == (
        "cancelling",
        "cancelling",
        "cancelled",
    )
    assert len(session.lines(cancelled["output_file_id"], "/v1/chat/completions")) == 3

    # Expiry: one batch whose window ran out with errors for the rest, one without lines.
    server.faults.expire_next_batch(completed_fraction=0.5)
    server.faults.expire_next_batch(completed_fraction=0.25, expired_lines=False)
    expired = session.submit(
        "/v1/responses", [_line("/v1/responses", f"e-{i}", _responses(i)) for i in range(4)]
    )
    quiet = session.submit(
        "/v1/responses", [_line("/v1/responses", f"q-{i}", _responses(i)) for i in range(4)]
    )
    clock.advance(10 + 100)
    expired, quiet = look(expired), look(quiet)
    assert (expired["status"], quiet["status"]) == ("expired", "expired")
    expired_errors = session.lines(expired["error_file_id"], "/v1/responses")
    assert [line["error"]["code"] for line in expired_errors] == ["batch_expired"] * 2
    assert quiet["error_file_id"] is None
    assert len(session.lines(quiet["output_file_id"], "/v1/responses")) == 1

    # Failures: bad lines, the enqueued-token limit, a batch failing halfway.
    bad_lines = [_line("/v1/responses", "d", _responses(0))] * 2
    invalid = session.submit("/v1/responses", bad_lines)
    too_big = session.submit(
        "/v1/responses",
        [_line("/v1/responses", "big", {"model": SMALL_MODEL, "input": "x" * 400})],
    )
    server.faults.fail_next_batch(completed_fraction=0.5)
    halfway = session.submit(
        "/v1/responses", [_line("/v1/responses", f"h-{i}", _responses(i)) for i in range(4)]
    )
    clock.advance(10 + 100)
    invalid, too_big, halfway = look(invalid), look(too_big), look(halfway)
    assert [e["code"] for e in invalid["errors"]["data"]] == ["duplicate_custom_id"]
    assert too_big["errors"]["data"][0]["code"] == "token_limit_exceeded"
    assert "Limit: 50 enqueued tokens." in too_big["errors"]["data"][0]["message"]
    assert halfway["status"] == "failed"
    assert len(session.lines(halfway["output_file_id"], "/v1/responses")) == 2
    assert statuses_seen == set(
        spec.document["components"]["schemas"]["Batch"]["properties"]["status"]["enum"]
    )

    # Lists: batches newest first in pages of two, files paged and filtered, empty pages.
    every_batch = _walk_batch_list(session)
    assert len(every_batch) == len(set(every_batch)) == len(server.batches)
    empty = session.ok("GET", f"/v1/batches?after={every_batch[-1]}")
    assert (empty["data"], empty["first_id"], empty["last_id"]) == ([], None, None)
    files = session.ok("GET", "/v1/files?limit=3&order=asc")
    rest = session.ok("GET", f"/v1/files?after={files['last_id']}&order=asc")
    outputs = session.ok("GET", "/v1/files?purpose=batch_output")
    assert files["has_more"] and not rest["has_more"]
    assert [f["id"] for f in files["data"] + rest["data"]] == list(server.files)
    assert {f["purpose"] for f in outputs["data"]} == {"batch_output"}

    # Deletion.
    deleted = session.ok("DELETE", f"/v1/files/{named['id']}")
    assert deleted == {"id": named["id"], "object": "file", "deleted": True}

    # Errors, each in OpenAI's envelope (validated by the session as they come).
    batch_id = running["/v1/responses"]["id"]
    server.faults.http_error("GET", "/v1/batches", status=429, retry_after=3)
    throttled = session.call("GET", "/v1/batches")
    window = {"input_file_id": raw["id"], "endpoint": "/v1/responses", "completion_window": "48h"}
    too_short = {"expires_after[anchor]": "created_at", "expires_after[seconds]": "60"}
    answered = [
        session.call("POST", "/v1/batches", json_body=window)[0],
        session.upload(b'{"a": 1}\n', "b.jsonl", **too_short)[0],
        session.call("GET", "/v1/batches", key=None)[0],
        session.call("GET", "/v1/batches", key="sk-wrong-0123456789")[0],
        session.call("GET", f"/v1/files/{named['id']}")[0],
        session.call("GET", "/v1/batches/batch_unknown")[0],
        session.call("GET", "/v1/models")[0],
        session.call("POST", f"/v1/batches/{batch_id}/cancel")[0],
        throttled[0],
    ]
    assert answered == [400, 400, 401, 401, 404, 404, 404, 409, 429]
    assert throttled[1]["retry-after"] == "3"

    kinds = ("JSON replies", "error replies", "input lines", "output and error lines")
    assert all(TALLY[kind] > 0 for kind in (*kinds, "response bodies", "error bodies")), TALLY
    assert TALLY["response bodies"] >= len(BODIES) * 3
    assert sum(TALLY.values()) - before >= 200, TALLY
    record_property(VALIDATED_PROPERTY, dict(TALLY))  # for the summary, from any worker
