"""Offline input-token estimation.

The enqueued-token budget is only safe if estimates never undercount. tiktoken
gives exact counts but downloads its encodings on first use (and, offline,
retries for a long time), so it is used only when its encoding file is already
in the local cache, decided once per process. Otherwise the estimate is
``ceil(utf8_bytes / 3)``: English averages about four bytes per token, so this
overcounts ordinary text by about a third and is close for dense scripts.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable

from batchor.types import ContentPart, PromptParts

MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens added per message for role markers and separators."""

REQUEST_OVERHEAD_TOKENS = 3
"""Tokens added per request for the reply primer."""

_ENCODING_NAME = "o200k_base"
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
_ENCODING_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def estimate_text_tokens_by_bytes(text: str) -> int:
    """Conservative token count of ``text`` without a tokenizer."""
    return -(-len(text.encode("utf-8")) // 3)


def _tiktoken_cache_path() -> str:
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return os.path.join(cache_dir, hashlib.sha1(_ENCODING_URL.encode()).hexdigest())


def _encoding_is_cached() -> bool:
    """Whether tiktoken would load its encoding without the network: the cached
    file exists and is intact (a damaged one would make tiktoken download again)."""
    try:
        with open(_tiktoken_cache_path(), "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest() == _ENCODING_SHA256
    except OSError:
        return False


@functools.cache
def text_token_counter() -> Callable[[str], int]:
    """The best token counter available offline, chosen once per process."""
    if _encoding_is_cached():
        try:
            import tiktoken

            encoding = tiktoken.get_encoding(_ENCODING_NAME)
        except Exception:  # a broken cache or missing package: fall back, never block
            return estimate_text_tokens_by_bytes

        def count_with_tiktoken(text: str) -> int:
            return len(encoding.encode(text, disallowed_special=()))

        return count_with_tiktoken
    return estimate_text_tokens_by_bytes


def estimate_prompt_tokens(prompt: str, system_prompt: str | None, extra_text: str = "") -> int:
    """Estimated input tokens of one request: messages plus fixed overheads.

    ``extra_text`` is counted too (for example the structured-output schema,
    which the provider also reads).
    """
    count = text_token_counter()
    tokens = REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + count(prompt)
    if system_prompt:
        tokens += MESSAGE_OVERHEAD_TOKENS + count(system_prompt)
    if extra_text:
        tokens += count(extra_text)
    return tokens


IMAGE_TOKENS = 1_600
"""Tokens counted per image: above what the providers charge for one large image
(OpenAI's high detail, Anthropic's and Gemini's image tiles), so budgets hold."""


def estimate_prompt_parts_tokens(prompt: PromptParts) -> int:
    """Estimated input tokens of a request built from ``prompt`` (any shape): its
    texts, :data:`IMAGE_TOKENS` per image, and a file's bytes as if they were text
    (a conservative bound for documents)."""
    if not prompt.messages:
        return estimate_prompt_tokens(prompt.prompt, prompt.system_prompt)
    count = text_token_counter()
    system, messages = prompt.conversation()
    tokens = REQUEST_OVERHEAD_TOKENS
    if system:
        tokens += MESSAGE_OVERHEAD_TOKENS + count(system)
    for message in messages:
        tokens += MESSAGE_OVERHEAD_TOKENS
        parts = (
            [ContentPart.of_text(message.content)]
            if isinstance(message.content, str)
            else message.content
        )
        for part in parts:
            if part.kind == "text":
                tokens += count(part.text or "")
            elif part.kind == "image":
                tokens += IMAGE_TOKENS
            else:
                tokens += estimate_text_tokens_by_bytes(part.data or "") * 3 // 4 + 1
    return tokens
