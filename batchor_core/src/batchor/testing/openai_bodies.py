"""The reply body of each OpenAI endpoint a batch can target, as JSON text.

:func:`answer` turns one request body into the body its endpoint would return,
shaped as OpenAI's published spec declares it (the conformance test checks every
one against the spec) and as the SDK's own models parse it:

===========================  ===================================================
``/v1/responses``            a ``response`` with one assistant message (responder text)
``/v1/chat/completions``     a ``chat.completion`` with one ``stop`` choice (responder text)
``/v1/completions``          a ``text_completion``, one choice per prompt (responder text)
``/v1/embeddings``           a ``list`` of deterministic vectors, one per input
``/v1/moderations``          one unflagged result per input, with small fixed scores
``/v1/images/generations``,  ``n`` images (default 1), each the same 1x1 PNG
``/v1/images/edits``
===========================  ===================================================

Token counts follow :mod:`batchor.testing.tokens`, split into cached and reasoning
tokens by the server's :class:`~batchor.testing.UsageSplit`.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchor.testing.models import INVALID_REPLY_TEXT, UsageSplit
from batchor.testing.replies import JsonTemplate, Responder, encode_string, hole, reply_text
from batchor.testing.schema_instance import EqualityCache
from batchor.testing.tokens import count_request_tokens, count_text_tokens

TEXT_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/completions")
"""Endpoints whose replies are text from the responder."""

ANSWERED_ENDPOINTS = (
    *TEXT_ENDPOINTS,
    "/v1/embeddings",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
)
"""Every batch endpoint the emulator answers (``/v1/videos`` is not one of them)."""

DEFAULT_EMBEDDING_DIMENSIONS = 8
"""Length of embedding vectors unless the request asks for ``dimensions``."""


PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
"""The image every images request gets: a 1x1 PNG, base64-encoded."""

IMAGE_OUTPUT_TOKENS = 16
"""Output tokens reported per generated image (a fixed, arbitrary count)."""

MODERATION_CATEGORIES = (
    "hate",
    "hate/threatening",
    "harassment",
    "harassment/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


@dataclass(frozen=True, slots=True)
class ReplyTokens:
    """The tokens one answered request reports; ``cached`` is part of ``input`` and
    ``reasoning`` part of ``output``, as OpenAI counts them."""

    input: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """The JSON text of a reply body, and the tokens it reports."""

    body: str
    tokens: ReplyTokens


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
            "input_tokens_details": {
                "cached_tokens": hole("cached_tokens"),
                "cache_write_tokens": 0,
            },
            "output_tokens": hole("output_tokens"),
            "output_tokens_details": {"reasoning_tokens": hole("reasoning_tokens")},
            "total_tokens": hole("total_tokens"),
        },
        "user": None,
        "metadata": hole("metadata"),
    }
)

_CHAT_USAGE = {
    "prompt_tokens": hole("input_tokens"),
    "completion_tokens": hole("output_tokens"),
    "total_tokens": hole("total_tokens"),
    "prompt_tokens_details": {"cached_tokens": hole("cached_tokens"), "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": hole("reasoning_tokens"),
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

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
        "usage": _CHAT_USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_batchor_local",
    }
)

_TEXT_COMPLETION = JsonTemplate(
    {
        "id": hole("completion_id"),
        "object": "text_completion",
        "created": hole("created"),
        "model": hole("model"),
        "choices": hole("choices"),
        "usage": _CHAT_USAGE,
        "system_fingerprint": "fp_batchor_local",
    }
)


def _text_tokens(text: str, base: ReplyTokens, usage: UsageSplit) -> ReplyTokens:
    text_tokens = count_text_tokens(text)
    reasoning = usage.reasoning_tokens(text_tokens)
    return ReplyTokens(base.input, base.cached, text_tokens + reasoning, reasoning)


def _token_values(tokens: ReplyTokens) -> dict[str, str]:
    return {
        "input_tokens": str(tokens.input),
        "cached_tokens": str(tokens.cached),
        "output_tokens": str(tokens.output),
        "reasoning_tokens": str(tokens.reasoning),
        "total_tokens": str(tokens.input + tokens.output),
    }


@dataclass(frozen=True, slots=True)
class _Request:
    """What every encoder gets: the body, the reply's key, its time, the split rule."""

    body: dict[str, Any]
    key: str
    created: int
    usage: UsageSplit
    tokens: ReplyTokens


def _responses_body(request: _Request, text: str) -> Answer:
    body = request.body
    tokens = _text_tokens(text, request.tokens, request.usage)
    instructions = body.get("instructions")
    max_output_tokens = body.get("max_output_tokens")
    metadata = body.get("metadata")
    text_options = body.get("text")
    fmt = text_options.get("format") if isinstance(text_options, Mapping) else None
    filled = _RESPONSE.fill(
        {
            "response_id": f'"resp_{request.key}"',
            "message_id": f'"msg_{request.key}"',
            "created": str(request.created),
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
            "metadata": json.dumps(metadata) if isinstance(metadata, Mapping) else "{}",
            **_token_values(tokens),
        }
    )
    return Answer(filled, tokens)


def _chat_completion_body(request: _Request, text: str) -> Answer:
    tokens = _text_tokens(text, request.tokens, request.usage)
    filled = _CHAT_COMPLETION.fill(
        {
            "completion_id": f'"chatcmpl-{request.key}"',
            "created": str(request.created),
            "model": encode_string(str(request.body.get("model", ""))),
            "text": encode_string(text),
            **_token_values(tokens),
        }
    )
    return Answer(filled, tokens)


def _prompts(body: Mapping[str, Any]) -> list[Any]:
    """The prompts of a completions body: a string, a token array, or a list of either."""
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        return list(prompt)
    return [prompt]


def _text_completion_body(request: _Request, texts: list[str]) -> Answer:
    tokens = _text_tokens("".join(texts), request.tokens, request.usage)
    choices = [
        {"text": text, "index": index, "logprobs": None, "finish_reason": "stop"}
        for index, text in enumerate(texts)
    ]
    filled = _TEXT_COMPLETION.fill(
        {
            "completion_id": f'"cmpl-{request.key}"',
            "created": str(request.created),
            "model": encode_string(str(request.body.get("model", ""))),
            "choices": json.dumps(choices),
            **_token_values(tokens),
        }
    )
    return Answer(filled, tokens)


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-free vector in [-1, 1] derived from ``text``."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.blake2b(f"{counter}:{text}".encode(), digest_size=64).digest()
        values.extend(round(v / 32767.5 - 1.0, 6) for v in struct.unpack(">32H", digest))
        counter += 1
    return values[:dimensions]


def _inputs(body: Mapping[str, Any]) -> list[Any]:
    """The inputs of an embeddings or moderations body (a token array is one input)."""
    raw = body.get("input")
    if isinstance(raw, list) and raw and not isinstance(raw[0], int):
        return list(raw)
    return [raw]


def _embeddings_body(request: _Request) -> Answer:
    body = request.body
    requested = body.get("dimensions")
    dimensions = (
        requested
        if isinstance(requested, int) and 0 < requested <= 4096
        else DEFAULT_EMBEDDING_DIMENSIONS
    )
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": embedding_vector(json.dumps(item), dimensions),
        }
        for index, item in enumerate(_inputs(body))
    ]
    tokens = request.tokens
    document = {
        "object": "list",
        "data": data,
        "model": str(body.get("model", "")),
        "usage": {"prompt_tokens": tokens.input, "total_tokens": tokens.input},
    }
    return Answer(json.dumps(document), ReplyTokens(tokens.input))


def _moderation_result(item: object) -> dict[str, Any]:
    text = json.dumps(item)
    scores = {
        category: round(zlib.crc32(f"{category}:{text}".encode()) / 2**32 * 1e-3, 6)
        for category in MODERATION_CATEGORIES
    }
    return {
        "flagged": False,
        "categories": dict.fromkeys(MODERATION_CATEGORIES, False),
        "category_scores": scores,
        "category_applied_input_types": {category: ["text"] for category in MODERATION_CATEGORIES},
    }


def _moderations_body(request: _Request) -> Answer:
    document = {
        "id": f"modr-{request.key}",
        "model": str(request.body.get("model", "")),
        "results": [_moderation_result(item) for item in _inputs(request.body)],
    }
    return Answer(json.dumps(document), ReplyTokens(request.tokens.input))


def _images_body(request: _Request) -> Answer:
    requested = request.body.get("n")
    count = requested if isinstance(requested, int) and 1 <= requested <= 10 else 1
    tokens = ReplyTokens(request.tokens.input, output=IMAGE_OUTPUT_TOKENS * count)
    document = {
        "created": request.created,
        "data": [{"b64_json": PNG_1X1}] * count,
        "output_format": "png",
        "usage": {
            "input_tokens": tokens.input,
            "input_tokens_details": {"text_tokens": tokens.input, "image_tokens": 0},
            "output_tokens": tokens.output,
            "output_tokens_details": {"image_tokens": tokens.output, "text_tokens": 0},
            "total_tokens": tokens.input + tokens.output,
        },
    }
    return Answer(json.dumps(document), tokens)


_TextEncoder = Callable[[_Request, str], Answer]
_TEXT_ENCODERS: dict[str, _TextEncoder] = {
    "/v1/responses": _responses_body,
    "/v1/chat/completions": _chat_completion_body,
}


def answer(
    endpoint: str,
    body: dict[str, Any],
    *,
    key: str,
    created: int,
    responder: Responder,
    usage: UsageSplit,
    invalid_reply_text: bool = False,
) -> Answer:
    """The reply body ``endpoint`` returns for request ``body``.

    ``key`` makes the reply's ids (``resp_<key>``, ``chatcmpl-<key>``...); ``created``
    is its timestamp. With ``invalid_reply_text`` a text endpoint replies
    :data:`INVALID_REPLY_TEXT` instead of asking the responder. Raises whatever the
    responder raises.
    """
    input_tokens = count_request_tokens(body)
    request = _Request(
        body, key, created, usage, ReplyTokens(input_tokens, usage.cached_tokens(input_tokens))
    )
    if endpoint == "/v1/embeddings":
        return _embeddings_body(request)
    if endpoint == "/v1/moderations":
        return _moderations_body(request)
    if endpoint in ("/v1/images/generations", "/v1/images/edits"):
        return _images_body(request)
    if endpoint == "/v1/completions":
        prompts = _prompts(body)
        texts = [
            INVALID_REPLY_TEXT
            if invalid_reply_text
            else reply_text(responder, {**body, "prompt": p})
            for p in prompts
        ]
        return _text_completion_body(request, texts)
    text = INVALID_REPLY_TEXT if invalid_reply_text else reply_text(responder, body)
    return _TEXT_ENCODERS[endpoint](request, text)
