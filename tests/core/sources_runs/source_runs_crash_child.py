"""A batchor process ingesting a source, for the SIGKILL tests of each source kind.

    python source_runs_crash_child.py MODE KIND DATA_DIR BASE_URL RUN_ID

``start`` ingests slowly after the first 100 rows (so the parent can kill it
mid-ingestion) and waits for the run; ``restart`` calls ``start`` again with the
same run id at full speed and waits. The input files are already in
``DATA_DIR/input``. Each stored slice is reported on stdout (``stored N``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from source_runs_kit import make_job, make_source

from batchor import BatchRunner, LocalArtifactStore, OpenAIProviderConfig, SQLiteStorage

API_KEY = "sk-source-crash-test-do-not-store-77"
SLICE_SIZE = 20
SLOW_AFTER_ROWS = 100


def main() -> None:
    mode, kind, data_dir, base_url, run_id = sys.argv[1:6]
    directory = Path(data_dir)
    rows_read = 0

    def pace(row: Any) -> None:
        nonlocal rows_read
        rows_read += 1
        if mode == "start" and rows_read > SLOW_AFTER_ROWS:
            time.sleep(0.01)

    runner = BatchRunner(
        storage=SQLiteStorage(path=directory / "runs.sqlite3"),
        artifact_store=LocalArtifactStore(directory / "artifacts"),
        api_key=API_KEY,
    )
    job = make_job(
        make_source(kind, directory / "input", pace),
        OpenAIProviderConfig(model="gpt-4.1-mini", api_key=API_KEY, base_url=base_url),
        slice_size=SLICE_SIZE,
    )
    run = runner.start(
        job, run_id=run_id, progress=lambda stored: print(f"stored {stored}", flush=True)
    )
    print("ingested", flush=True)
    summary = run.wait(timeout=120, poll_interval=0.05)
    print(f"finished {summary.status.value}", flush=True)


if __name__ == "__main__":
    main()
