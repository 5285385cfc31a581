"""What the local server answers to each request of a batch, for every provider.

A *responder* turns a request body into reply text. The default one is
deterministic: for a ``json_schema`` request it returns a JSON instance of the
schema (:mod:`batchor.testing.schema_instance`), otherwise a short text derived
from the prompt. Each provider API wraps that text into the body its endpoint
returns (for OpenAI, :mod:`batchor.testing.openai_bodies`), using
:class:`JsonTemplate` to do so quickly.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

from batchor.testing.schema_instance import generate_schema_instance

Responder = Callable[[dict[str, Any]], str | dict[str, Any]]
"""``responder(request_body) -> reply``: text, or a dict that is sent as its JSON text."""

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
    """Return the text of the request's last message (or its string ``input`` or
    ``prompt``; for a Gemini request, the text parts of its last ``contents`` entry)."""
    contents = body.get("contents")
    if isinstance(contents, list) and contents and isinstance(contents[-1], Mapping):
        return _content_text(contents[-1].get("parts"))
    source = body.get("messages", body.get("input", body.get("prompt")))
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
    Completions: ``response_format`` of type ``json_schema`` with ``json_schema.schema``;
    Anthropic: ``output_config.format`` of type ``json_schema`` with ``schema``, or the
    ``input_schema`` of the tool ``tool_choice`` forces (the reply is its input);
    Gemini: ``generationConfig.responseJsonSchema``, or ``responseSchema`` (its
    OpenAPI form, read as JSON Schema).
    """
    forced = forced_tool(body)
    if forced is not None:
        schema = forced.get("input_schema")
        return schema if isinstance(schema, Mapping) else {}
    output_config = body.get("output_config")
    if isinstance(output_config, Mapping):
        fmt = output_config.get("format")
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            schema = fmt.get("schema")
            return schema if isinstance(schema, Mapping) else {}
    generation = body.get("generationConfig", body.get("generation_config"))
    if isinstance(generation, Mapping):
        for name in ("responseJsonSchema", "response_json_schema"):
            if isinstance(generation.get(name), Mapping):
                return generation[name]  # type: ignore[no-any-return]
        for name in ("responseSchema", "response_schema"):
            if isinstance(generation.get(name), Mapping):
                return _openapi_as_json_schema(generation[name])  # type: ignore[no-any-return]
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


def _openapi_as_json_schema(node: Any) -> Any:
    """A Gemini ``responseSchema`` (OpenAPI's subset: ``OBJECT``, ``nullable``...) as
    the JSON Schema it means."""
    if isinstance(node, list):
        return [_openapi_as_json_schema(value) for value in node]
    if not isinstance(node, Mapping):
        return node
    schema = {
        key: _openapi_as_json_schema(value)
        for key, value in node.items()
        if key not in ("nullable", "propertyOrdering", "property_ordering")
    }
    if isinstance(schema.get("type"), str):
        schema["type"] = schema["type"].lower()
    if node.get("nullable") is True:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def forced_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The tool an Anthropic request's ``tool_choice`` (``{"type": "tool", "name"}``)
    forces the reply to call, if it names one of the request's ``tools``."""
    choice = body.get("tool_choice")
    tools = body.get("tools")
    if not (isinstance(choice, Mapping) and choice.get("type") == "tool"):
        return None
    if not isinstance(tools, list):
        return None
    return next(
        (
            tool
            for tool in tools
            if isinstance(tool, Mapping) and tool.get("name") == choice.get("name")
        ),
        None,
    )


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
