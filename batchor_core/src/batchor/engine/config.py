"""What a run stores about its job, and the clock the engine reads.

:class:`RunConfig` is everything needed to drive a run after ``start`` returns
(provider settings without the API key, the structured-output reference and
schema, the policies). Its fingerprint decides whether a resumed ``start`` got
the same job.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from batchor.engine.schema import import_model, model_reference, strict_json_schema
from batchor.job import ArtifactPolicy, BatchJob, ChunkPolicy, RetryPolicy
from batchor.providers.openai import OpenAIProviderConfig
from batchor.storage.base import RetrySchedule


class Clock(Protocol):
    """Time as the engine sees it; tests inject their own."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


OPERATIONAL_PROVIDER_FIELDS = ("base_url", "poll_interval", "request_timeout", "max_retries")


def dumps_canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class RunConfig(BaseModel):
    """A run's stored job configuration (never holds the API key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: OpenAIProviderConfig
    structured_output: str | None = None
    response_schema: dict[str, Any] | None = None
    retry_policy: RetryPolicy = RetryPolicy()
    chunk_policy: ChunkPolicy = ChunkPolicy()
    artifact_policy: ArtifactPolicy = ArtifactPolicy()
    batch_metadata: dict[str, str] = {}

    @classmethod
    def from_job(cls, job: BatchJob) -> RunConfig:
        """The job's config; checks the structured-output schema (strict mode) first."""
        schema = None
        reference = None
        if job.structured_output is not None:
            schema = strict_json_schema(job.structured_output)
            reference = model_reference(job.structured_output)
        return cls(
            provider=job.provider_config,
            structured_output=reference,
            response_schema=schema,
            retry_policy=job.retry_policy,
            chunk_policy=job.chunk_policy,
            artifact_policy=job.artifact_policy,
            batch_metadata=dict(job.batch_metadata),
        )

    def to_json(self) -> str:
        return dumps_canonical(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.model_validate_json(text)

    def fingerprint(self) -> str:
        """Hash of what decides the requests and their results. Operational
        settings (where the API is, how often to poll, timeouts, client retries)
        may change between processes without making it another job."""
        return hashlib.sha256(dumps_canonical(self.identity()).encode()).hexdigest()

    def identity(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for name in OPERATIONAL_PROVIDER_FIELDS:
            data["provider"].pop(name, None)
        return data

    @property
    def schema_name(self) -> str:
        if self.structured_output is None:
            return "output"
        name = self.structured_output.rpartition(":")[2].rpartition(".")[2]
        return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)[:64] or "output"

    def output_model(self) -> type[BaseModel] | None:
        return None if self.structured_output is None else import_model(self.structured_output)

    def retry_schedule(self) -> RetrySchedule:
        policy = self.retry_policy
        return RetrySchedule(
            max_attempts=policy.max_attempts,
            backoff_seconds=tuple(
                policy.backoff_seconds(attempt) for attempt in range(1, policy.max_attempts + 1)
            ),
        )


def describe_differences(stored: Any, current: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON values, by key path."""
    if isinstance(stored, dict) and isinstance(current, dict):
        differences: list[str] = []
        for key in sorted(set(stored) | set(current), key=str):
            differences += describe_differences(
                stored.get(key), current.get(key), f"{path}.{key}" if path else str(key)
            )
        return differences
    if stored != current:
        return [f"{path or 'value'}: {_short(stored)} -> {_short(current)}"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
