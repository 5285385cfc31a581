"""The main job: a real structured-output batch run, end to end, offline.

Starts the local OpenAI-compatible Batch server, classifies a few thousand
support tickets through it with a durable SQLite run (under ``out/``), writes
the typed results to ``out/results.parquet`` and prints the run summary.

    python examples/quickstart.py [--items 3000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    LocalArtifactStore,
    OpenAIEnqueueLimitConfig,
    OpenAIProviderConfig,
    PromptParts,
    SQLiteStorage,
)
from batchor.testing import LocalBatchServer

TOPICS = ["billing", "shipping", "returns", "account", "product quality"]


class TicketTriage(BaseModel):
    """What the model returns for each ticket."""

    topic: Literal["billing", "shipping", "returns", "account", "product quality"]
    urgency: int = Field(ge=1, le=5)
    summary: str


def tickets(count: int) -> list[BatchItem]:
    return [
        BatchItem(
            item_id=f"ticket-{number:05d}",
            payload={"text": f"Ticket {number}: a question about {TOPICS[number % len(TOPICS)]}."},
            metadata={"customer": f"c{number % 97}"},
        )
        for number in range(count)
    ]


def build_prompt(item: BatchItem) -> PromptParts:
    return PromptParts(
        prompt=item.payload["text"],
        system_prompt="Classify the support ticket: topic, urgency 1-5, one-line summary.",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with LocalBatchServer(data_dir=args.out / "server") as server:
        runner = BatchRunner(
            storage=SQLiteStorage(path=args.out / "runs.sqlite3"),
            artifact_store=LocalArtifactStore(args.out / "artifacts"),
        )
        job = BatchJob(
            items=tickets(args.items),
            build_prompt=build_prompt,
            structured_output=TicketTriage,
            provider_config=OpenAIProviderConfig(
                model="gpt-4.1-mini",
                api_key="sk-local-demo",
                base_url=server.base_url,
                enqueue_limits=OpenAIEnqueueLimitConfig(enqueued_token_limit=2_000_000),
            ),
        )
        started = time.perf_counter()
        run = runner.start(job)
        print(f"started {run.run_id} with {args.items} items")
        summary = run.wait()
        export = run.export_terminal_results(args.out / "results.parquet")
        elapsed = time.perf_counter() - started

    table = pq.read_table(export.path)
    print(f"status: {summary.status.value} in {elapsed:.1f} s")
    print(
        f"items: {summary.completed_items} completed, {summary.failed_items} failed; "
        f"batches: {summary.batches_total}"
    )
    cost = summary.estimated_cost_usd
    print(
        f"tokens: {summary.input_tokens} in / {summary.output_tokens} out; "
        f"estimated cost: {'n/a' if cost is None else f'${cost:.4f}'}"
    )
    print(f"results: {export.path} ({table.num_rows} rows)")
    first = run.read_terminal_results(limit=1).items[0]
    print(f"first result: {first.item_id} -> {first.output!r}")
    return 0 if summary.failed_items == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
