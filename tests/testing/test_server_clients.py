"""Clients other than batchor's adapter: plain ``openai`` scripts, run as their users run them.

Each script (``clients/``) is a separate process configured only by
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``, exactly as against api.openai.com.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchor.testing import LocalBatchServer

CLIENTS = Path(__file__).with_name("clients")


def run_client(script: str, server: LocalBatchServer) -> dict[str, Any]:
    environment = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-3rd"}
    done = subprocess.run(
        [sys.executable, str(CLIENTS / script)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_a_script_uploading_raw_bytes_gets_its_answers(server: LocalBatchServer) -> None:
    result = run_client("raw_bytes_upload.py", server)

    assert result["filename"] == "upload"
    assert result["status"] == "completed"
    assert sorted(result["answers"]) == ["ticket-0", "ticket-1", "ticket-2"]
    assert "Summarise ticket 1" in result["answers"]["ticket-1"]


@pytest.mark.slow
def test_a_script_paging_batches_and_streaming_content_sees_everything(
    server: LocalBatchServer,
) -> None:
    result = run_client("paginate_and_stream.py", server)

    assert result["listed"] == result["created"][::-1]
    assert result["lines"] == {
        batch_id: [f"row-{n}"] for n, batch_id in enumerate(result["created"])
    }
    assert server.call_counts["GET /v1/batches"] == 3  # pages of 2, 2 and 1
