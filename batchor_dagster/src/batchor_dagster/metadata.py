"""The metadata batchor writes where Dagster users look for it.

- :func:`progress_metadata`: a run's counts, batches, tokens and cost: the
  submit asset's materialization and the sensor's ``AssetObservation`` of it
  carry it, so the asset's page plots a run's progress over time.
- :func:`results_metadata`: the results asset's, in Dagster's conventions
  (``dagster/row_count``, ``dagster/column_schema`` as a ``TableSchema``, a
  ``preview`` table) plus the token counts under the keys the provider's
  official Dagster integration uses (:func:`usage_metadata`), so Dagster+
  Insights charts them next to that integration's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from batchor import RunSummary

COST_DIGITS = 8
"""Costs in metadata are rounded to this many decimals of a dollar."""

PREVIEW_ROWS = 10
_HIDDEN_IN_PREVIEW = ("lineage", "metadata")
_CELL_WIDTH = 60


def progress_metadata(summary: RunSummary) -> dict[str, Any]:
    """A run's progress: items by status, batches, tokens, cost and percent terminal."""
    total = summary.total_items
    metadata: dict[str, Any] = {
        "status": summary.status.value,
        "items_total": total,
        "items_pending": summary.pending_items,
        "items_submitted": summary.submitted_items,
        "items_completed": summary.completed_items,
        "items_failed": summary.failed_items,
        "batches_in_flight": summary.batches_in_flight,
        "batches_total": summary.batches_total,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "percent_terminal": round(100.0 * summary.terminal_items / total, 2) if total else 0.0,
    }
    if summary.control_state.value != "running":
        metadata["control_state"] = summary.control_state.value
    cost = summary.estimated_cost_usd
    if cost is not None and math.isfinite(cost):
        metadata["estimated_cost_usd"] = round(cost, COST_DIGITS)
    return metadata


def usage_metadata(
    provider: str,
    model: str,
    *,
    calls: int,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
) -> dict[str, int]:
    """Token counts under the keys of the provider's Dagster integration.

    OpenAI (and Azure OpenAI) as dagster-openai writes them
    (``openai.<model>.calls``, ``.prompt_tokens``, ``.completion_tokens``,
    ``.total_tokens``), Anthropic as dagster-anthropic (``anthropic.calls``,
    ``.input_tokens``, ``.output_tokens``, ``.cache_read_input_tokens``), Gemini as
    dagster-gemini (``gemini.calls``, ``.prompt_token_count``,
    ``.candidates_token_count``, ``.total_token_count``,
    ``.cached_content_token_count``); any other provider as
    ``<kind>.<model>.calls`` / ``.input_tokens`` / ``.output_tokens``. ``calls`` counts
    the provider's executions of a request (an item's attempts).
    """
    if provider in ("openai", "azure"):
        prefix = f"openai.{model}"
        return {
            f"{prefix}.calls": calls,
            f"{prefix}.prompt_tokens": input_tokens,
            f"{prefix}.completion_tokens": output_tokens,
            f"{prefix}.total_tokens": input_tokens + output_tokens,
        }
    if provider == "anthropic":
        return {
            "anthropic.calls": calls,
            "anthropic.input_tokens": input_tokens,
            "anthropic.output_tokens": output_tokens,
            "anthropic.cache_read_input_tokens": cached_input_tokens,
        }
    if provider == "gemini":
        return {
            "gemini.calls": calls,
            "gemini.prompt_token_count": input_tokens,
            "gemini.candidates_token_count": output_tokens,
            "gemini.total_token_count": input_tokens + output_tokens,
            "gemini.cached_content_token_count": cached_input_tokens,
        }
    prefix = f"{provider}.{model}"
    return {
        f"{prefix}.calls": calls,
        f"{prefix}.input_tokens": input_tokens,
        f"{prefix}.output_tokens": output_tokens,
    }


def results_metadata(
    *, provider: str, summaries: Iterable[RunSummary], table: pa.Table
) -> dict[str, Any]:
    """The results asset's metadata for one or more terminal runs (one per partition
    of a single-run backfill) and the table of all their rows."""
    runs = list(summaries)
    total = sum(summary.total_items for summary in runs)
    failed = sum(summary.failed_items for summary in runs)
    input_tokens = sum(summary.input_tokens for summary in runs)
    output_tokens = sum(summary.output_tokens for summary in runs)
    statuses = {summary.status.value for summary in runs}
    metadata: dict[str, Any] = {
        "status": statuses.pop() if len(statuses) == 1 else "mixed",
        "rows": table.num_rows,
        "completed": sum(summary.completed_items for summary in runs),
        "failed": failed,
        "failure_rate": failed / total if total else 0.0,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": column_schema(table),
        "preview": preview_table(table),
    }
    costs = [summary.estimated_cost_usd for summary in runs]
    if costs and all(cost is not None and math.isfinite(cost) for cost in costs):
        metadata["estimated_cost_usd"] = round(
            sum(cost for cost in costs if cost is not None), COST_DIGITS
        )
    calls = pc.sum(table["attempts"]).as_py() if "attempts" in table.column_names else None
    metadata.update(
        usage_metadata(
            provider,
            runs[0].model if runs else "unknown",
            calls=int(calls or 0),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=sum(summary.cached_input_tokens for summary in runs),
        )
    )
    return metadata


def column_schema(table: pa.Table) -> TableSchema:
    """The table's columns and Arrow types, as ``dagster/column_schema`` shows them."""
    return TableSchema(columns=[TableColumn(field.name, str(field.type)) for field in table.schema])


def preview_table(table: pa.Table, *, rows: int = PREVIEW_ROWS) -> MetadataValue[Any]:
    """The first ``rows`` rows as a Dagster table (nested values as shortened JSON text)."""
    shown = [name for name in table.column_names if name not in _HIDDEN_IN_PREVIEW]
    head = table.select(shown).slice(0, rows).to_pylist()
    schema = TableSchema(
        columns=[TableColumn(name, _preview_type(table.schema.field(name).type)) for name in shown]
    )
    records = [TableRecord({name: _cell(row[name]) for name in shown}) for row in head]
    return MetadataValue.table(records=records, schema=schema)


def _preview_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    return "string"


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 1] + "…"
