"""The README's main job (examples/quickstart.py) runs and writes its Parquet results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def test_the_quickstart_job_writes_typed_results_to_parquet(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), "--items", "40", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "status: completed" in done.stdout
    table = pq.read_table(tmp_path / "results.parquet")
    assert table.num_rows == 40
    assert set(table.column("status").to_pylist()) == {"completed"}
    assert all(urgency is not None for urgency in table.column("urgency").to_pylist())
