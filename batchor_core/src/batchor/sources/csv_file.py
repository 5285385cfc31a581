"""``CsvItemSource``: a CSV file with a header row, resumable by byte offset.

The file is read in binary, line by line; each line is decoded and fed to
:func:`csv.reader`, which pulls exactly the lines one record needs (several when
a quoted field contains newlines). So the byte offset after every record is
known without ``tell()``, and resuming seeks straight to it.
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from batchor.errors import ConfigurationError, SourceRowError
from batchor.sources._files import FileItemSource, read_checkpoint_ints
from batchor.sources.base import CheckpointedItem
from batchor.types import JSONValue

CsvRow = dict[str, str]

CSV_FIELD_SIZE_LIMIT = 2**31 - 1
"""The least :func:`csv.field_size_limit` a CSV source reads with: a field of any
size is read (the request it becomes is bounded by the provider's limit instead)."""

_UTF16_32_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def allow_large_fields() -> None:
    """Raise the process's :func:`csv.field_size_limit` to
    :data:`CSV_FIELD_SIZE_LIMIT` (never lower it): the limit is global to the
    :mod:`csv` module, and its default (131,072 characters) refuses rows that the
    same data in JSONL would pass."""
    if csv.field_size_limit() < CSV_FIELD_SIZE_LIMIT:
        csv.field_size_limit(CSV_FIELD_SIZE_LIMIT)


def decoding_problem(
    exc: UnicodeDecodeError,
    encoding: str,
    first_bytes: bytes,
    give_encoding: str = "CsvItemSource(encoding=...) or batchor start --encoding",
) -> str:
    """What went wrong decoding a CSV file, and what to do about it (``give_encoding``
    says how to name another encoding)."""
    byte = exc.object[exc.start : exc.start + 1]
    problem = f"not valid {encoding} text ({exc.reason}: byte {byte!r})"
    for mark, name in _UTF16_32_MARKS:
        if first_bytes.startswith(mark):
            return (
                f"{problem}: the file is {name} (it starts with a {name} byte-order mark); "
                "re-save it as UTF-8"
            )
    return (
        f"{problem}; re-save the file as UTF-8, or give its encoding with "
        f"{give_encoding} (cp1252 or latin-1 for most Windows and Excel exports)"
    )


_CHECKPOINT_KEYS = ("byte_offset", "next_row_index", "lines_read")
_ASCII_PROBE = "\r\n,;|\t\"' abcXYZ0189"


def _line_encoding(encoding: str, source_name: str) -> tuple[str, str]:
    """``(codec name, codec for lines after the first)``; rejects encodings in which
    a newline is not the single byte ``\\n`` (UTF-16, UTF-32), since lines are split
    in binary."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigurationError(f"{source_name}.encoding: unknown encoding {encoding!r}") from None
    if name == "utf-8-sig":
        return name, "utf-8"
    try:
        compatible = _ASCII_PROBE.encode(name) == _ASCII_PROBE.encode("ascii")
    except (UnicodeError, LookupError):
        compatible = False
    if not compatible:
        raise ConfigurationError(
            f"{source_name}.encoding: {encoding!r} is not ASCII-compatible; the file is "
            "split into lines as bytes, so use an encoding such as utf-8, utf-8-sig, "
            "latin-1 or cp1252 (re-encode UTF-16/UTF-32 files first)"
        )
    return name, name


class CsvItemSource(FileItemSource[CsvRow]):
    """Items from a CSV file whose first record is the header.

    Each row reaches the row functions as ``dict[str, str]`` keyed by the header
    (:class:`csv.DictReader` semantics with the ``excel`` dialect and the given
    ``delimiter``; quoted fields may span lines; blank lines are skipped). A row
    with more or fewer fields than the header is an error, not padded.
    ``payload_from_row`` defaults to the row itself.

    Lines end with ``\\n`` or ``\\r\\n``. Row numbers in errors are the 1-based
    line on which the record starts (the header is line 1). Fields may be of any
    size (see :func:`allow_large_fields`). Bytes that are not valid in ``encoding``
    are an error naming the file, the line and what to do.

    Checkpoint: ``{"byte_offset": int, "next_row_index": int, "lines_read": int}``,
    the position right after a record; ``byte_offset`` 0 means "before the header".
    """

    kind = "csv"
    blank_bytes = b"\r\n"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        item_id_from_row: Callable[[CsvRow], str],
        payload_from_row: Callable[[CsvRow], Any] | None = None,
        metadata_from_row: Callable[[CsvRow], Mapping[str, Any]] | None = None,
        encoding: str = "utf-8",
        delimiter: str = ",",
    ) -> None:
        name = type(self).__name__
        self._encoding, self._line_codec = _line_encoding(encoding, name)
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
            raise ConfigurationError(
                f"{name}.delimiter must be one character other than a quote or newline, "
                f"got {delimiter!r}"
            )
        self._delimiter = delimiter
        super().__init__(
            path,
            item_id_from_row=item_id_from_row,
            payload_from_row=payload_from_row,
            metadata_from_row=metadata_from_row,
        )

    def _reading_options(self) -> dict[str, JSONValue]:
        return {"encoding": self._encoding, "delimiter": self._delimiter}

    def initial_checkpoint(self) -> JSONValue:
        """The position before the header."""
        return {"byte_offset": 0, "next_row_index": 0, "lines_read": 0}

    def iter_from(self, checkpoint: JSONValue) -> Iterator[CheckpointedItem]:
        """Rows after ``checkpoint``; the header is re-read from the start of the file."""
        byte_offset, row_index, lines_read = read_checkpoint_ints(
            checkpoint, _CHECKPOINT_KEYS, type(self).__name__
        )
        source_ref = self._source_ref
        line_codec = self._line_codec
        build_item = self._builder.build_item
        with self._open_binary() as file:
            header = self._read_header(file)
            if header is None:
                return
            columns, header_end, header_lines = header
            if byte_offset == 0:
                byte_offset, lines_read = header_end, header_lines
            file.seek(byte_offset)

            position = byte_offset
            line_number = lines_read

            def decoded_lines() -> Iterator[str]:
                nonlocal position, line_number
                for raw in file:
                    position += len(raw)
                    line_number += 1
                    yield raw.decode(line_codec)

            width = len(columns)
            record_start = line_number + 1
            try:
                for fields in csv.reader(decoded_lines(), delimiter=self._delimiter):
                    if not fields:
                        record_start = line_number + 1
                        continue
                    if len(fields) != width:
                        raise SourceRowError(
                            f"expected {width} fields (as in the header), got {len(fields)}",
                            source_ref=source_ref,
                            row_number=record_start,
                        )
                    item = build_item(
                        dict(zip(columns, fields, strict=True)), row_index, record_start
                    )
                    row_index += 1
                    record_start = line_number + 1
                    yield CheckpointedItem(
                        item,
                        {
                            "byte_offset": position,
                            "next_row_index": row_index,
                            "lines_read": line_number,
                        },
                    )
            except UnicodeDecodeError as exc:
                raise SourceRowError(
                    decoding_problem(exc, line_codec, self._first_bytes()),
                    source_ref=source_ref,
                    row_number=line_number,
                ) from exc
            except csv.Error as exc:
                raise SourceRowError(
                    f"malformed CSV: {exc}", source_ref=source_ref, row_number=record_start
                ) from exc

    def _first_bytes(self) -> bytes:
        with self._open_binary() as file:
            return file.read(4)

    def _read_header(self, file: IO[bytes]) -> tuple[list[str], int, int] | None:
        """``(column names, byte offset after the header, lines it took)``, or None
        for a file with no records at all."""
        allow_large_fields()
        file.seek(0)
        position = 0
        line_number = 0

        def decoded_lines() -> Iterator[str]:
            nonlocal position, line_number
            for raw in file:
                position += len(raw)
                line_number += 1
                yield raw.decode(self._encoding)

        try:
            for columns in csv.reader(decoded_lines(), delimiter=self._delimiter):
                if columns:
                    break
            else:
                return None
        except UnicodeDecodeError as exc:
            raise SourceRowError(
                decoding_problem(exc, self._encoding, self._first_bytes()),
                source_ref=self._source_ref,
                row_number=line_number,
            ) from exc
        except csv.Error as exc:
            raise SourceRowError(
                f"malformed CSV header: {exc}", source_ref=self._source_ref, row_number=1
            ) from exc
        seen: set[str] = set()
        for column in columns:
            if column in seen:
                raise SourceRowError(
                    f"the header names column {column!r} twice",
                    source_ref=self._source_ref,
                    row_number=line_number,
                    field=column,
                )
            seen.add(column)
        return columns, position, line_number
