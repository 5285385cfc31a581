"""Every exception batchor raises, in one hierarchy.

Each message says what was wrong, where (run, item, file, row, field) and, when
there is one, what to do about it. Catch :class:`BatchorError` to handle them all.
"""

from __future__ import annotations


class BatchorError(Exception):
    """Base class of every batchor error."""


class ConfigurationError(BatchorError, ValueError):
    """A job, policy or provider setting is invalid (the message names the field)."""


class StructuredOutputSchemaError(ConfigurationError):
    """The structured-output model's JSON schema breaks OpenAI strict-mode rules.

    ``path`` is the JSON pointer of the offending schema node.
    """

    def __init__(self, message: str, *, path: str = "#") -> None:
        super().__init__(message)
        self.path = path


class StructuredOutputImportError(BatchorError, ImportError):
    """A stored run names a structured-output class that cannot be imported."""


class InputError(BatchorError, ValueError):
    """An input item is unusable; nothing already stored was changed."""


class DuplicateItemIdError(InputError):
    """Two input rows carry the same ``item_id``."""


class ItemBuildError(InputError):
    """Turning an item into a request failed (``build_prompt`` raised, empty prompt,
    payload that is not JSON-serialisable, ...)."""


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


class ProviderError(BatchorError):
    """The provider refused a call in a way retrying will not fix (bad key, bad request)."""


class StorageError(BatchorError):
    """The storage cannot be opened or is from an incompatible batchor version."""
