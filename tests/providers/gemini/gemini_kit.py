"""What the Gemini tests share: the key, the model and a retry policy without waits."""

from __future__ import annotations

from batchor import RetryPolicy

GEMINI_KEY = "AIzaSyTest-gemini-secret-0123456789"
MODEL = "gemini-2.5-flash"
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial_seconds=0, backoff_max_seconds=0)
