"""What a user declares: items, prompts, the job and its policies.

These are plain immutable values, validated at construction. A ``BatchJob`` is
only needed by :meth:`BatchRunner.start`; once a run is started, everything it
needs is in storage and the job's callables are never called again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchor.errors import ConfigurationError

if TYPE_CHECKING:
    from batchor.providers.openai import OpenAIProviderConfig
    from batchor.sources.base import CheckpointedItemSource

LINEAGE_KEY = "batchor_lineage"
"""``metadata`` key reserved for source lineage (``source_ref``, ``source_item_index``...)."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One logical input: a unique id, the payload ``build_prompt`` reads, metadata.

    ``metadata`` travels with the item into its result; it must be JSON-serialisable.
    """

    item_id: str
    payload: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.item_id, str) or not self.item_id:
            raise ConfigurationError(
                f"BatchItem.item_id must be a non-empty string, got {self.item_id!r}"
            )


@dataclass(frozen=True, slots=True)
class PromptParts:
    """What ``build_prompt(item)`` returns: the user prompt and an optional system prompt."""

    prompt: str
    system_prompt: str | None = None


class FrozenConfig(BaseModel):
    """Base of batchor's settings objects: immutable, no unknown fields, and invalid
    values raise :class:`ConfigurationError` naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'value'}: "
                + error["msg"].removeprefix("Value error, ")
                for error in exc.errors()
            )
            raise ConfigurationError(f"invalid {type(self).__name__}: {problems}") from exc


class _Policy(FrozenConfig):
    pass


class RetryPolicy(_Policy):
    """How failed items are retried.

    An item is submitted at most ``max_attempts`` times. Retryable failures (rate
    limits, 5xx, expired or failed batches, unparseable replies) wait
    ``backoff_initial_seconds * 2**(attempt-1)`` (capped at ``backoff_max_seconds``)
    before they are submitted again.
    """

    max_attempts: int = Field(default=3, ge=1)
    backoff_initial_seconds: float = Field(default=5.0, ge=0)
    backoff_max_seconds: float = Field(default=600.0, ge=0)

    def backoff_seconds(self, attempt: int) -> float:
        """Delay before submitting again an item that failed on ``attempt`` (1-based)."""
        return float(
            min(self.backoff_max_seconds, self.backoff_initial_seconds * 2 ** (attempt - 1))
        )


class ChunkPolicy(_Policy):
    """Limits for packing items into provider batches and for ingestion slices.

    The defaults are OpenAI's own limits (50,000 requests and 200 MB per input
    file, with a small safety margin on bytes). ``ingest_slice_size`` items are
    stored per transaction while a source is ingested.
    """

    max_requests_per_batch: int = Field(default=50_000, ge=1, le=50_000)
    max_bytes_per_batch: int = Field(default=190 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    ingest_slice_size: int = Field(default=10_000, ge=1)


class ArtifactPolicy(_Policy):
    """What artifacts a run keeps. Request artifacts are always kept (they are how
    retries are rebuilt); raw provider output/error files only when
    ``persist_raw_output_artifacts`` is true."""

    persist_raw_output_artifacts: bool = True


@dataclass(frozen=True)
class BatchJob:
    """A job to run: the items, how each becomes a prompt, and the provider settings.

    ``items`` is any iterable of :class:`BatchItem` or a
    :class:`~batchor.CheckpointedItemSource` (which makes ingestion resumable from
    a checkpoint). ``structured_output`` is a module-level Pydantic model class;
    each reply is validated into it.
    """

    items: Iterable[BatchItem] | CheckpointedItemSource
    build_prompt: Callable[[BatchItem], PromptParts]
    provider_config: OpenAIProviderConfig
    structured_output: type[BaseModel] | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    chunk_policy: ChunkPolicy = field(default_factory=ChunkPolicy)
    artifact_policy: ArtifactPolicy = field(default_factory=ArtifactPolicy)
    batch_metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from batchor.providers.openai import OpenAIProviderConfig

        if not callable(self.build_prompt):
            raise ConfigurationError("BatchJob.build_prompt must be callable: item -> PromptParts")
        if not isinstance(self.provider_config, OpenAIProviderConfig):
            raise ConfigurationError(
                "BatchJob.provider_config must be an OpenAIProviderConfig, "
                f"got {type(self.provider_config).__name__}"
            )
        if self.structured_output is not None and not (
            isinstance(self.structured_output, type)
            and issubclass(self.structured_output, BaseModel)
        ):
            raise ConfigurationError(
                "BatchJob.structured_output must be a Pydantic model class, "
                f"got {self.structured_output!r}"
            )
        for name, policy_type in (
            ("retry_policy", RetryPolicy),
            ("chunk_policy", ChunkPolicy),
            ("artifact_policy", ArtifactPolicy),
        ):
            if not isinstance(getattr(self, name), policy_type):
                raise ConfigurationError(
                    f"BatchJob.{name} must be a {policy_type.__name__}, "
                    f"got {type(getattr(self, name)).__name__}"
                )
        if len(self.batch_metadata) > 12:
            raise ConfigurationError(
                "BatchJob.batch_metadata takes at most 12 keys (OpenAI allows 16 and batchor "
                "uses 4 of them)"
            )
        for key, value in self.batch_metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ConfigurationError(
                    f"BatchJob.batch_metadata must map str to str, got {key!r}: {value!r}"
                )
