"""Shared arrangements for the Gemini tests: the local server's Gemini API, a
``GeminiProviderConfig`` pointed at it, and an environment without stray Google
settings."""

from __future__ import annotations

import pytest
from gemini_kit import GEMINI_KEY, MODEL

from batchor import GeminiProviderConfig
from batchor.testing import LocalBatchServer


@pytest.fixture(autouse=True)
def no_google_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the machine's environment decides where or how the SDK goes."""
    for name in (
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GEMINI_BASE_URL",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_GENAI_API_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def gemini_config(server: LocalBatchServer) -> GeminiProviderConfig:
    return GeminiProviderConfig(
        model=MODEL, api_key=GEMINI_KEY, base_url=server.gemini_url, max_retries=0
    )
