"""Token estimation never touches the network and never undercounts the server."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchor.providers import tokens
from batchor.testing import count_request_tokens


@pytest.fixture
def fresh_counter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens.text_token_counter.cache_clear()
    yield tmp_path
    tokens.text_token_counter.cache_clear()


def test_without_a_cached_encoding_the_byte_estimate_is_used(fresh_counter: Path) -> None:
    assert tokens.text_token_counter() is tokens.estimate_text_tokens_by_bytes


def test_a_damaged_cached_encoding_is_ignored_instead_of_downloaded(fresh_counter: Path) -> None:
    cache_file = fresh_counter / hashlib.sha1(tokens._ENCODING_URL.encode()).hexdigest()
    cache_file.write_bytes(b"not an encoding")
    assert tokens.text_token_counter() is tokens.estimate_text_tokens_by_bytes


@pytest.mark.parametrize(
    "prompt, system_prompt",
    [
        ("hello", None),
        ("Summarize: " + "word " * 500, "Be brief."),
        ("日本語のテキスト" * 20, None),
    ],
)
def test_estimates_are_never_below_the_servers_count(
    fresh_counter: Path, prompt: str, system_prompt: str | None
) -> None:
    body = {"model": "gpt-4.1", "input": prompt}
    if system_prompt:
        body["instructions"] = system_prompt
    assert tokens.estimate_prompt_tokens(prompt, system_prompt) >= count_request_tokens(body)


def test_the_default_cache_location_is_the_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    assert os.path.dirname(tokens._tiktoken_cache_path()) == os.path.join(
        tempfile.gettempdir(), "data-gym-cache"
    )
