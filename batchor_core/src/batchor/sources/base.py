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
from typing import Protocol, runtime_checkable

from batchor.types import BatchItem, JSONValue


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

    Two optional hooks let a source accept resuming from an input that changed
    after what was already ingested (a bad row fixed, rows appended):

    - ``seal_checkpoint(checkpoint)`` returns what the runner stores for the
      last item of a slice: the checkpoint plus whatever ``resume_conflict``
      needs later (the built-in CSV and JSONL sources add the sha256 of the
      file's bytes up to it). ``iter_from`` must accept the sealed form.
    - ``resume_conflict(stored_identity, stored_checkpoint, *, ingest_complete)``
      is asked when the identity differs from the stored one: it returns why the
      source cannot continue the run, or None when it can (see
      :func:`resume_conflict`). Without it, any change of identity is a conflict.

    :class:`SealsCheckpoints` and :class:`ChecksResume` spell out the hooks'
    signatures.
    """

    def source_identity(self) -> dict[str, JSONValue]: ...

    def initial_checkpoint(self) -> JSONValue: ...

    def iter_from(self, checkpoint: JSONValue) -> Iterator[CheckpointedItem]: ...


@runtime_checkable
class SealsCheckpoints(Protocol):
    """The optional ``seal_checkpoint`` hook of a :class:`CheckpointedItemSource`."""

    def seal_checkpoint(self, checkpoint: JSONValue) -> JSONValue:
        """What to store for a slice whose last item has ``checkpoint``."""
        ...


@runtime_checkable
class ChecksResume(Protocol):
    """The optional ``resume_conflict`` hook of a :class:`CheckpointedItemSource`."""

    def resume_conflict(
        self,
        stored_identity: dict[str, JSONValue],
        stored_checkpoint: JSONValue,
        *,
        ingest_complete: bool,
    ) -> str | None:
        """Why this source cannot continue a run started with ``stored_identity``
        (None when it can)."""
        ...


def durable_checkpoint(source: CheckpointedItemSource, checkpoint: JSONValue) -> JSONValue:
    """The checkpoint the runner stores for a slice whose last item has ``checkpoint``:
    the source's :meth:`~SealsCheckpoints.seal_checkpoint` of it, or ``checkpoint``
    as is for a source without that hook."""
    if isinstance(source, SealsCheckpoints):
        return source.seal_checkpoint(checkpoint)
    return checkpoint


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
    if not isinstance(source, ChecksResume):
        return f"{type(source).__name__}.source_identity() differs from the stored one"
    return source.resume_conflict(
        stored_identity, stored_checkpoint, ingest_complete=ingest_complete
    )
