"""``python -m batchor.testing`` serves on a port until terminated."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from local_server_kit import BatchKit


@pytest.mark.slow
def test_module_serves_the_api_until_terminated(tmp_path: Path) -> None:
    data_dir = tmp_path / "served"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchor.testing",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--pace-in-progress",
            "3600",
            "--token-limit",
            "gpt-4.1=1000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        announced = process.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", announced)
        assert found, announced
        kit = BatchKit(
            openai.OpenAI(api_key="t", base_url=found.group(1), max_retries=0, timeout=10)
        )

        small = kit.retrieve(kit.submit([BatchKit.responses_request("a")]))
        large = kit.retrieve(kit.submit([BatchKit.responses_request("b", "x" * 4000)]))
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)

    assert code == 0
    assert small.status == "in_progress"
    assert large.status == "failed"
    assert large.errors is not None and large.errors.data is not None
    assert large.errors.data[0].code == "token_limit_exceeded"
    assert len(list((data_dir / "batches").glob("*.json"))) == 2


def test_module_help_lists_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "batchor.testing", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )

    for option in ("--port", "--data-dir", "--pace-in-progress", "--token-limit", "--api-key"):
        assert option in result.stdout
