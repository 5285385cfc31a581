"""``JsonlItemSource``: one JSON value per line, resumable by byte offset."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from batchor.errors import SourceRowError
from batchor.sources._files import FileItemSource, read_checkpoint_ints
from batchor.sources.base import CheckpointedItem
from batchor.types import JSONValue

_CHECKPOINT_KEYS = ("byte_offset", "next_row_index", "lines_read")


class JsonlItemSource(FileItemSource[Any]):
    """Items from a JSON Lines file (UTF-8, one JSON value per line).

    Each non-blank line is parsed with :func:`json.loads` and the value (usually
    a dict, but any JSON value) is passed to the row functions.
    ``payload_from_row`` defaults to the parsed value itself. Blank lines are
    skipped; row numbers in errors are 1-based line numbers.

    Checkpoint: ``{"byte_offset": int, "next_row_index": int, "lines_read": int}``,
    the position right after a line.
    """

    kind = "jsonl"
    blank_bytes = b" \t\r\n\x0b\x0c"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        item_id_from_row: Callable[[Any], str],
        payload_from_row: Callable[[Any], Any] | None = None,
        metadata_from_row: Callable[[Any], Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            path,
            item_id_from_row=item_id_from_row,
            payload_from_row=payload_from_row,
            metadata_from_row=metadata_from_row,
        )

    def initial_checkpoint(self) -> JSONValue:
        """The start of the file."""
        return {"byte_offset": 0, "next_row_index": 0, "lines_read": 0}

    def iter_from(self, checkpoint: JSONValue) -> Iterator[CheckpointedItem]:
        """Lines after ``checkpoint``, read from its byte offset."""
        position, row_index, line_number = read_checkpoint_ints(
            checkpoint, _CHECKPOINT_KEYS, type(self).__name__
        )
        source_ref = self._source_ref
        build_item = self._builder.build_item
        loads = json.loads
        with self._open_binary() as file:
            file.seek(position)
            for line in file:
                position += len(line)
                line_number += 1
                if line.isspace():
                    continue
                try:
                    row = loads(line)
                except json.JSONDecodeError as exc:
                    # not exc.colno: the line's own newline makes an error at its end
                    # read as "line 2, column 1"; point just past the last character
                    column = min(exc.pos, len(exc.doc.rstrip())) + 1
                    raise SourceRowError(
                        f"invalid JSON: {exc.msg} at column {column}",
                        source_ref=source_ref,
                        row_number=line_number,
                    ) from exc
                except ValueError as exc:  # bytes that are not UTF-8 text
                    raise SourceRowError(
                        f"invalid JSON line: {exc}", source_ref=source_ref, row_number=line_number
                    ) from exc
                item = build_item(row, row_index, line_number)
                row_index += 1
                yield CheckpointedItem(
                    item,
                    {
                        "byte_offset": position,
                        "next_row_index": row_index,
                        "lines_read": line_number,
                    },
                )
