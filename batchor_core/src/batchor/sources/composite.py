"""``CompositeItemSource``: several checkpointed sources read one after another
as one logical input, with item ids namespaced per child."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from batchor.errors import ConfigurationError
from batchor.sources._files import FileItemSource
from batchor.sources.base import (
    CheckpointedItem,
    CheckpointedItemSource,
    durable_checkpoint,
    resume_conflict,
)
from batchor.types import LINEAGE_KEY, BatchItem, JSONValue, Lineage, canonical_json, empty_lineage

_UNSAFE_LABEL_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


def _namespace_label(source: CheckpointedItemSource) -> str:
    """A readable name for a child: its file's stem when it has a file, else its kind."""
    if isinstance(source, FileItemSource):
        reference: Any = source.source_ref
    else:
        identity = source.source_identity()
        reference = identity.get("source_ref")
        if not isinstance(reference, str) or not reference:
            reference = identity.get("kind")
        if not isinstance(reference, str) or not reference:
            reference = type(source).__name__.lower()
    return _UNSAFE_LABEL_CHARACTERS.sub("-", PurePath(reference).stem).strip("-") or "source"


class CompositeItemSource:
    """Several checkpointed sources, read in the given order, as one input.

    Each child's item ids are prefixed with a namespace, ``f"{position}-{label}"``
    where ``label`` is the child's file name without extension (for example
    ``0-items-a`` for ``input/items-a.csv``). For a custom source the label comes
    from the ``source_ref`` (else ``kind``) of its ``source_identity()``;
    characters other than letters, digits, ``.``, ``_`` and ``-`` become ``-``.
    The position keeps namespaces unique even when two children read files of
    the same name, so the same row id may appear in several children. The run
    item id is ``f"{namespace}:{child_item_id}"``.

    ``metadata["batchor_lineage"]`` keeps the child's lineage (a child without one
    gets a minimal one) with ``source_namespace`` set to the namespace and
    ``source_primary_key`` to the child's own item id, so
    ``item_id == f"{source_namespace}:{source_primary_key}"``. Nested composites
    join namespaces with ``:``.

    Identity: ``{"kind": "composite", "children": [child identities in order]}``,
    so reordering children changes it. Checkpoint: ``{"child": i, "checkpoint":
    <checkpoint of child i>}``.
    """

    def __init__(self, sources: Sequence[CheckpointedItemSource]) -> None:
        if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence):
            raise ConfigurationError(
                "CompositeItemSource.sources must be a list of checkpointed sources, "
                f"got {type(sources).__name__}"
            )
        if not sources:
            raise ConfigurationError("CompositeItemSource.sources must hold at least one source")
        for position, source in enumerate(sources):
            if not isinstance(source, CheckpointedItemSource):
                raise ConfigurationError(
                    f"CompositeItemSource.sources[{position}] is a {type(source).__name__}, "
                    "not a CheckpointedItemSource (source_identity, initial_checkpoint, "
                    "iter_from)"
                )
        self._sources: tuple[CheckpointedItemSource, ...] = tuple(sources)
        self._namespaces: tuple[str, ...] | None = None

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespace of each child, in order."""
        if self._namespaces is None:
            self._namespaces = tuple(
                f"{position}-{_namespace_label(source)}"
                for position, source in enumerate(self._sources)
            )
        return self._namespaces

    def source_identity(self) -> dict[str, JSONValue]:
        """The children's identities, in order."""
        return {
            "kind": "composite",
            "children": [source.source_identity() for source in self._sources],
        }

    def initial_checkpoint(self) -> JSONValue:
        """The first child's initial checkpoint."""
        return {"child": 0, "checkpoint": self._sources[0].initial_checkpoint()}

    def iter_from(self, checkpoint: JSONValue) -> Iterator[CheckpointedItem]:
        """The rest of the checkpoint's child, then every later child from its start."""
        child, child_checkpoint = self._read_checkpoint(checkpoint)
        namespaces = self.namespaces
        for position in range(child, len(self._sources)):
            source = self._sources[position]
            if position != child:
                child_checkpoint = source.initial_checkpoint()
            namespace = namespaces[position]
            for checkpointed in source.iter_from(child_checkpoint):
                yield CheckpointedItem(
                    _namespaced(checkpointed.item, namespace),
                    {"child": position, "checkpoint": checkpointed.checkpoint},
                )

    def _read_checkpoint(self, checkpoint: JSONValue) -> tuple[int, JSONValue]:
        child = checkpoint.get("child") if isinstance(checkpoint, dict) else None
        if (
            type(child) is not int
            or not 0 <= child < len(self._sources)
            or ("checkpoint" not in checkpoint)
        ):
            raise ConfigurationError(
                'CompositeItemSource: a checkpoint is {"child": <index of a child>, '
                f'"checkpoint": <its checkpoint>}}, got {checkpoint!r}'
            )
        return child, checkpoint["checkpoint"]

    def seal_checkpoint(self, checkpoint: JSONValue) -> JSONValue:
        child, child_checkpoint = self._read_checkpoint(checkpoint)
        return {
            "child": child,
            "checkpoint": durable_checkpoint(self._sources[child], child_checkpoint),
        }

    def resume_conflict(
        self,
        stored_identity: dict[str, JSONValue],
        stored_checkpoint: JSONValue,
        *,
        ingest_complete: bool,
    ) -> str | None:
        """See :func:`~batchor.sources.base.resume_conflict`: the children before the
        checkpoint's must be unchanged, that child must accept its own change, and
        later children may change only while ingestion is incomplete."""
        stored = stored_identity.get("children")
        if stored_identity.get("kind") != "composite" or not isinstance(stored, list):
            return "the run was not started with a CompositeItemSource"
        current = [source.source_identity() for source in self._sources]
        if len(stored) == len(current) and sorted(map(canonical_json, stored)) == sorted(
            map(canonical_json, current)
        ):
            return (
                "the same children are given in a different order; the order decides the "
                f"item ids (namespaces {', '.join(self.namespaces)}), so keep the original order"
            )
        child, child_checkpoint = 0, None
        if stored_checkpoint is not None:
            try:
                child, child_checkpoint = self._read_checkpoint(stored_checkpoint)
            except ConfigurationError:
                return (
                    f"the stored checkpoint {stored_checkpoint!r} does not name one of the "
                    f"{len(self._sources)} children"
                )
        for position in range(child):
            if position >= len(stored) or stored[position] != current[position]:
                return (
                    f"child {position} ({self._describe_child(position)}) changed, and every "
                    "item it yielded is already stored"
                )
        if child >= len(stored):
            return f"the run was started with {len(stored)} children, not {len(current)}"
        if stored[child] != current[child]:
            reason = resume_conflict(
                self._sources[child],
                stored[child],
                child_checkpoint,
                ingest_complete=ingest_complete,
            )
            if reason is not None:
                return f"child {child} ({self._describe_child(child)}): {reason}"
        if ingest_complete and stored[child + 1 :] != current[child + 1 :]:
            return (
                f"the children after child {child} changed, but the run has finished "
                "ingesting; start a new run for new input"
            )
        return None

    def _describe_child(self, position: int) -> str:
        source = self._sources[position]
        namespace = self.namespaces[position]
        return (
            f"{namespace}, {source.source_ref}" if isinstance(source, FileItemSource) else namespace
        )

    def __repr__(self) -> str:
        return f"CompositeItemSource({list(self._sources)!r})"


def _namespaced(item: BatchItem, namespace: str) -> BatchItem:
    """``item`` with its id prefixed by ``namespace`` and the lineage updated."""
    metadata = dict(item.metadata)
    child_lineage = metadata.get(LINEAGE_KEY)
    lineage: Lineage = empty_lineage()
    if isinstance(child_lineage, Mapping):
        lineage.update(child_lineage)  # type: ignore[typeddict-item]
    inner_namespace = lineage["source_namespace"]
    if isinstance(inner_namespace, str) and inner_namespace and lineage["source_primary_key"]:
        lineage["source_namespace"] = f"{namespace}:{inner_namespace}"
    else:
        lineage["source_namespace"] = namespace
        lineage["source_primary_key"] = item.item_id
    metadata[LINEAGE_KEY] = lineage
    return BatchItem(f"{namespace}:{item.item_id}", item.payload, metadata)
