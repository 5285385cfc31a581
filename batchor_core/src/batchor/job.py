"""What a user declares: items, prompts, the job and its policies.

These are plain immutable values, validated at construction. A ``BatchJob`` is
only needed by :meth:`BatchRunner.start`; once a run is started, everything it
needs is in storage and the job's callables are never called again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from batchor.errors import ConfigurationError
from batchor.providers.base import ProviderConfig
from batchor.sources.base import CheckpointedItemSource
from batchor.types import BatchItem, FrozenConfig, PromptParts


class _Policy(FrozenConfig):
    pass


class RetryPolicy(_Policy):
    """How failed items are retried, and how often work that never ran is resubmitted.

    An *attempt* is one execution by the provider. An item is executed at most
    ``max_attempts`` times: a retryable failure (rate limit, 5xx, a reply that is
    unparseable or does not validate) waits ``backoff_initial_seconds *
    2**(attempt-1)`` (capped at ``backoff_max_seconds``) before it is submitted
    again; a permanent one fails the item at once.

    A request the provider never executed (left over when its batch expired or was
    cancelled by the provider, missing from a completed batch's results, or in a
    batch the provider failed or rejected as a whole) costs no attempt: it goes
    back to pending at once. ``max_resubmissions`` bounds how often that may happen
    to one item, so a provider that never finishes anything cannot loop forever;
    past it the item fails with the reason it never ran. A batch refused for one
    of the provider's limits is re-planned smaller, which counts as neither.
    """

    max_attempts: int = Field(default=3, ge=1)
    backoff_initial_seconds: float = Field(default=5.0, ge=0)
    backoff_max_seconds: float = Field(default=600.0, ge=0)
    max_resubmissions: int = Field(default=10, ge=0)

    def backoff_seconds(self, attempt: int) -> float:
        """Delay before submitting again an item that failed on ``attempt`` (1-based)."""
        return float(
            min(self.backoff_max_seconds, self.backoff_initial_seconds * 2 ** (attempt - 1))
        )


class ChunkPolicy(_Policy):
    """Limits for packing items into provider batches and for ingestion slices.

    ``max_requests_per_batch`` and ``max_bytes_per_batch`` cap batches below the
    provider's own limits (``None``: the provider's, e.g. OpenAI's 50,000 requests
    and 200 MB per input file). ``ingest_slice_size`` items are stored per
    transaction while a source is ingested.
    """

    max_requests_per_batch: int | None = Field(default=None, ge=1)
    max_bytes_per_batch: int | None = Field(default=None, ge=1024)
    ingest_slice_size: int = Field(default=10_000, ge=1)


class ArtifactPolicy(_Policy):
    """What artifacts a run keeps, here and at the provider.

    Request artifacts are always kept (they are how retries are rebuilt); raw
    provider output/error files only when ``persist_raw_output_artifacts`` is
    true. With ``delete_provider_files`` (the default), once a batch's results are
    recorded batchor deletes what the provider keeps of it (input, output and error
    files, or the batch itself where the API allows), so prompts and replies do not
    sit at the provider until they expire; a failed deletion is retried on the
    next steps and never fails the run.
    """

    persist_raw_output_artifacts: bool = True
    delete_provider_files: bool = True


@dataclass(frozen=True)
class BatchJob:
    """A job to run: the items, how each becomes a prompt, and the provider settings.

    ``items`` is any iterable of :class:`BatchItem` or a
    :class:`~batchor.CheckpointedItemSource` (which makes ingestion resumable from
    a checkpoint). ``structured_output`` is a module-level Pydantic model class;
    each reply is validated into it.

    ``cost_limit_usd`` caps what the run may spend at the provider's batch prices:
    no batch is submitted whose estimated cost would take what was spent plus what
    is in flight above it; the run pauses instead (``control_reason ==
    "cost_limit"``) until :meth:`~batchor.Run.set_cost_limit` raises it.
    """

    items: Iterable[BatchItem] | CheckpointedItemSource
    build_prompt: Callable[[BatchItem], PromptParts]
    provider_config: ProviderConfig
    structured_output: type[BaseModel] | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    chunk_policy: ChunkPolicy = field(default_factory=ChunkPolicy)
    artifact_policy: ArtifactPolicy = field(default_factory=ArtifactPolicy)
    batch_metadata: Mapping[str, str] = field(default_factory=dict)
    cost_limit_usd: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.build_prompt):
            raise ConfigurationError("BatchJob.build_prompt must be callable: item -> PromptParts")
        if not isinstance(self.provider_config, ProviderConfig):
            raise ConfigurationError(
                "BatchJob.provider_config must be a provider's settings such as "
                f"OpenAIProviderConfig(...), got {type(self.provider_config).__name__}"
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
        if self.cost_limit_usd is not None and not (
            isinstance(self.cost_limit_usd, int | float) and self.cost_limit_usd > 0
        ):
            raise ConfigurationError(
                f"BatchJob.cost_limit_usd must be a positive number of USD, got "
                f"{self.cost_limit_usd!r}"
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
