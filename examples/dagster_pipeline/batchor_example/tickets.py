"""The example's data and prompt: support tickets, triaged by a model into typed fields.

``TicketTriage`` is at module level in an importable module on purpose: batchor
imports it by name (``batchor_example.tickets:TicketTriage``) whenever a process
reads results back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel

from batchor import BatchItem, PromptParts

TOPICS = ["billing", "shipping", "returns", "account", "product quality"]
REGIONS = ["emea", "amer", "apac"]


class TicketTriage(BaseModel):
    """What the model returns for each ticket."""

    topic: Literal["billing", "shipping", "returns", "account", "product quality"]
    urgency: int
    summary: str


class TicketRouting(BaseModel):
    """Where a ticket goes (the YAML job's structured output)."""

    team: Literal["payments", "logistics", "customer care", "engineering"]
    needs_human_reply: bool


def ticket_rows(count: int, *, region: str | None = None) -> list[dict[str, object]]:
    """``count`` deterministic tickets (the same every time, so resubmitting resumes)."""
    prefix = f"{region}-" if region else ""
    return [
        {
            "ticket_id": f"{prefix}T{number:05d}",
            "customer": f"c{number % 97}",
            "text": (
                f"Ticket {number}: a question about {TOPICS[number % len(TOPICS)]}"
                + (f" from {region.upper()}" if region else "")
                + "."
            ),
        }
        for number in range(count)
    ]


def ticket_table(count: int) -> pa.Table:
    return pa.Table.from_pylist(ticket_rows(count))


def write_jsonl(rows: list[dict[str, object]], path: Path) -> Path:
    """Write ``rows`` as JSON Lines (atomically) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    temporary.replace(path)
    return path


def build_prompt(item: BatchItem) -> PromptParts:
    return PromptParts(
        prompt=item.payload["text"],
        system_prompt="Classify the support ticket: topic, urgency 1-5, one-line summary.",
    )
