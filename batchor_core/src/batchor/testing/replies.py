"""What the local server answers to each request of a batch.

A *responder* turns a request body into reply text. The default one is
deterministic: for a ``json_schema`` request it returns a JSON instance of the
schema (:mod:`batchor.testing.schema_instance`), otherwise a short text derived
from the prompt. The ``encode_*`` functions wrap reply text into the JSON text of the
body OpenAI's endpoint would return (a Responses ``response``, a ``chat.completion``, or an
embeddings ``list``), shaped so the SDK's own models validate them.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

from batchor.testing.schema_instance import EqualityCache, generate_schema_instance

Responder = Callable[[dict[str, Any]], str | dict[str, Any]]
"""``responder(request_body) -> reply``: text, or a dict that is sent as its JSON text."""

DEFAULT_EMBEDDING_DIMENSIONS = 8
"""Length of embedding vectors unless the request asks for ``dimensions``."""

_PREVIEW_CHARS = 80


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part if isinstance(part, str) else part.get("text")
            for part in content
            if isinstance(part, (str, Mapping))
        ]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def prompt_text(body: Mapping[str, Any]) -> str:
    """Return the text of the request's last message (or its string ``input``)."""
    source = body.get("messages", body.get("input"))
    if isinstance(source, str):
        return source
    if isinstance(source, list):
        for item in reversed(source):
            if isinstance(item, str):
                return item
            if isinstance(item, Mapping):
                text = _content_text(item.get("content"))
                if text:
                    return text
    return ""


def json_schema_of(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the JSON schema a request asks its reply to follow, if any.

    Responses: ``text.format`` of type ``json_schema`` with ``schema``; Chat
    Completions: ``response_format`` of type ``json_schema`` with ``json_schema.schema``.
    """
    text = body.get("text")
    if isinstance(text, Mapping):
        fmt = text.get("format")
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            schema = fmt.get("schema")
            return schema if isinstance(schema, Mapping) else {}
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return schema if isinstance(schema, Mapping) else {}
    return None


def default_responder(body: dict[str, Any]) -> str:
    """The server's default reply: a schema instance for ``json_schema`` requests, else text.

    Deterministic: the same body always gets the same reply.
    """
    prompt = prompt_text(body)
    schema = json_schema_of(body)
    if schema is not None:
        seed = zlib.crc32(prompt.encode("utf-8"))
        return json.dumps(generate_schema_instance(schema, seed), separators=(",", ":"))
    preview = " ".join(prompt.split())[:_PREVIEW_CHARS]
    return f"Local reply to: {preview}" if preview else "Local reply."


def reply_text(responder: Responder, body: dict[str, Any]) -> str:
    """Call ``responder`` and turn a dict reply into its JSON text."""
    reply = responder(body)
    if isinstance(reply, str):
        return reply
    return json.dumps(reply, separators=(",", ":"))


class JsonTemplate:
    """A JSON document with named holes: serialised once, then filled by joining strings.

    Write the document as it will look, with :func:`hole` where a value varies;
    :meth:`fill` takes every hole's value already encoded as JSON text. Replies are
    produced ~100,000 at a time, and this is several times faster than building and
    serialising a dict per reply.
    """

    def __init__(self, document: Any) -> None:
        pieces = re.split(r'"\\u0000(\w+)\\u0000"', json.dumps(document))
        self._names = pieces[1::2]
        self._statics = pieces.copy()  # fill() overwrites the odd slots (the hole names)

    def fill(self, values: Mapping[str, str]) -> str:
        parts = self._statics.copy()
        parts[1::2] = [values[name] for name in self._names]
        return "".join(parts)


def hole(name: str) -> str:
    """A placeholder for :class:`JsonTemplate`."""
    return f"\x00{name}\x00"


def encode_string(text: str) -> str:
    """JSON text of a string."""
    return encode_basestring_ascii(text)


def _text_config(fmt: Mapping[str, Any] | None) -> str:
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        config: dict[str, Any] = {
            "format": {
                "type": "json_schema",
                "name": str(fmt.get("name", "output")),
                "schema": dict(schema) if isinstance(schema, Mapping) else {},
                "strict": bool(fmt.get("strict", False)),
            }
        }
    elif isinstance(fmt, Mapping) and fmt.get("type") == "json_object":
        config = {"format": {"type": "json_object"}}
    else:
        config = {"format": {"type": "text"}}
    return json.dumps(config)


_TEXT_CONFIGS: EqualityCache[Mapping[str, Any] | None, str] = EqualityCache(_text_config)


def _number_json(value: object, default: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(float(value))
    return default


_RESPONSE = JsonTemplate(
    {
        "id": hole("response_id"),
        "object": "response",
        "created_at": hole("created"),
        "completed_at": hole("created"),
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": hole("instructions"),
        "max_output_tokens": hole("max_output_tokens"),
        "model": hole("model"),
        "output": [
            {
                "id": hole("message_id"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": hole("text"), "annotations": [], "logprobs": []}
                ],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": hole("temperature"),
        "text": hole("text_config"),
        "tool_choice": "auto",
        "tools": [],
        "top_p": hole("top_p"),
        "truncation": "disabled",
        "usage": {
            "input_tokens": hole("input_tokens"),
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": hole("output_tokens"),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": hole("total_tokens"),
        },
        "user": None,
        "metadata": hole("metadata"),
    }
)

_CHAT_COMPLETION = JsonTemplate(
    {
        "id": hole("completion_id"),
        "object": "chat.completion",
        "created": hole("created"),
        "model": hole("model"),
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": hole("text"),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": hole("input_tokens"),
            "completion_tokens": hole("output_tokens"),
            "total_tokens": hole("total_tokens"),
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_batchor_local",
    }
)


def encode_responses_body(
    body: Mapping[str, Any],
    text: str,
    *,
    key: str,
    created: int,
    input_tokens: int,
    output_tokens: int,
) -> str:
    """JSON text of a completed ``/v1/responses`` body: one assistant message with ``text``."""
    instructions = body.get("instructions")
    max_output_tokens = body.get("max_output_tokens")
    metadata = body.get("metadata")
    text_options = body.get("text")
    fmt = text_options.get("format") if isinstance(text_options, Mapping) else None
    return _RESPONSE.fill(
        {
            "response_id": f'"resp_{key}"',
            "message_id": f'"msg_{key}"',
            "created": str(created),
            "instructions": encode_string(instructions)
            if isinstance(instructions, str)
            else "null",
            "max_output_tokens": str(max_output_tokens)
            if isinstance(max_output_tokens, int) and not isinstance(max_output_tokens, bool)
            else "null",
            "model": encode_string(str(body.get("model", ""))),
            "text": encode_string(text),
            "temperature": _number_json(body.get("temperature"), "1.0"),
            "top_p": _number_json(body.get("top_p"), "1.0"),
            "text_config": _TEXT_CONFIGS.get(fmt if isinstance(fmt, Mapping) else None),
            "input_tokens": str(input_tokens),
            "output_tokens": str(output_tokens),
            "total_tokens": str(input_tokens + output_tokens),
            "metadata": json.dumps(metadata) if isinstance(metadata, Mapping) else "{}",
        }
    )


def encode_chat_completion_body(
    body: Mapping[str, Any],
    text: str,
    *,
    key: str,
    created: int,
    input_tokens: int,
    output_tokens: int,
) -> str:
    """JSON text of a ``/v1/chat/completions`` body: one ``stop`` choice carrying ``text``."""
    return _CHAT_COMPLETION.fill(
        {
            "completion_id": f'"chatcmpl-{key}"',
            "created": str(created),
            "model": encode_string(str(body.get("model", ""))),
            "text": encode_string(text),
            "input_tokens": str(input_tokens),
            "output_tokens": str(output_tokens),
            "total_tokens": str(input_tokens + output_tokens),
        }
    )


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-free vector in [-1, 1] derived from ``text``."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.blake2b(f"{counter}:{text}".encode(), digest_size=64).digest()
        values.extend(round(v / 32767.5 - 1.0, 6) for v in struct.unpack(">32H", digest))
        counter += 1
    return values[:dimensions]


def encode_embeddings_body(body: Mapping[str, Any], *, input_tokens: int) -> str:
    """JSON text of a ``/v1/embeddings`` body: one vector per input (``dimensions``, default 8)."""
    raw = body.get("input")
    inputs: list[Any] = (
        raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    )
    requested = body.get("dimensions")
    dimensions = (
        requested
        if isinstance(requested, int) and 0 < requested <= 4096
        else DEFAULT_EMBEDDING_DIMENSIONS
    )
    return json.dumps(
        {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": embedding_vector(json.dumps(item), dimensions),
                }
                for index, item in enumerate(inputs)
            ],
            "model": str(body.get("model", "")),
            "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens},
        }
    )
