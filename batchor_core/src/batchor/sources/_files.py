"""What the CSV, JSONL and Parquet sources share: one file, one row-to-item mapping.

A :class:`FileItemSource` owns the path (resolved to an absolute ``source_ref``),
the lazily computed content fingerprint and an :class:`ItemBuilder`, which turns
a parsed row into a :class:`~batchor.BatchItem` with lineage metadata and turns
every failure of the user's row functions into a :class:`~batchor.errors.SourceRowError`
that names the file and the row.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from batchor.errors import ConfigurationError, SourceRowError
from batchor.sources.columns import ColumnRows
from batchor.types import LINEAGE_KEY, BatchItem, JSONValue, Lineage

RowT = TypeVar("RowT")

_MAX_LISTED_COLUMNS = 20
_HASH_CHUNK_BYTES = 1024 * 1024

PREFIX_SHA256_KEY = "prefix_sha256"
"""Key of a stored checkpoint's digest of the file bytes before it (CSV, JSONL)."""


def describe_columns(names: list[str]) -> str:
    """``a, b, c`` (shortened past 20 names) for error messages."""
    shown = ", ".join(repr(name) for name in names[:_MAX_LISTED_COLUMNS])
    if len(names) > _MAX_LISTED_COLUMNS:
        shown += f", ... ({len(names)} columns)"
    return shown or "(none)"


class ItemBuilder(Generic[RowT]):
    """Turns one row into a :class:`BatchItem` through the user's row functions.

    ``row_number`` is only used in error messages: it is the 1-based line (CSV,
    JSONL) or row (Parquet) number a user would look up in the file.
    """

    __slots__ = ("_item_id_from_row", "_metadata_from_row", "_payload_from_row", "_source_ref")

    def __init__(
        self,
        *,
        source_name: str,
        source_ref: str,
        item_id_from_row: Callable[[RowT], str],
        payload_from_row: Callable[[RowT], Any] | None,
        metadata_from_row: Callable[[RowT], Mapping[str, Any]] | None,
    ) -> None:
        if not callable(item_id_from_row):
            raise ConfigurationError(
                f"{source_name}.item_id_from_row must be callable: row -> str item id"
            )
        for name, function in (
            ("payload_from_row", payload_from_row),
            ("metadata_from_row", metadata_from_row),
        ):
            if function is not None and not callable(function):
                raise ConfigurationError(f"{source_name}.{name} must be callable or None")
        self._source_ref = source_ref
        self._item_id_from_row = item_id_from_row
        self._payload_from_row = payload_from_row
        self._metadata_from_row = metadata_from_row

    @property
    def item_id_from_row(self) -> Callable[[RowT], str]:
        return self._item_id_from_row

    @property
    def payload_from_row(self) -> Callable[[RowT], Any] | None:
        return self._payload_from_row

    @property
    def metadata_from_row(self) -> Callable[[RowT], Mapping[str, Any]] | None:
        return self._metadata_from_row

    def build_item(self, row: RowT, item_index: int, row_number: int) -> BatchItem:
        """The item for ``row``, the ``item_index``-th (0-based) row of the source."""
        try:
            item_id = self._item_id_from_row(row)
        except Exception as exc:
            raise self._function_error("item_id_from_row", exc, row, row_number) from exc
        if not isinstance(item_id, str) or not item_id:
            raise SourceRowError(
                f"item_id_from_row must return a non-empty string, got {item_id!r}",
                source_ref=self._source_ref,
                row_number=row_number,
            )

        if self._payload_from_row is None:
            payload: Any = row
        else:
            try:
                payload = self._payload_from_row(row)
            except Exception as exc:
                raise self._function_error("payload_from_row", exc, row, row_number) from exc

        lineage: Lineage = {
            "source_ref": self._source_ref,
            "partition_id": None,
            "source_item_index": item_index,
            "source_primary_key": item_id,
            "source_namespace": None,
        }
        if self._metadata_from_row is None:
            return BatchItem(item_id, payload, {LINEAGE_KEY: lineage})
        try:
            user_metadata = self._metadata_from_row(row)
        except Exception as exc:
            raise self._function_error("metadata_from_row", exc, row, row_number) from exc
        if not isinstance(user_metadata, Mapping):
            raise SourceRowError(
                f"metadata_from_row must return a mapping, got {type(user_metadata).__name__}",
                source_ref=self._source_ref,
                row_number=row_number,
            )
        if LINEAGE_KEY in user_metadata:
            raise SourceRowError(
                f"metadata_from_row returned the key {LINEAGE_KEY!r}, which built-in sources "
                "reserve for lineage; rename that key",
                source_ref=self._source_ref,
                row_number=row_number,
                field=LINEAGE_KEY,
            )
        return BatchItem(item_id, payload, {**user_metadata, LINEAGE_KEY: lineage})

    def _function_error(
        self, function_name: str, exc: Exception, row: object, row_number: int
    ) -> SourceRowError:
        if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
            column = exc.args[0]
            if isinstance(row, Mapping):
                present = describe_columns([str(key) for key in row])
                detail = f"the row has no column {column!r} (columns: {present})"
            else:
                detail = f"the row has no key {column!r}"
            return SourceRowError(
                f"{function_name} raised KeyError: {detail}",
                source_ref=self._source_ref,
                row_number=row_number,
                field=column,
            )
        return SourceRowError(
            f"{function_name} raised {type(exc).__name__}: {exc}",
            source_ref=self._source_ref,
            row_number=row_number,
        )


class FileItemSource(Generic[RowT]):
    """Base of the built-in file sources: path, fingerprint, identity, row mapping.

    The file must exist when the source is created. Its sha256 is computed (by
    streaming the file) the first time :meth:`source_identity` is called and then
    kept for the lifetime of the instance.

    Sources whose checkpoints hold a ``byte_offset`` (CSV, JSONL) set
    ``blank_bytes``, the bytes that may follow the last row without forming one.
    Their stored checkpoints then carry ``prefix_sha256``, and a run can be resumed
    from a file changed only after the stored checkpoint (see
    :func:`~batchor.sources.base.resume_conflict`).
    """

    kind: str = ""
    blank_bytes: bytes | None = None

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        item_id_from_row: Callable[[RowT], str],
        payload_from_row: Callable[[RowT], Any] | None,
        metadata_from_row: Callable[[RowT], Mapping[str, Any]] | None,
    ) -> None:
        name = type(self).__name__
        try:
            given = os.fspath(path)
        except TypeError:
            raise ConfigurationError(
                f"{name}.path must be a str or os.PathLike, got {type(path).__name__}"
            ) from None
        if not isinstance(given, str) or not given:
            raise ConfigurationError(f"{name}.path must be a non-empty str path, got {path!r}")
        self._source_ref = os.path.abspath(given)
        if not os.path.exists(self._source_ref):
            raise ConfigurationError(f"{name}: file not found: {self._source_ref}")
        if not os.path.isfile(self._source_ref):
            raise ConfigurationError(f"{name}: not a regular file: {self._source_ref}")
        self._builder: ItemBuilder[RowT] = ItemBuilder(
            source_name=name,
            source_ref=self._source_ref,
            item_id_from_row=item_id_from_row,
            payload_from_row=payload_from_row,
            metadata_from_row=metadata_from_row,
        )
        self._content_sha256: str | None = None
        self._prefix_hash: tuple[int, Any] | None = None  # (bytes hashed, sha256 state)

    @property
    def source_ref(self) -> str:
        """The absolute path of the file, as it appears in lineage and identity."""
        return self._source_ref

    def column_rows(self) -> ColumnRows | None:
        """The :class:`ColumnRows` rows become items by, when they do by nothing else
        (its two functions, no ``metadata_from_row``)."""
        builder = self._builder
        if builder.metadata_from_row is not None:
            return None
        return ColumnRows.of(builder.item_id_from_row, builder.payload_from_row)

    def build_item(self, row: RowT, item_index: int) -> BatchItem:
        """The item for ``row``, the ``item_index``-th (0-based) row: what reading
        the source yields for it, or the :class:`SourceRowError` it raises."""
        return self._builder.build_item(row, item_index, item_index + 1)

    def source_identity(self) -> dict[str, JSONValue]:
        """``kind``, ``source_ref``, ``content_sha256`` and the reading options."""
        if self._content_sha256 is None:
            with self._open_binary() as file:
                self._content_sha256 = hashlib.file_digest(file, "sha256").hexdigest()
        return {
            "kind": self.kind,
            "source_ref": self._source_ref,
            "content_sha256": self._content_sha256,
            **self._reading_options(),
        }

    def _reading_options(self) -> dict[str, JSONValue]:
        """Options that change which items are read; part of the identity."""
        return {}

    def seal_checkpoint(self, checkpoint: JSONValue) -> JSONValue:
        """``checkpoint`` plus ``prefix_sha256`` when it has a ``byte_offset``."""
        if self.blank_bytes is None or not isinstance(checkpoint, dict):
            return checkpoint
        offset = checkpoint.get("byte_offset")
        digest = self._prefix_sha256(offset) if type(offset) is int else None
        return checkpoint if digest is None else {**checkpoint, PREFIX_SHA256_KEY: digest}

    def _prefix_sha256(self, end: int) -> str | None:
        """The sha256 of the file's first ``end`` bytes (None if it is shorter).

        Hashing resumes from the previous call when ``end`` has not moved back, so
        sealing every slice of an ingestion reads the file once more in total.
        """
        start, hasher = self._prefix_hash or (0, hashlib.sha256())
        if start > end:
            start, hasher = 0, hashlib.sha256()
        hasher = hasher.copy()
        with self._open_binary() as file:
            file.seek(start)
            remaining = end - start
            while remaining:
                chunk = file.read(min(remaining, _HASH_CHUNK_BYTES))
                if not chunk:
                    return None
                hasher.update(chunk)
                remaining -= len(chunk)
        self._prefix_hash = (end, hasher)
        return str(hasher.hexdigest())

    def _only_blank_after(self, offset: int) -> bool:
        """True when the file holds nothing but ``blank_bytes`` after ``offset``."""
        blank = self.blank_bytes or b""
        with self._open_binary() as file:
            file.seek(offset)
            while chunk := file.read(_HASH_CHUNK_BYTES):
                if chunk.strip(blank):
                    return False
        return True

    def resume_conflict(
        self,
        stored_identity: dict[str, JSONValue],
        stored_checkpoint: JSONValue,
        *,
        ingest_complete: bool,
    ) -> str | None:
        """See :func:`~batchor.sources.base.resume_conflict`."""
        current = self.source_identity()
        if stored_identity.get("kind") != self.kind:
            return (
                f"the run was started with a {stored_identity.get('kind')!r} source, "
                f"not {type(self).__name__}"
            )
        changed = sorted(
            key
            for key in set(stored_identity) | set(current)
            if key != "content_sha256" and stored_identity.get(key) != current.get(key)
        )
        if changed:
            details = ", ".join(
                f"{key} {stored_identity.get(key)!r} -> {current.get(key)!r}" for key in changed
            )
            return f"{type(self).__name__} is not the input the run was started with ({details})"
        if stored_checkpoint is None:
            if ingest_complete:
                return f"{self._source_ref} had no rows when the run finished ingesting it"
            return None
        name = type(self).__name__
        rows = (
            stored_checkpoint.get("next_row_index") if isinstance(stored_checkpoint, dict) else None
        )
        if self.blank_bytes is None:
            return (
                f"{self._source_ref} changed after {rows} rows were ingested; {name} cannot "
                "tell which rows changed, so the file must be unchanged to resume"
            )
        (offset,) = read_checkpoint_ints(stored_checkpoint, ("byte_offset",), name)
        digest = stored_checkpoint.get(PREFIX_SHA256_KEY)
        if not isinstance(digest, str):
            return (
                f"{self._source_ref} changed, and the stored checkpoint has no fingerprint of "
                f"the {rows} rows already ingested to check them against"
            )
        if self._prefix_sha256(offset) != digest:
            return (
                f"{self._source_ref} changed within the {rows} rows already ingested (its "
                f"first {offset} bytes are not the ones read); only rows after them may change"
            )
        if ingest_complete and not self._only_blank_after(offset):
            return (
                f"{self._source_ref} has rows after the {rows} ingested, but the run has "
                "finished ingesting; start a new run for them"
            )
        return None

    def _open_binary(self) -> io.BufferedReader:
        try:
            return open(self._source_ref, "rb")
        except FileNotFoundError:
            raise ConfigurationError(
                f"{type(self).__name__}: file not found: {self._source_ref} "
                "(it existed when the source was created)"
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._source_ref!r})"


def read_checkpoint_ints(
    checkpoint: JSONValue, keys: tuple[str, ...], source_name: str
) -> tuple[int, ...]:
    """The non-negative integers ``keys`` of a checkpoint dict, or a clear error."""
    if not isinstance(checkpoint, dict):
        raise ConfigurationError(
            f"{source_name}: a checkpoint is a dict with keys {', '.join(keys)}, got {checkpoint!r}"
        )
    values = []
    for key in keys:
        value = checkpoint.get(key)
        if type(value) is not int or value < 0:
            raise ConfigurationError(
                f"{source_name}: checkpoint key {key!r} must be a non-negative int, "
                f"got {checkpoint!r}"
            )
        values.append(value)
    return tuple(values)
