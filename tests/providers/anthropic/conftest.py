"""Fixtures of the Anthropic tests: a local server, the official ``anthropic`` client
pointed at it, and batchor's settings for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from anthropic_kit import API_KEY, MODEL

from batchor import AnthropicProviderConfig
from batchor.testing import LocalBatchServer


@pytest.fixture(autouse=True)
def no_anthropic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the developer's own Anthropic settings leaks into a test."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalBatchServer]:
    with LocalBatchServer(data_dir=tmp_path / "server") as running:
        yield running


@pytest.fixture
def claude(server: LocalBatchServer) -> anthropic.Anthropic:
    """The official client, as a user would make it, without retries."""
    return anthropic.Anthropic(api_key=API_KEY, base_url=server.url, max_retries=0)


@pytest.fixture
def config(server: LocalBatchServer) -> AnthropicProviderConfig:
    return AnthropicProviderConfig(
        model=MODEL, api_key=API_KEY, base_url=server.url, poll_interval=0.02
    )
