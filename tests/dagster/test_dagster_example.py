"""The example code location: its workspace validates, and its local server keeps
batches on disk across restarts (a code reload)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY / "examples" / "dagster_pipeline"))

from batchor_example.local_server import ensure_local_server  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.slow
def test_the_workspace_definitions_validate(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "BATCHOR_EXAMPLE_HOME": str(tmp_path / "example"),
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            str(REPOSITORY / "workspace.yaml"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
    assert (tmp_path / "example" / ".gitignore").read_text().endswith("*\n")
    assert not (tmp_path / "example" / "local-openai").exists(), "validating starts no server"


def test_the_local_server_starts_once_and_keeps_its_batches_on_disk(tmp_path: Path) -> None:
    port = free_port()
    started = ensure_local_server(port, tmp_path / "server")
    assert started is not None
    try:
        assert ensure_local_server(port, tmp_path / "server") is None
        client = openai.OpenAI(api_key="sk-any", base_url=f"http://127.0.0.1:{port}/v1")
        upload = client.files.create(
            file=(
                "requests.jsonl",
                b'{"custom_id": "a", "method": "POST", "url": '
                b'"/v1/responses", "body": {"model": "gpt-4.1-mini", "input": "hi"}}\n',
            ),
            purpose="batch",
        )
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/responses", completion_window="24h"
        )
    finally:
        started.stop()

    restarted = ensure_local_server(port, tmp_path / "server")
    assert restarted is not None
    try:
        assert client.batches.retrieve(batch.id).status == "completed"
    finally:
        restarted.stop()
