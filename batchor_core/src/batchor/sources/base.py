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


def durable_checkpoint(source: CheckpointedItemSource, checkpoint: JSONValue) -> JSONValue:
    """The checkpoint the runner stores for a slice whose last item has ``checkpoint``.

    The built-in CSV and JSONL sources add ``prefix_sha256``, the digest of every
    byte of the file up to that point, which is what lets :func:`resume_conflict`
    accept a file changed only after it. Other sources store ``checkpoint`` as is;
    ``iter_from`` accepts either form.
    """
    seal = getattr(source, "_durable_checkpoint", None)
    return checkpoint if seal is None else seal(checkpoint)


def resume_conflict(
    source: CheckpointedItemSource,
    stored_identity: dict[str, JSONValue],
    stored_checkpoint: JSONValue,
    *,
    ingest_complete: bool,
) -> str | None:
    """Why ``source``, whose identity differs from the ``stored_identity`` a run was
    started with, cannot continue that run; None when it can.

    It can when every item the run stored (up to ``stored_checkpoint``, None when
    nothing was stored) would be read from it unchanged and, once ingestion is
    complete, nothing follows. The built-in CSV and JSONL sources allow that for
    a file whose bytes up to the checkpoint are the ones read (a bad row after it
    fixed, rows appended while ingestion is incomplete); a composite, when the
    children whose items are stored are unchanged and the current one allows it.
    Any other difference (another file, a changed Parquet file, a custom source's
    identity) is a conflict.
    """
    check = getattr(source, "_resume_conflict", None)
    if check is None:
        return f"{type(source).__name__}.source_identity() differs from the stored one"
    reason: str | None = check(stored_identity, stored_checkpoint, ingest_complete)
    return reason
