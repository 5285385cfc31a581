"""Writing an OpenAI batch's output and error files, in OpenAI's line format.

Output file line (one per request that got a 2xx reply)::

    {"id": "batch_req_...", "custom_id": "...", "error": null,
     "response": {"status_code": 200, "request_id": "req_...", "body": {...}}}

Error file lines: a request that got an HTTP error keeps ``response`` with a
4xx/5xx ``status_code`` and ``body = {"error": {message, type, param, code}}``;
a request that never ran because the batch expired has ``response: null`` and
``error = {"code": "batch_expired", "message": ...}``.

The input file is streamed line by line; nothing holds a whole file in memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from batchor.testing.models import (
    UNKNOWN_ID_SUFFIX,
    MalformKind,
    RequestFault,
    UsageSplit,
)
from batchor.testing.openai_bodies import answer
from batchor.testing.replies import JsonTemplate, Responder, encode_string, hole

EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."

Unanswered = Literal["expire", "drop"]
"""What happens to the requests a batch did not get to: a ``batch_expired`` error
line each (``"expire"``), or no line at all (``"drop"``)."""

_OUTPUT_LINE = JsonTemplate(
    {
        "id": hole("line_id"),
        "custom_id": hole("custom_id"),
        "response": {"status_code": 200, "request_id": hole("request_id"), "body": hole("body")},
        "error": None,
    }
)


@dataclass(slots=True)
class ResultTotals:
    """What writing one batch's results produced. ``completed`` and ``failed`` become
    the batch's ``request_counts`` (``failed`` includes the ``expired`` requests, which
    never ran); the token totals are those the answered requests report."""

    completed: int = 0
    failed: int = 0
    expired: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    output_lines: int = 0
    error_lines: int = 0

    @property
    def executed(self) -> int:
        """Requests that ran: answered with an output line or an HTTP error."""
        return self.completed + self.failed - self.expired


def _error_response(key: str, status_code: int, error: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": status_code, "request_id": f"req_{key}", "body": {"error": error}}


class _ResultWriter:
    """Turns the request lines of one batch into output and error lines."""

    def __init__(
        self,
        *,
        endpoint: str,
        batch_id: str,
        responder: Responder,
        usage: UsageSplit,
        created: int,
        request_faults: Mapping[int, RequestFault],
        malformed: Mapping[int, MalformKind],
        output: TextIO,
        errors: TextIO,
    ) -> None:
        self.endpoint = endpoint
        self.key_prefix = batch_id.removeprefix("batch_")
        self.responder = responder
        self.usage = usage
        self.created = created
        self.request_faults = request_faults
        self.malformed = malformed
        self.output = output
        self.errors = errors
        self.totals = ResultTotals()

    def _emit(self, stream: TextIO, line: dict[str, Any]) -> None:
        stream.write(json.dumps(line))
        stream.write("\n")

    def _fail(self, key: str, custom_id: str, status_code: int, error: dict[str, Any]) -> None:
        line = {
            "id": f"batch_req_{key}",
            "custom_id": custom_id,
            "response": _error_response(key, status_code, error),
            "error": None,
        }
        self._emit(self.errors, line)
        self.totals.failed += 1
        self.totals.error_lines += 1

    def run(self, index: int, request: dict[str, Any]) -> None:
        """Answer one request: an output line, or an error line when it fails."""
        key = f"{self.key_prefix}_{index}"
        custom_id: str = request["custom_id"]
        body: dict[str, Any] = request["body"]
        fault = self.request_faults.get(index)
        if fault is not None:
            error_type = "server_error" if fault.status_code >= 500 else "invalid_request_error"
            error = {
                "message": fault.message,
                "type": error_type,
                "param": None,
                "code": fault.code,
            }
            self._fail(key, custom_id, fault.status_code, error)
            return
        malformation = self.malformed.get(index)
        try:
            reply = answer(
                self.endpoint,
                body,
                key=key,
                created=self.created,
                responder=self.responder,
                usage=self.usage,
                invalid_reply_text=malformation == "invalid_reply_text",
            )
        except Exception as exc:  # a user responder may raise anything
            error = {
                "message": f"The responder raised {type(exc).__name__}: {exc}",
                "type": "server_error",
                "param": None,
                "code": "responder_error",
            }
            self._fail(key, custom_id, 500, error)
            return
        totals = self.totals
        totals.completed += 1
        totals.input_tokens += reply.tokens.input
        totals.cached_tokens += reply.tokens.cached
        totals.output_tokens += reply.tokens.output
        totals.reasoning_tokens += reply.tokens.reasoning
        if malformation == "missing_line":
            return
        if malformation == "unknown_id":
            custom_id += UNKNOWN_ID_SUFFIX
        line = _OUTPUT_LINE.fill(
            {
                "line_id": f'"batch_req_{key}"',
                "custom_id": encode_string(custom_id),
                "request_id": f'"req_{key}"',
                "body": reply.body,
            }
        )
        if malformation == "invalid_json_line":
            line = line[: len(line) // 2]
        self.output.write(line)
        self.output.write("\n")
        totals.output_lines += 1

    def expire(self, index: int, custom_id: str) -> None:
        """Record a request that never ran because the batch expired."""
        line = {
            "id": f"batch_req_{self.key_prefix}_{index}",
            "custom_id": custom_id,
            "response": None,
            "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE},
        }
        self._emit(self.errors, line)
        self.totals.failed += 1
        self.totals.expired += 1
        self.totals.error_lines += 1


def write_results(
    *,
    input_path: Path,
    endpoint: str,
    batch_id: str,
    processed: int,
    unanswered: Unanswered | None,
    request_faults: Mapping[int, RequestFault],
    malformed: Mapping[int, MalformKind],
    responder: Responder,
    usage: UsageSplit,
    created: int,
    output_path: Path,
    error_path: Path,
) -> ResultTotals:
    """Answer the first ``processed`` requests of a validated input file.

    Later requests are handled as ``unanswered`` says; ``None`` is the same as
    ``"drop"`` (a cancelled or failed batch).
    """
    with (
        input_path.open("rb") as lines,
        output_path.open("w", encoding="utf-8") as output,
        error_path.open("w", encoding="utf-8") as errors,
    ):
        writer = _ResultWriter(
            endpoint=endpoint,
            batch_id=batch_id,
            responder=responder,
            usage=usage,
            created=created,
            request_faults=request_faults,
            malformed=malformed,
            output=output,
            errors=errors,
        )
        index = 0
        for raw in lines:
            if not raw.strip():
                continue
            if index >= processed and unanswered != "expire":
                break
            request = json.loads(raw)
            if index < processed:
                writer.run(index, request)
            else:
                writer.expire(index, request["custom_id"])
            index += 1
    return writer.totals
