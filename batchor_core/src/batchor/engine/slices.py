"""Slices of input and the request lines built from them.

Ingestion and planning read the input a slice at a time (:func:`input_slices`).
A slice is one of two kinds, with the same interface (:class:`InputSlice`):

- :class:`RowSlice`: items a source or iterable produced; their prompts come
  from the job's ``build_prompt``, every check applies;
- :class:`ColumnSlice`: rows of a Parquet file that become items by column
  names alone, an id column and a :class:`~batchor.PromptBuilder` (what
  ``batchor start --id-column --prompt-column / --prompt-template`` and the
  Dagster component build). The file is read column by column and no item,
  payload or metadata object is made per row; only the rows an error names.

For the same rows both build byte-identical request lines, metadata and
estimates, and raise the same errors: the column kind is only faster, and a run
may be started with one and resumed with the other.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import pyarrow as pa

from batchor.errors import DuplicateItemIdError, ItemBuildError
from batchor.job import BatchJob
from batchor.prompts import PromptBuilder
from batchor.providers.base import BatchProvider
from batchor.sources.base import CheckpointedItem, CheckpointedItemSource
from batchor.sources.columns import ColumnRows
from batchor.sources.parquet_file import ParquetItemSource
from batchor.storage.item_metadata import encode_metadata, file_lineage_encoder
from batchor.storage.records import NewItem
from batchor.types import LINEAGE_KEY, BatchItem, ContentPart, Message, PromptParts


class InputSlice(Protocol):
    """A slice of the input: its ids, its items (for messages), its requests."""

    item_ids: list[str]

    def __len__(self) -> int: ...

    def item(self, offset: int) -> BatchItem:
        """The item at ``offset``, as the source would have produced it."""
        ...

    def build(
        self,
        fresh: list[int],
        first_position: int,
        job: BatchJob,
        provider: BatchProvider,
        segment: int,
        first_index: int,
    ) -> tuple[list[NewItem], bytes]:
        """The request lines of the ``fresh`` offsets (the slice's first item is at
        input position ``first_position``; the first new item gets item index
        ``first_index``): the items to store and the segment bytes."""
        ...


def input_slices(
    source: Iterable[BatchItem] | CheckpointedItemSource,
    stored_checkpoint: str | None,
    size: int,
    build_prompt: Callable[[BatchItem], PromptParts],
    first_position: int,
) -> Iterator[tuple[InputSlice, Any]]:
    """The input after ``stored_checkpoint`` (JSON; None: from the start), ``size``
    items at a time, each slice with the source checkpoint after its last item (None
    for plain iterables, which are always read from the start). ``first_position``
    is the input position of the first item read, for messages."""
    if not isinstance(source, CheckpointedItemSource):
        iterator = iter(source)
        position = first_position
        while items := list(itertools.islice(iterator, size)):
            yield RowSlice(items, position), None
            position += len(items)
        return
    checkpoint = (
        json.loads(stored_checkpoint)
        if stored_checkpoint is not None
        else source.initial_checkpoint()
    )
    columns = ColumnReading.of(source, build_prompt)
    if columns is not None:
        yield from columns.slices(checkpoint, size)
        return
    records = source.iter_from(checkpoint)
    position = first_position
    while batch := list(itertools.islice(records, size)):
        if not all(type(entry) is CheckpointedItem for entry in batch):
            for entry in batch:
                if not isinstance(entry, CheckpointedItem):
                    raise ItemBuildError(
                        f"{type(source).__name__}.iter_from must yield CheckpointedItem "
                        f"values, got {type(entry).__name__}"
                    )
        yield RowSlice([entry.item for entry in batch], position), batch[-1].checkpoint
        position += len(batch)


def check_unique_within(input_slice: InputSlice, fresh: list[int], first_position: int) -> None:
    """A repeated id among the ``fresh`` offsets of one slice is an error."""
    item_ids = input_slice.item_ids
    if len(fresh) == len(item_ids) and len(set(item_ids)) == len(item_ids):
        return
    seen: dict[str, int] = {}
    for offset in fresh:
        earlier = seen.setdefault(item_ids[offset], offset)
        if earlier != offset:
            raise DuplicateItemIdError(
                f"duplicate item_id {item_ids[offset]!r}: "
                f"{where(input_slice.item(offset), first_position + offset)} repeats "
                f"{where(input_slice.item(earlier), first_position + earlier)}; "
                "item ids must be unique within a run"
            )


def where(item: BatchItem, position: int) -> str:
    """``input position N (file, source_item_index K)`` for messages."""
    lineage = item.metadata.get(LINEAGE_KEY) if item.metadata else None
    return f"input position {position}" + lineage_text(lineage)


def lineage_text(lineage: Any) -> str:
    if not isinstance(lineage, dict) or lineage.get("source_ref") is None:
        return ""
    return f" ({lineage['source_ref']}, source_item_index {lineage.get('source_item_index')})"


# -- items ---------------------------------------------------------------------------------


class RowSlice:
    """Items as a source or iterable produced them."""

    def __init__(self, items: list[BatchItem], first_position: int) -> None:
        if not all(type(item) is BatchItem for item in items):
            for offset, item in enumerate(items):
                if not isinstance(item, BatchItem):
                    raise ItemBuildError(
                        f"input position {first_position + offset}: expected a BatchItem, "
                        f"got {type(item).__name__}"
                    )
        self.items = items
        self.item_ids = [item.item_id for item in items]

    def __len__(self) -> int:
        return len(self.items)

    def item(self, offset: int) -> BatchItem:
        return self.items[offset]

    def build(
        self,
        fresh: list[int],
        first_position: int,
        job: BatchJob,
        provider: BatchProvider,
        segment: int,
        first_index: int,
    ) -> tuple[list[NewItem], bytes]:
        build_prompt = job.build_prompt
        lines = _Segment(self, provider, segment, first_index, first_position)
        max_request_bytes = lines.max_request_bytes
        for offset in fresh:
            item = self.items[offset]
            try:
                prompt = build_prompt(item)
            except Exception as exc:
                raise _prompt_raised(item, first_position + offset, exc) from exc
            if type(prompt) is not PromptParts and not isinstance(prompt, PromptParts):
                raise ItemBuildError(
                    f"build_prompt must return PromptParts, got {type(prompt).__name__} for "
                    f"item {item.item_id!r} ({where(item, first_position + offset)})"
                )
            if not prompt.messages:
                text = prompt.prompt
                if (type(text) is not str or not text or text.isspace()) and (
                    not isinstance(text, str) or not text.strip()
                ):
                    raise _empty_prompt(item, first_position + offset)
            else:
                _check_messages(prompt, item, first_position + offset)
            if not _is_plain_json(item.payload, 0):
                _check_payload_json(item, first_position + offset)
            if not prompt.messages and (
                len(prompt.prompt) + len(prompt.system_prompt or "") > max_request_bytes
            ):
                # every character is at least a byte: too large before it is even built
                raise _too_large(item, first_position + offset, None, max_request_bytes)
            lines.add(offset, item.item_id, prompt, _metadata_json(item, first_position + offset))
        return lines.done()


# -- columns -------------------------------------------------------------------------------

_PLAIN_TYPES: tuple[Callable[[pa.DataType], bool], ...] = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_boolean,
)
"""Arrow types whose Python values a payload keeps as they are (see
:data:`~batchor.sources.columns.JSON_SCALARS`): read by column, they give what
the row functions would."""


class ColumnReading:
    """How a Parquet source mapped by column names is read column by column."""

    def __init__(
        self,
        source: ParquetItemSource,
        rows: ColumnRows,
        prompt: PromptBuilder,
        lineage_at: Callable[[int], str],
    ) -> None:
        self.source = source
        self.rows = rows
        self.id_column = rows.id_column
        self.prompt = prompt
        self.lineage_at = lineage_at  # the stored metadata of the row at an index
        # every column a row of the row path holds, so an item can be made for a message
        self.names = list(dict.fromkeys((rows.id_column, *rows.fields)))

    @classmethod
    def of(
        cls, source: CheckpointedItemSource, build_prompt: Callable[[BatchItem], PromptParts]
    ) -> ColumnReading | None:
        """The column reading of ``source`` with ``build_prompt``, when it has one: a
        :class:`~batchor.ParquetItemSource` whose rows become items by
        :class:`~batchor.sources.columns.ColumnRows` alone, prompted by a
        :class:`~batchor.PromptBuilder` over those columns, all read and of plain
        types."""
        if type(source) is not ParquetItemSource or type(build_prompt) is not PromptBuilder:
            return None
        rows = source.column_rows()
        if rows is None or not set(build_prompt.fields) <= set(rows.fields):
            return None
        projected = source.columns
        types = source.column_types()
        for name in (rows.id_column, *rows.fields):
            if name not in types or (projected is not None and name not in projected):
                return None  # the row path says what is missing, row by row
            if not any(plain(types[name]) for plain in _PLAIN_TYPES):
                return None
        lineage_at = file_lineage_encoder(source.source_ref)
        if lineage_at is None:
            return None
        return cls(source, rows, build_prompt, lineage_at)

    def slices(self, checkpoint: Any, size: int) -> Iterator[tuple[ColumnSlice, Any]]:
        for first_row, values in self.source.iter_columns(checkpoint, self.names, size):
            piece = ColumnSlice(self, first_row, values)
            yield piece, {"next_row_index": first_row + len(piece)}


class ColumnSlice:
    """Consecutive rows of a Parquet file, as lists of column values."""

    def __init__(
        self, reading: ColumnReading, first_row: int, values: dict[str, list[Any]]
    ) -> None:
        self.reading = reading
        self.first_row = first_row
        self.values = values
        ids = values[reading.id_column]
        if all(type(value) is str and value for value in ids):
            self.item_ids: list[str] = ids
        else:
            rows = reading.rows
            self.item_ids = []
            for offset, value in enumerate(ids):
                try:
                    self.item_ids.append(rows.id_of(value))
                except ValueError:
                    self.item(offset)  # raises the source's error for this row
                    raise

    def __len__(self) -> int:
        return len(self.values[self.reading.id_column])

    def row(self, offset: int) -> dict[str, Any]:
        return {name: column[offset] for name, column in self.values.items()}

    def item(self, offset: int) -> BatchItem:
        return self.reading.source.build_item(self.row(offset), self.first_row + offset)

    def build(
        self,
        fresh: list[int],
        first_position: int,
        job: BatchJob,
        provider: BatchProvider,
        segment: int,
        first_index: int,
    ) -> tuple[list[NewItem], bytes]:
        builder = self.reading.prompt
        system_prompt = builder.system_prompt
        fixed = len(system_prompt or "")
        lines = _Segment(self, provider, segment, first_index, first_position)
        max_request_bytes = lines.max_request_bytes
        prompt_of = self._prompt_of(builder)
        lineage_at = self.reading.lineage_at
        first_row = self.first_row
        for offset in fresh:
            try:
                text = prompt_of(offset)
            except Exception as exc:
                raise _prompt_raised(self.item(offset), first_position + offset, exc) from exc
            if not text or text.isspace():
                raise _empty_prompt(self.item(offset), first_position + offset)
            if len(text) + fixed > max_request_bytes:
                raise _too_large(
                    self.item(offset), first_position + offset, None, max_request_bytes
                )
            lines.add(
                offset,
                self.item_ids[offset],
                PromptParts(prompt=text, system_prompt=system_prompt),
                lineage_at(first_row + offset),
            )
        return lines.done()

    def _prompt_of(self, builder: PromptBuilder) -> Callable[[int], str]:
        """The prompt at an offset, as ``builder`` makes it from the row's payload."""
        if builder.prompt_column is not None:
            column = self.values[builder.prompt_column]
            return lambda offset: _text(column[offset])
        template = builder.template
        assert template is not None
        fields = [(name, self.values[name]) for name in builder.fields]
        return lambda offset: template.format_map(
            {name: "" if column[offset] is None else column[offset] for name, column in fields}
        )


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    return "" if value is None else str(value)


# -- request lines --------------------------------------------------------------------------


class _Segment:
    """The request lines of one segment, as a slice's prompts are added."""

    def __init__(
        self,
        input_slice: InputSlice,
        provider: BatchProvider,
        segment: int,
        first_index: int,
        first_position: int,
    ) -> None:
        self.input_slice = input_slice
        self.build_request_line = provider.build_request_line
        self.custom_id = provider.custom_id
        self.max_request_bytes = provider.limits.max_request_bytes
        self.segment = segment
        self.first_position = first_position
        self.item_index = first_index
        self.request_offset = 0
        self.lines: list[bytes] = []
        self.new_items: list[NewItem] = []

    def add(
        self, offset: int, item_id: str, prompt: PromptParts, metadata_json: str | None
    ) -> None:
        try:
            data = self.build_request_line(self.custom_id(item_id, self.item_index), prompt)
        except ItemBuildError as exc:
            item = self.input_slice.item(offset)
            raise ItemBuildError(
                f"item {item_id!r} ({where(item, self.first_position + offset)}): {exc}; "
                "the provider cannot take this request"
            ) from None
        length = len(data.data)
        if length > self.max_request_bytes:
            item = self.input_slice.item(offset)
            raise _too_large(item, self.first_position + offset, length, self.max_request_bytes)
        self.new_items.append(
            NewItem(
                self.item_index,
                item_id,
                self.segment,
                self.request_offset,
                length,
                data.estimated_tokens,
                metadata_json,
            )
        )
        self.lines.append(data.data)
        self.request_offset += length + 1
        self.item_index += 1

    def done(self) -> tuple[list[NewItem], bytes]:
        if not self.lines:
            return self.new_items, b""
        self.lines.append(b"")
        return self.new_items, b"\n".join(self.lines)


# -- checks ---------------------------------------------------------------------------------


def _prompt_raised(item: BatchItem, position: int, exc: Exception) -> ItemBuildError:
    return ItemBuildError(
        f"build_prompt raised for item {item.item_id!r} ({where(item, position)}): "
        f"{type(exc).__name__}: {exc}"
    )


def _empty_prompt(item: BatchItem, position: int) -> ItemBuildError:
    return ItemBuildError(
        f"build_prompt returned an empty prompt for item {item.item_id!r} ({where(item, position)})"
    )


def _check_messages(prompt: PromptParts, item: BatchItem, position: int) -> None:
    """Messages in the neutral form: known roles, text or parts, a non-empty user turn."""
    described = f"item {item.item_id!r} ({where(item, position)})"
    if prompt.prompt:
        raise ItemBuildError(f"build_prompt gave both prompt and messages for {described}")
    for number, message in enumerate(prompt.messages):
        if not isinstance(message, Message) or message.role not in ("system", "user", "assistant"):
            raise ItemBuildError(
                f"build_prompt: messages[{number}] of {described} is not a Message with role "
                "system, user or assistant"
            )
        parts = [message.content] if isinstance(message.content, str) else message.content
        if not parts or not all(isinstance(part, str | ContentPart) for part in parts):
            raise ItemBuildError(
                f"build_prompt: messages[{number}].content of {described} must be text or a "
                "list of ContentPart"
            )
    if not any(message.role == "user" for message in prompt.messages):
        raise ItemBuildError(f"build_prompt: the messages of {described} have no user message")


def _too_large(item: BatchItem, position: int, length: int | None, limit: int) -> ItemBuildError:
    """The error for a request no batch of the provider may hold (``length`` None when
    the prompt alone is too long to be worth building)."""
    size = "larger" if length is None else f"{length:,} bytes, more"
    return ItemBuildError(
        f"the request for item {item.item_id!r} ({where(item, position)}) is {size} than "
        f"the provider takes in one request ({limit:,} bytes); shorten its prompt"
    )


_MAX_PLAIN_DEPTH = 32


def _is_plain_json(value: Any, depth: int) -> bool:
    """True when ``value`` is made only of dict (str keys), list, str, int, bool and
    None, so :func:`json.dumps` surely accepts it. False means "not sure": the
    caller then asks :func:`json.dumps` itself."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth >= _MAX_PLAIN_DEPTH:
        return False
    if kind is dict:
        for key, inner in value.items():
            if type(key) is not str or not _is_plain_json(inner, depth + 1):
                return False
        return True
    if kind is list:
        return all(_is_plain_json(inner, depth + 1) for inner in value)
    return False


def _check_payload_json(item: BatchItem, position: int) -> None:
    try:
        json.dumps(item.payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ItemBuildError(
            f"the payload of item {item.item_id!r} ({where(item, position)}) is not "
            f"JSON-serialisable: {exc}"
        ) from exc


def _metadata_json(item: BatchItem, position: int) -> str | None:
    try:
        return encode_metadata(item.item_id, item.metadata)
    except (TypeError, ValueError) as exc:
        raise ItemBuildError(
            f"the metadata of item {item.item_id!r} ({where(item, position)}) is not "
            f"JSON-serialisable: {exc}"
        ) from exc
