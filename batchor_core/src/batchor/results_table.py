"""Terminal results as an Arrow table: one row per item, one column per output field.

This is the one results table batchor writes: ``Run.export_terminal_results``
to ``.parquet``, ``batchor results -o x.parquet`` and the Dagster results asset.
Columns, in order:

- ``item_id``, ``status`` (``completed`` / ``failed``);
- the output: one column per field of the structured-output model (typed:
  strings, integers, floats, booleans, lists and nested structs; anything else
  as JSON text) followed by ``output_text`` (the raw reply) and ``output_error``
  (why a stored reply did not become the model, see
  :attr:`~batchor.ItemResult.output_error`), or ``output_text`` alone for plain
  text jobs, ``embedding`` (``list<double>``) for embeddings,
  ``output_json`` (JSON text) for other data;
- ``error_code``, ``error_message``, ``attempts``, ``resubmissions``,
  ``input_tokens``, ``cached_input_tokens``, ``output_tokens``,
  ``reasoning_tokens``, ``sequence`` (terminal order);
- ``lineage`` (struct: ``source_ref``, ``partition_id``, ``source_item_index``,
  ``source_primary_key``, ``source_namespace``) and ``metadata`` (the item's
  other metadata as JSON text, or null).

A model field whose name is one of these fixed columns is written as
``output_<name>``.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel

from batchor.providers.base import OutputKind
from batchor.results import ItemResult
from batchor.types import LINEAGE_FIELDS, LINEAGE_KEY, canonical_json

FIXED_COLUMNS = frozenset(
    {
        "item_id",
        "status",
        "output_text",
        "output_error",
        "output_json",
        "embedding",
        "error_code",
        "error_message",
        "attempts",
        "resubmissions",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "sequence",
        "lineage",
        "metadata",
    }
)

LINEAGE_TYPE = pa.struct(
    [(name, pa.int64() if name == "source_item_index" else pa.string()) for name in LINEAGE_FIELDS]
)
_PAGE_ROWS = 10_000


@dataclass(frozen=True)
class _OutputColumn:
    column: str
    field: str | None  # the model field, None for output_text / embedding
    arrow_type: pa.DataType
    as_json: bool  # written as JSON text (types Arrow cannot hold faithfully)


class ResultsTableLayout:
    """The Arrow schema of a job's results and how each result becomes a row.

    ``output_errors`` adds the ``output_error`` column after ``output_text``; it
    is on by default for structured output, and a run whose output class cannot
    be imported here passes ``structured_output=None, output_errors=True``.
    """

    def __init__(
        self,
        structured_output: type[BaseModel] | None,
        output_kind: OutputKind = OutputKind.TEXT,
        *,
        output_errors: bool | None = None,
    ) -> None:
        if output_errors is None:
            output_errors = structured_output is not None
        error_columns = [_OutputColumn("output_error", None, pa.string(), False)]
        if structured_output is not None:
            # the raw text too: it stays readable whatever the model class becomes
            self._outputs = [
                *(
                    _model_field_column(name, field.annotation)
                    for name, field in structured_output.model_fields.items()
                ),
                _OutputColumn("output_text", None, pa.string(), False),
                *(error_columns if output_errors else []),
            ]
        elif output_errors:
            self._outputs = [_OutputColumn("output_text", None, pa.string(), False), *error_columns]
        elif output_kind is OutputKind.EMBEDDING:
            self._outputs = [_OutputColumn("embedding", None, pa.list_(pa.float64()), False)]
        elif output_kind is OutputKind.DATA:
            self._outputs = [_OutputColumn("output_json", None, pa.string(), True)]
        else:
            self._outputs = [_OutputColumn("output_text", None, pa.string(), False)]
        self._structured = structured_output is not None
        self.schema = pa.schema(
            [
                ("item_id", pa.string()),
                ("status", pa.string()),
                *[(output.column, output.arrow_type) for output in self._outputs],
                ("error_code", pa.string()),
                ("error_message", pa.string()),
                ("attempts", pa.int64()),
                ("resubmissions", pa.int64()),
                ("input_tokens", pa.int64()),
                ("cached_input_tokens", pa.int64()),
                ("output_tokens", pa.int64()),
                ("reasoning_tokens", pa.int64()),
                ("sequence", pa.int64()),
                ("lineage", LINEAGE_TYPE),
                ("metadata", pa.string()),
            ]
        )

    @property
    def output_columns(self) -> list[str]:
        return [output.column for output in self._outputs]

    def record_batch(
        self, results: Iterable[ItemResult], *, partition_key: str | None = None
    ) -> pa.RecordBatch:
        """One record batch of ``results``. ``partition_key`` fills ``lineage.partition_id``
        where the source did not set it (file sources do not know the partition)."""
        columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for result in results:
            columns["item_id"].append(result.item_id)
            columns["status"].append(result.status.value)
            self._append_outputs(columns, result)
            columns["error_code"].append(result.error.code if result.error else None)
            columns["error_message"].append(result.error.message if result.error else None)
            columns["attempts"].append(result.attempts)
            columns["resubmissions"].append(result.resubmissions)
            columns["input_tokens"].append(result.usage.input_tokens)
            columns["cached_input_tokens"].append(result.usage.cached_input_tokens)
            columns["output_tokens"].append(result.usage.output_tokens)
            columns["reasoning_tokens"].append(result.usage.reasoning_tokens)
            columns["sequence"].append(result.sequence)
            metadata = dict(result.metadata)
            lineage = metadata.pop(LINEAGE_KEY, None)
            columns["lineage"].append(_lineage_row(lineage, partition_key))
            columns["metadata"].append(json.dumps(metadata) if metadata else None)
        return pa.RecordBatch.from_pydict(columns, schema=self.schema)

    def table(self, results: Iterable[ItemResult], *, partition_key: str | None = None) -> pa.Table:
        """Every result, converted a bounded page at a time."""
        batches = [self.record_batch(page, partition_key=partition_key) for page in _pages(results)]
        return pa.Table.from_batches(batches, schema=self.schema)

    def _append_outputs(self, columns: dict[str, list[Any]], result: ItemResult) -> None:
        output = result.output
        if not self._structured:
            only, *errors = self._outputs
            if errors:
                columns["output_error"].append(result.output_error)
            if only.column == "output_text":
                columns[only.column].append(result.output_text)
            elif only.as_json:
                columns[only.column].append(None if output is None else canonical_json(output))
            else:
                columns[only.column].append(output)
            return
        data = output.model_dump(mode="json") if isinstance(output, BaseModel) else None
        for column in self._outputs:
            if column.column == "output_error":
                columns[column.column].append(result.output_error)
                continue
            if column.field is None:  # output_text
                columns[column.column].append(result.output_text)
                continue
            if data is None:
                columns[column.column].append(None)
                continue
            value = data.get(column.field or "")
            columns[column.column].append(
                json.dumps(value) if column.as_json and value is not None else value
            )


def _pages(results: Iterable[ItemResult]) -> Iterator[list[ItemResult]]:
    page: list[ItemResult] = []
    for result in results:
        page.append(result)
        if len(page) >= _PAGE_ROWS:
            yield page
            page = []
    if page:
        yield page


def _lineage_row(lineage: Any, partition_key: str | None) -> dict[str, Any] | None:
    if not isinstance(lineage, Mapping):
        return None if partition_key is None else {"partition_id": partition_key}
    index = lineage.get("source_item_index")
    return {
        "source_ref": _optional_text(lineage.get("source_ref")),
        "partition_id": _optional_text(lineage.get("partition_id")) or partition_key,
        "source_item_index": index if isinstance(index, int) else None,
        "source_primary_key": _optional_text(lineage.get("source_primary_key")),
        "source_namespace": _optional_text(lineage.get("source_namespace")),
    }


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _model_field_column(name: str, annotation: Any) -> _OutputColumn:
    column = f"output_{name}" if name in FIXED_COLUMNS else name
    arrow_type = arrow_type_for(annotation)
    if arrow_type is None:
        return _OutputColumn(column, name, pa.string(), True)
    return _OutputColumn(column, name, arrow_type, False)


def arrow_type_for(annotation: Any) -> pa.DataType | None:
    """The Arrow type that holds a field's JSON-mode value, or ``None`` when only JSON
    text can (mixed unions, free-form dicts, ``Any``)."""
    annotation = _without_none(annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return pa.bool_()
    if annotation is int:
        return pa.int64()
    if annotation is float:
        return pa.float64()
    if annotation is str:
        return pa.string()
    if origin is Literal:
        values = typing.get_args(annotation)
        if all(isinstance(value, bool) for value in values):
            return pa.bool_()
        if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
            return pa.int64()
        if all(isinstance(value, str) for value in values):
            return pa.string()
        return None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        member_values = [member.value for member in annotation]
        if all(isinstance(value, str) for value in member_values):
            return pa.string()
        if all(isinstance(value, int) and not isinstance(value, bool) for value in member_values):
            return pa.int64()
        return None
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set):
        args = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        if len(set(args)) != 1:
            return None
        inner = arrow_type_for(args[0])
        return None if inner is None else pa.list_(inner)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = []
        for name, field in annotation.model_fields.items():
            inner = arrow_type_for(field.annotation)
            if inner is None:
                return None
            fields.append((name, inner))
        return pa.struct(fields)
    return None


def _without_none(annotation: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]``; anything else unchanged."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    if origin is typing.Annotated:
        return _without_none(typing.get_args(annotation)[0])
    return annotation
