"""A batchor process for crash tests: the parent test SIGKILLs it at chosen points.

    python crash_child.py MODE DATA_DIR BASE_URL RUN_ID [--source jsonl]

MODE ``start`` starts the run and waits; ``restart`` calls ``start`` again with the
same run id (resuming ingestion) and waits; ``resume`` rehydrates the run with
``get_run`` and waits. Progress goes to stdout, one line per event, so the parent
can kill at the right moment.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ChunkPolicy,
    JsonlItemSource,
    LocalArtifactStore,
    OpenAIProviderConfig,
    PromptParts,
    SQLiteStorage,
)

ITEM_COUNT = 400
API_KEY = "sk-crash-test-key-do-not-store-4242"


def slow_items() -> Iterator[BatchItem]:
    for n in range(ITEM_COUNT):
        if n % 40 == 0:
            time.sleep(0.05)
        yield BatchItem(item_id=f"item-{n:04d}", payload={"text": f"document {n}"})


def write_jsonl(path: Path) -> Path:
    if not path.exists():
        lines = (
            json.dumps({"id": f"item-{n:04d}", "text": f"document {n}"}) for n in range(ITEM_COUNT)
        )
        path.write_text("\n".join(lines) + "\n")
    return path


def make_job(data_dir: Path, base_url: str, source: str) -> BatchJob:
    items = (
        JsonlItemSource(
            write_jsonl(data_dir / "input.jsonl"),
            item_id_from_row=lambda row: str(row["id"]),
            payload_from_row=lambda row: {"text": row["text"]},
        )
        if source == "jsonl"
        else slow_items()
    )
    return BatchJob(
        items=items,
        build_prompt=lambda item: PromptParts(prompt=item.payload["text"]),
        provider_config=OpenAIProviderConfig(
            model="gpt-4.1-mini", api_key=API_KEY, base_url=base_url, max_retries=0
        ),
        chunk_policy=ChunkPolicy(ingest_slice_size=20),
    )


def main() -> None:
    mode, data_dir, base_url, run_id = sys.argv[1:5]
    source = sys.argv[6] if len(sys.argv) > 6 and sys.argv[5] == "--source" else "iterable"
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
        run = runner.start(make_job(directory, base_url, source), run_id=run_id, progress=report)
    print("ingested", flush=True)
    summary = run.wait(timeout=120, poll_interval=0.05)
    print(f"finished {summary.status.value}", flush=True)


if __name__ == "__main__":
    main()
