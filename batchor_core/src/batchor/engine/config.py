"""What a run stores about its job.

:class:`RunConfig` is everything needed to drive a run after ``start`` returns
(provider settings without the API key, the structured-output reference and
schema, the policies). Its fingerprint decides whether a resumed ``start`` got
the same job.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from batchor.job import ArtifactPolicy, BatchJob, ChunkPolicy, RetryPolicy
from batchor.providers import AnyProviderConfig
from batchor.providers.base import BatchProvider
from batchor.types import canonical_json, import_model, model_reference


class RunConfig(BaseModel):
    """A run's stored job configuration (never holds the API key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: AnyProviderConfig
    structured_output: str | None = None
    response_schema: dict[str, Any] | None = None
    """The JSON schema requests ask for, as the provider's rules shaped it."""
    retry_policy: RetryPolicy = RetryPolicy()
    chunk_policy: ChunkPolicy = ChunkPolicy()
    artifact_policy: ArtifactPolicy = ArtifactPolicy()
    batch_metadata: dict[str, str] = {}

    @classmethod
    def from_job(cls, job: BatchJob) -> RunConfig:
        """The job's config; checks the structured-output schema against the
        provider's rules first."""
        schema = None
        reference = None
        if job.structured_output is not None:
            schema = job.provider_config.output_schema(job.structured_output)
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
        return canonical_json(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.model_validate(_upgraded(json.loads(text)))

    def fingerprint(self) -> str:
        """Hash of what decides the requests and their results. Operational
        settings (where the API is, how often to poll, timeouts, client retries)
        may change between processes without making it another job."""
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()

    def identity(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for name in self.provider.OPERATIONAL_FIELDS:
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

    def create_provider(self, api_key: str | None) -> BatchProvider:
        """The adapter for this run's provider."""
        return self.provider.create_provider(
            api_key=api_key, output_schema=self.response_schema, schema_name=self.schema_name
        )


_VERSION_1_CHUNK_DEFAULTS = {"max_requests_per_batch": 50_000, "max_bytes_per_batch": 199_229_440}


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A config stored by schema version 1 (OpenAI only, fixed chunk limits) in
    today's terms, so its fingerprint matches the same job declared today."""
    data["provider"].setdefault("kind", "openai")
    chunk = data.get("chunk_policy") or {}
    if all(chunk.get(name) == value for name, value in _VERSION_1_CHUNK_DEFAULTS.items()):
        for name in _VERSION_1_CHUNK_DEFAULTS:
            chunk[name] = None
    return data


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
