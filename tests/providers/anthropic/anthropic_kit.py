"""What the Anthropic tests share: their model, key and retry policy."""

from __future__ import annotations

from batchor import RetryPolicy

MODEL = "claude-haiku-4-5"
API_KEY = "sk-ant-test-batchor-0123456789"
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial_seconds=0, backoff_max_seconds=0)
