"""Writing a message batch's results, in Anthropic's line format.

One line per request, in a fixed shuffled order (Anthropic does not keep request
order, and neither does the emulator, so clients match lines by ``custom_id``)::

    {"custom_id": "...", "result": {"type": "succeeded", "message": {...}}}
    {"custom_id": "...", "result": {"type": "errored", "error": {"type": "error",
        "error": {"type": "invalid_request_error", "message": "..."}, "request_id": null}}}
    {"custom_id": "...", "result": {"type": "canceled"}}
    {"custom_id": "...", "result": {"type": "expired"}}

A succeeded ``message`` holds the responder's text in a ``text`` block, or, when the
request's ``tool_choice`` forces a tool, the reply as that tool's ``input`` in a
``tool_use`` block. ``params`` are checked here, when the request runs, as Anthropic
checks them: a bad one is ``errored`` with ``invalid_request_error``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from batchor.testing.anthropic_records import error_type_for
from batchor.testing.models import (
    INVALID_REPLY_TEXT,
    UNKNOWN_ID_SUFFIX,
    MalformKind,
    RequestFault,
    UsageSplit,
)
from batchor.testing.replies import (
    JsonTemplate,
    Responder,
    encode_string,
    forced_tool,
    hole,
    reply_text,
)
from batchor.testing.tokens import count_request_tokens, count_text_tokens

Unanswered = Literal["expired", "canceled", "errored", "drop"]
"""What the requests a batch did not get to become: ``expired`` or ``canceled``
lines, ``errored`` lines (a batch fault), or no line at all (``"drop"``)."""

_MESSAGE_LINE = JsonTemplate(
    {
        "custom_id": hole("custom_id"),
        "result": {
            "type": "succeeded",
            "message": {
                "id": hole("message_id"),
                "type": "message",
                "role": "assistant",
                "model": hole("model"),
                "content": hole("content"),
                "stop_reason": hole("stop_reason"),
                "stop_sequence": None,
                "usage": {
                    "input_tokens": hole("input_tokens"),
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": hole("cached_tokens"),
                    "output_tokens": hole("output_tokens"),
                    "service_tier": "batch",
                },
            },
        },
    }
)
_TEXT_CONTENT = JsonTemplate([{"type": "text", "text": hole("text"), "citations": None}])


@dataclass(slots=True)
class ResultTotals:
    """What writing one batch's results produced: the outcome counts, and the
    requests that ran (succeeded or errored while running) by model."""

    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0
    executed: dict[str, int] = field(default_factory=dict)

    def ran(self, model: str) -> None:
        self.executed[model] = self.executed.get(model, 0) + 1


def _errored(custom_id: str, error_type: str, message: str) -> str:
    error = {"type": "error", "error": {"type": error_type, "message": message}}
    return json.dumps(
        {
            "custom_id": custom_id,
            "result": {"type": "errored", "error": {**error, "request_id": None}},
        }
    )


def params_problem(params: Mapping[str, Any]) -> str | None:
    """What Anthropic would refuse in one request's ``params``, or None."""
    model = params.get("model")
    if not isinstance(model, str) or not model:
        return "model: Field required" if model is None else "model: Input should be a valid string"
    max_tokens = params.get("max_tokens")
    if max_tokens is None:
        return "max_tokens: Field required"
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = params.get("messages")
    if messages is None:
        return "messages: Field required"
    if not isinstance(messages, list) or not messages:
        return "messages: List should have at least 1 item after validation, not 0"
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if not isinstance(message.get("content"), str | list):
            return f"messages.{index}.content: Field required"
    if params.get("stream"):
        return "stream: Message Batches do not support streaming"
    return None


class _Writer:
    def __init__(self, *, key: str, responder: Responder, usage: UsageSplit, output: Any) -> None:
        self.key = key
        self.responder = responder
        self.usage = usage
        self.output = output
        self.totals = ResultTotals()

    def emit(self, line: str) -> None:
        self.output.write(line)
        self.output.write("\n")

    def answer(
        self,
        index: int,
        custom_id: str,
        params: dict[str, Any],
        fault: RequestFault | None,
        malformation: MalformKind | None,
    ) -> None:
        """One request that ran: its message, or its error."""
        problem = params_problem(params)
        if problem is not None:
            self.totals.errored += 1
            self.emit(_errored(custom_id, "invalid_request_error", problem))
            return
        self.totals.ran(params["model"])
        if fault is not None:
            self.totals.errored += 1
            self.emit(
                _errored(custom_id, error_type_for(fault.status_code, fault.code), fault.message)
            )
            return
        try:
            text = (
                INVALID_REPLY_TEXT
                if malformation == "invalid_reply_text"
                else reply_text(self.responder, params)
            )
        except Exception as exc:  # a user responder may raise anything
            self.totals.errored += 1
            self.emit(
                _errored(
                    custom_id, "api_error", f"The responder raised {type(exc).__name__}: {exc}"
                )
            )
            return
        self.totals.succeeded += 1
        if malformation == "missing_line":
            return
        if malformation == "unknown_id":
            custom_id += UNKNOWN_ID_SUFFIX
        line = self._message_line(index, custom_id, params, text)
        if malformation == "invalid_json_line":
            line = line[: len(line) // 2]
        self.emit(line)

    def _message_line(
        self, index: int, custom_id: str, params: Mapping[str, Any], text: str
    ) -> str:
        total_input = count_request_tokens(params)
        cached = self.usage.cached_tokens(total_input)
        tool = forced_tool(params)
        tool_input = _json_object(text) if tool is not None else None
        if tool is not None and tool_input is not None:
            content = json.dumps(
                [
                    {
                        "type": "tool_use",
                        "id": f"toolu_{self.key}_{index}",
                        "name": str(tool.get("name", "")),
                        "input": tool_input,
                    }
                ]
            )
            stop_reason = '"tool_use"'
        else:
            content = _TEXT_CONTENT.fill({"text": encode_string(text)})
            stop_reason = '"end_turn"'
        return _MESSAGE_LINE.fill(
            {
                "custom_id": encode_string(custom_id),
                "message_id": f'"msg_{self.key}_{index}"',
                "model": encode_string(str(params.get("model", ""))),
                "content": content,
                "stop_reason": stop_reason,
                "input_tokens": str(total_input - cached),
                "cached_tokens": str(cached),
                "output_tokens": str(count_text_tokens(text)),
            }
        )

    def leave(self, custom_id: str, unanswered: Unanswered, fault_message: str) -> None:
        """One request the batch did not get to."""
        if unanswered == "drop":
            return
        if unanswered == "errored":
            self.totals.errored += 1
            self.emit(_errored(custom_id, "api_error", fault_message))
            return
        if unanswered == "expired":
            self.totals.expired += 1
        else:
            self.totals.canceled += 1
        self.emit(json.dumps({"custom_id": custom_id, "result": {"type": unanswered}}))


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def write_results(
    *,
    requests: Sequence[dict[str, Any]],
    key: str,
    processed: int,
    unanswered: Unanswered,
    fault_message: str,
    request_faults: Mapping[int, RequestFault],
    malformed: Mapping[int, MalformKind],
    responder: Responder,
    usage: UsageSplit,
    output_path: Path,
) -> ResultTotals:
    """Answer the first ``processed`` requests (in request order), leave the others as
    ``unanswered`` says, and write every line in the batch's shuffled order."""
    order = sorted(
        range(len(requests)),
        key=lambda index: zlib.crc32(f"{key}:{requests[index]['custom_id']}".encode()),
    )
    with output_path.open("w", encoding="utf-8") as output:
        writer = _Writer(key=key, responder=responder, usage=usage, output=output)
        for index in order:
            request = requests[index]
            custom_id = str(request["custom_id"])
            if index < processed:
                params = request["params"]
                writer.answer(
                    index, custom_id, params, request_faults.get(index), malformed.get(index)
                )
            else:
                writer.leave(custom_id, unanswered, fault_message)
    return writer.totals
