"""Every exception batchor raises, in one hierarchy.

Each message says what was wrong, where (run, item, file, row, field) and, when
there is one, what to do about it. Catch :class:`BatchorError` to handle them all::

    BatchorError
    ├── ConfigurationError            a setting is invalid (also a ValueError)
    │   └── StructuredOutputSchemaError   the output model breaks the provider's schema rules
    ├── InputError                    an input item is unusable (also a ValueError)
    │   ├── DuplicateItemIdError
    │   ├── ItemBuildError            build_prompt failed or returned something unusable
    │   └── SourceRowError            a file row is malformed (file, row, field)
    ├── SourceMismatchError           start(job, run_id=...) got another source or job
    ├── StructuredOutputImportError   a stored run's output class cannot be imported
    ├── RunNotFoundError              no such run in the storage (also a LookupError)
    ├── RunNotFinishedError           a terminal-only operation on an active run
    ├── RunStateError                 the run's state forbids the operation
    ├── RunTimeoutError               wait(timeout=...) elapsed (also a TimeoutError)
    ├── ArtifactRuleError             an export or prune would break a retention rule
    ├── StorageError                  the database failed, or is from another version
    │   └── StorageConflictError      a write collided with a stored row
    └── ProviderError                 a call to the provider's API failed
        ├── TransientProviderError    rate limit, 5xx, timeout, connection: retried later
        ├── ProviderRejectedError     the provider refused the call as made (400, 404, 422)
        │   └── BatchRefusedError     ... because the batch breaks one of its limits
        ├── QuotaExhaustedError       out of quota or billing inactive
        └── ProviderAuthenticationError   the credentials are missing, wrong or not allowed

Errors from lower layers (SQLAlchemy, the provider SDKs) are translated into these
at one boundary each: :mod:`batchor.storage.database` for the database, each
provider module for its SDK. Messages never carry credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BatchorError(Exception):
    """Base class of every batchor error."""


class ConfigurationError(BatchorError, ValueError):
    """A job, policy or provider setting is invalid (the message names the field)."""


class StructuredOutputSchemaError(ConfigurationError):
    """The structured-output model's JSON schema breaks the provider's rules (for
    OpenAI, strict mode). ``path`` is the JSON pointer of the offending schema node."""

    def __init__(self, message: str, *, path: str = "#") -> None:
        super().__init__(message)
        self.path = path


class InputError(BatchorError, ValueError):
    """An input item is unusable; nothing already stored was changed."""


class DuplicateItemIdError(InputError):
    """Two input rows carry the same ``item_id``."""


class ItemBuildError(InputError):
    """Turning an item into a request failed (``build_prompt`` raised, empty prompt,
    payload that is not JSON-serialisable, a request the provider cannot take, ...)."""


class SourceRowError(InputError):
    """A row of a file source is malformed or missing a field.

    ``source_ref`` is the file, ``row_number`` the 1-based row (line) number and
    ``field`` the column, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        source_ref: str,
        row_number: int | None = None,
        field: str | None = None,
    ) -> None:
        where = source_ref if row_number is None else f"{source_ref}, row {row_number}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
        self.source_ref = source_ref
        self.row_number = row_number
        self.field = field


class SourceMismatchError(BatchorError):
    """``start(job, run_id=...)`` was given a source or job config that differs from
    what the run was started with."""


class StructuredOutputImportError(BatchorError, ImportError):
    """A stored run names a structured-output class that cannot be imported."""


class RunNotFoundError(BatchorError, LookupError):
    """No run with that id exists in the storage."""


class RunNotFinishedError(BatchorError):
    """A terminal-only operation was called on a run that is still active."""


class RunStateError(BatchorError):
    """The run is not in a state that allows the operation (e.g. pausing a finished
    run, waiting on a run whose ingestion is incomplete)."""


class RunTimeoutError(BatchorError, TimeoutError):
    """``wait(timeout=...)`` elapsed before the run became terminal."""


class ArtifactRuleError(BatchorError):
    """An artifact export or prune would break a retention rule (the message names it)."""


class StorageError(BatchorError):
    """The database failed (the message names it, without credentials), or it was
    written by an incompatible batchor version."""


class StorageConflictError(StorageError):
    """A write collided with a row already stored (a unique key): for example another
    process ingesting the same run at the same time."""


class ProviderError(BatchorError):
    """A call to the provider's API failed. ``code`` is the provider's error code, when
    it gave one. The engine retries :class:`TransientProviderError` by itself; the
    others need a change (a key, a quota, a request) before trying again."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientProviderError(ProviderError):
    """Rate limits, 5xx, timeouts, connection errors: try again on a later step."""


class ProviderRejectedError(ProviderError):
    """The provider refused this call as made (400, 404, 422): retrying it unchanged fails."""


class RefusalKind(StrEnum):
    """Which provider limit a refused batch broke."""

    ENQUEUED_TOKENS = "enqueued_tokens"
    """Tokens of all batches waiting or running for the model (OpenAI, Gemini)."""
    ENQUEUED_REQUESTS = "enqueued_requests"
    """Requests waiting in the processing queue (Anthropic)."""
    REQUESTS_PER_BATCH = "requests_per_batch"
    BATCH_BYTES = "batch_bytes"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a provider refused a batch as a whole: the limit broken and, when the
    provider's message states it, its value (``None`` otherwise)."""

    kind: RefusalKind
    limit: int | None
    message: str


class BatchRefusedError(ProviderRejectedError):
    """The provider refused a batch because it breaks one of its limits (enqueued
    tokens or requests, requests or bytes per batch). ``refusal`` says which and, when
    the provider stated it, the limit; the engine re-plans smaller batches."""

    def __init__(self, message: str, *, refusal: Refusal, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.refusal = refusal


class QuotaExhaustedError(ProviderError):
    """The account is out of quota or billing is inactive: nothing will succeed until fixed."""


class ProviderAuthenticationError(ProviderError):
    """The credentials are missing, wrong or lack permission."""
