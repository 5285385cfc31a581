"""The checkpoint protocol every resumable item source implements.

A checkpointed source is a deterministic, re-readable input. It can say who it is
(``source_identity``: a JSON object that changes when the input or its order
changes) and can resume reading after any item from an opaque JSON checkpoint.
The runner stores each ingested slice of items together with the checkpoint of
its last item in one transaction, so a crash never skips or duplicates rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from batchor.job import BatchItem

JSONValue = Any
"""A value that survives ``json.dumps`` / ``json.loads`` unchanged."""


@dataclass(frozen=True, slots=True)
class CheckpointedItem:
    """An item and the checkpoint that resumes reading right after it."""

    item: BatchItem
    checkpoint: JSONValue


@runtime_checkable
class CheckpointedItemSource(Protocol):
    """A deterministic input that can be resumed from a checkpoint.

    Implement these three methods to make a custom format resumable:

    - ``source_identity()`` returns a JSON object describing the input (kind,
      reference, content fingerprint, ...). Resuming a run with a source whose
      identity differs raises :class:`~batchor.SourceMismatchError` naming the
      keys that changed.
    - ``initial_checkpoint()`` returns the checkpoint that starts at the first item.
    - ``iter_from(checkpoint)`` yields :class:`CheckpointedItem` values from
      ``checkpoint`` on, in a stable order; each carries the checkpoint that
      resumes after it.
    """

    def source_identity(self) -> dict[str, JSONValue]: ...

    def initial_checkpoint(self) -> JSONValue: ...

    def iter_from(self, checkpoint: JSONValue) -> Iterator[CheckpointedItem]: ...
