"""batchor: durable, typed runs of large LLM jobs through the OpenAI Batch API.

The public names, re-exported; everything else is an implementation detail.
"""

from batchor.artifacts.base import ArtifactStore
from batchor.artifacts.fsspec import FsspecArtifactStore
from batchor.artifacts.local import LocalArtifactStore
from batchor.errors import (
    ArtifactRuleError,
    BatchorError,
    ConfigurationError,
    DuplicateItemIdError,
    InputError,
    ItemBuildError,
    ProviderError,
    RunNotFinishedError,
    RunNotFoundError,
    RunStateError,
    RunTimeoutError,
    SourceMismatchError,
    SourceRowError,
    StorageError,
    StructuredOutputImportError,
    StructuredOutputSchemaError,
)
from batchor.job import (
    LINEAGE_KEY,
    ArtifactPolicy,
    BatchItem,
    BatchJob,
    ChunkPolicy,
    PromptParts,
    RetryPolicy,
)
from batchor.providers.openai import OpenAIEnqueueLimitConfig, OpenAIProviderConfig
from batchor.results import (
    ArtifactExport,
    ArtifactPrune,
    ItemError,
    ItemResult,
    ItemStatus,
    RunControlState,
    RunStatus,
    RunSummary,
    TerminalResultsExport,
    TerminalResultsPage,
    TokenUsage,
)
from batchor.run import Run
from batchor.runner import BatchRunner
from batchor.sources import (
    CheckpointedItem,
    CheckpointedItemSource,
    CompositeItemSource,
    CsvItemSource,
    JsonlItemSource,
    ParquetItemSource,
)
from batchor.storage import MemoryStorage, PostgresStorage, SQLiteStorage, Storage
from batchor.worker import WorkerReport, run_worker

__all__ = [
    "LINEAGE_KEY",
    "ArtifactExport",
    "ArtifactPolicy",
    "ArtifactPrune",
    "ArtifactRuleError",
    "ArtifactStore",
    "BatchItem",
    "BatchJob",
    "BatchRunner",
    "BatchorError",
    "CheckpointedItem",
    "CheckpointedItemSource",
    "ChunkPolicy",
    "CompositeItemSource",
    "ConfigurationError",
    "CsvItemSource",
    "DuplicateItemIdError",
    "FsspecArtifactStore",
    "InputError",
    "ItemBuildError",
    "ItemError",
    "ItemResult",
    "ItemStatus",
    "JsonlItemSource",
    "LocalArtifactStore",
    "MemoryStorage",
    "OpenAIEnqueueLimitConfig",
    "OpenAIProviderConfig",
    "ParquetItemSource",
    "PostgresStorage",
    "PromptParts",
    "ProviderError",
    "RetryPolicy",
    "Run",
    "RunControlState",
    "RunNotFinishedError",
    "RunNotFoundError",
    "RunStateError",
    "RunStatus",
    "RunSummary",
    "RunTimeoutError",
    "SQLiteStorage",
    "SourceMismatchError",
    "SourceRowError",
    "Storage",
    "StorageError",
    "StructuredOutputImportError",
    "StructuredOutputSchemaError",
    "TerminalResultsExport",
    "TerminalResultsPage",
    "TokenUsage",
    "WorkerReport",
    "run_worker",
]
