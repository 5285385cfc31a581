"""The local server's token count: deliberately crude, exactly specified.

The server uses this count for the enqueued-token limit and for ``usage`` in
replies. A client that wants never to be refused for ``token_limit_exceeded``
needs an estimate that is always >= this one, so the rule is kept this simple:

* every counted string costs ``ceil(utf8_bytes / 4)`` tokens;
* every message (an object in ``messages``, or in a list ``input``) costs 4
  more, plus its ``content``: a string, or a list of parts whose ``text`` string
  is counted (image, file and audio parts count 0);
* ``instructions`` (a string) is counted, without the 4, and so is ``system``
  (Anthropic's: a string, or a list of parts whose ``text`` is counted);
* in a list ``input`` a string item is counted as a string, an integer item is
  one token and a list of integers (a token array) is one token per integer; an
  object with a ``text`` string and no ``role`` (a moderation's text part) is
  counted as its text, without the 4;
* ``prompt`` (completions, images) is counted like ``input``.

Nothing else in the body (model, role, tools, schemas...) is counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TOKENS_PER_MESSAGE = 4
"""Fixed cost of one message, on top of its content."""


def count_text_tokens(text: str) -> int:
    """Return ``ceil(len(text.encode("utf-8")) / 4)``."""
    if text.isascii():
        return (len(text) + 3) // 4
    return (len(text.encode("utf-8")) + 3) // 4


def _count_content(content: object) -> int:
    if isinstance(content, str):
        return count_text_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += count_text_tokens(part)
            elif isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    total += count_text_tokens(text)
        return total
    return 0


def _count_message(message: Mapping[str, Any]) -> int:
    return TOKENS_PER_MESSAGE + _count_content(message.get("content"))


def _count_input(value: object) -> int:
    if isinstance(value, str):
        return count_text_tokens(value)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if isinstance(item, str):
            total += count_text_tokens(item)
        elif isinstance(item, Mapping):
            text = item.get("text")
            if "role" not in item and isinstance(text, str):
                total += count_text_tokens(text)
            else:
                total += _count_message(item)
        elif isinstance(item, list):
            total += len(item)
        elif isinstance(item, int):
            total += 1
    return total


def count_request_tokens(body: Mapping[str, Any]) -> int:
    """Count the prompt tokens of one request body, by the rule in this module's docstring.

    Works for ``/v1/responses`` (``input``, ``instructions``), ``/v1/chat/completions``
    (``messages``), ``/v1/embeddings`` and ``/v1/moderations`` (``input``),
    ``/v1/completions`` and the images endpoints (``prompt``) bodies alike, and for
    the ``params`` of an Anthropic request (``system``, ``messages``).
    """
    total = 0
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        total += count_text_tokens(instructions)
    total += _count_content(body.get("system"))
    total += _count_input(body.get("input"))
    total += _count_input(body.get("prompt"))
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                total += _count_message(message)
    return total
