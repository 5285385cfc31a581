"""``batchor start`` inputs: files to a checkpointed source, options to a prompt.

Each file becomes the library's own source for its extension (CSV, JSONL,
Parquet), several files one :class:`~batchor.CompositeItemSource`. Every column
the options name is checked against each file's header (CSV), first record
(JSONL) or schema (Parquet) before a run is created, so a typo fails fast with
the file and column in the message instead of at row 1 of a stored run.

An item's payload is a dict of just the columns the prompt reads; its id is
the id column's value as text.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import typer

import batchor.prompts
from batchor.errors import ConfigurationError
from batchor.prompts import PromptBuilder
from batchor.sources import (
    CheckpointedItemSource,
    CompositeItemSource,
    file_format,
    file_source,
)
from batchor.sources.columns import ColumnRows
from batchor.sources.csv_file import allow_large_fields, decoding_problem

CSV_ENCODING = "utf-8-sig"
"""UTF-8, with or without the byte-order mark spreadsheet programs write."""

_MAX_LISTED_COLUMNS = 12


def prompt_builder(
    prompt_column: str | None, template: str | None, system_prompt: str | None
) -> PromptBuilder:
    """The builder for ``--prompt-column`` / ``--prompt-template`` (exactly one)."""
    if (prompt_column is None) == (template is None):
        raise typer.BadParameter(
            "give exactly one of --prompt-column COLUMN or --prompt-template TEXT",
            param_hint="'--prompt-column' / '--prompt-template'",
        )
    if prompt_column is not None:
        return PromptBuilder.from_column(prompt_column, system_prompt)
    assert template is not None
    return PromptBuilder(template_fields(template), template=template, system_prompt=system_prompt)


def prompt_fingerprint(id_column: str, prompt: PromptBuilder) -> str:
    """16 hex digits identifying how rows become requests (id column, prompt column or
    template, system prompt). Stored with the run, so a resumed ``start`` with other
    options is refused instead of mixing two kinds of prompt in one run."""
    spec = [id_column, prompt.prompt_column, prompt.template, prompt.system_prompt]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


def template_fields(template: str) -> tuple[str, ...]:
    """:func:`batchor.prompts.template_fields`, as a usage error of ``--prompt-template``."""
    try:
        return batchor.prompts.template_fields(template)
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--prompt-template'") from None


def input_format(path: Path) -> str:
    """``csv``, ``jsonl`` or ``parquet``, from the file's extension."""
    try:
        return file_format(path)
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="'INPUT'") from None


def read_columns(path: Path, kind: str, csv_encoding: str = CSV_ENCODING) -> list[str]:
    """The column names of an input: CSV header, first JSONL object, Parquet schema."""
    if kind == "csv":
        allow_large_fields()
        try:
            decoder = codecs.getincrementaldecoder(csv_encoding)()
        except LookupError:
            raise typer.BadParameter(
                f"unknown encoding {csv_encoding!r}", param_hint="'--encoding'"
            ) from None
        lines_read = 0
        with path.open("rb") as handle:

            def decoded_lines() -> Iterator[str]:
                nonlocal lines_read
                for raw in handle:
                    lines_read += 1
                    yield decoder.decode(raw)

            try:
                for header in csv.reader(decoded_lines()):
                    if header:
                        return header
            except UnicodeDecodeError as exc:
                handle.seek(0)
                problem = decoding_problem(exc, csv_encoding, handle.read(4), "--encoding")
                raise _input_problem(f"{path}, line {lines_read}: {problem}") from None
        raise _input_problem(f"{path}: the file is empty; a CSV input needs a header row")
    if kind == "jsonl":
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                if line.isspace():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise _input_problem(f"{path}, line {number}: invalid JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise _input_problem(
                        f"{path}, line {number}: expected a JSON object, got {type(row).__name__}"
                    )
                return [str(key) for key in row]
        raise _input_problem(f"{path}: the file has no JSON object to read columns from")
    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise _input_problem(f"{path}: cannot read it as Parquet ({exc})") from None


def _input_problem(message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint="'INPUT'")


def _describe(columns: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in columns[:_MAX_LISTED_COLUMNS])
    if len(columns) > _MAX_LISTED_COLUMNS:
        shown += f", ... ({len(columns)} columns)"
    return shown or "none"


def check_columns(path: Path, columns: Sequence[str], wanted: Mapping[str, str]) -> None:
    """A usage error naming the file, the column and the option when an option
    (``wanted``: column -> option) names a column the file lacks."""
    for column, option in wanted.items():
        if column not in columns:
            raise typer.BadParameter(
                f"{path} has no column {column!r} (its columns: {_describe(columns)})",
                param_hint=f"'{option}'",
            )


def open_source(
    paths: Sequence[Path],
    id_column: str,
    prompt: PromptBuilder,
    csv_encoding: str = CSV_ENCODING,
) -> CheckpointedItemSource:
    """The checkpointed source over ``paths``, after checking every file's columns
    (``csv_encoding``: how CSV files are encoded)."""
    wanted = {id_column: "--id-column"}
    option = "--prompt-column" if prompt.prompt_column is not None else "--prompt-template"
    for field in prompt.fields:
        wanted.setdefault(field, option)
    reader = ColumnRows(id_column, prompt.fields)
    sources: list[CheckpointedItemSource] = []
    for path in paths:
        check_columns(path, read_columns(path, input_format(path), csv_encoding), wanted)
        sources.append(
            file_source(
                path,
                item_id_from_row=reader.item_id,
                payload_from_row=reader.payload,
                csv_encoding=csv_encoding,
                columns=list(wanted),
            )
        )
    return sources[0] if len(sources) == 1 else CompositeItemSource(sources)
