"""A batchor process on Anthropic for crash tests: the parent test SIGKILLs it at
chosen points.

    python anthropic_crash_child.py MODE DATA_DIR SERVER_URL RUN_ID

MODE ``start`` starts the run and waits; ``restart`` calls ``start`` again with the
same run id (resuming ingestion) and waits; ``resume`` rehydrates the run with
``get_run`` (the stored config rebuilds the Anthropic adapter) and waits. Progress
goes to stdout, one line per event, so the parent can kill at the right moment.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from batchor import (
    AnthropicProviderConfig,
    BatchItem,
    BatchJob,
    BatchRunner,
    ChunkPolicy,
    LocalArtifactStore,
    PromptParts,
    SQLiteStorage,
)

ITEM_COUNT = 200
MODEL = "claude-haiku-4-5"
API_KEY = "sk-ant-crash-test-key-do-not-store-4242"


def slow_items() -> Iterator[BatchItem]:
    for n in range(ITEM_COUNT):
        if n % 20 == 0:
            time.sleep(0.05)
        yield BatchItem(item_id=f"item-{n:04d}", payload={"text": f"document {n}"})


def make_job(server_url: str) -> BatchJob:
    return BatchJob(
        items=slow_items(),
        build_prompt=lambda item: PromptParts(prompt=item.payload["text"]),
        provider_config=AnthropicProviderConfig(
            model=MODEL, api_key=API_KEY, base_url=server_url, max_retries=0
        ),
        chunk_policy=ChunkPolicy(ingest_slice_size=20),
    )


def main() -> None:
    mode, data_dir, server_url, run_id = sys.argv[1:5]
    directory = Path(data_dir)
    runner = BatchRunner(
        storage=SQLiteStorage(path=directory / "runs.sqlite3"),
        artifact_store=LocalArtifactStore(directory / "artifacts"),
        api_key=API_KEY,
    )

    def report(stored: int) -> None:
        print(f"stored {stored}", flush=True)

    if mode == "resume":
        run = runner.get_run(run_id)
    else:
        run = runner.start(make_job(server_url), run_id=run_id, progress=report)
    print("ingested", flush=True)
    summary = run.wait(timeout=120, poll_interval=0.05)
    print(f"finished {summary.status.value}", flush=True)


if __name__ == "__main__":
    main()
