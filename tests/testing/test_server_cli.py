"""``python -m batchor.testing`` (and ``batchor emulator``): flags, faults, the docs' recipe."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from local_server_kit import BatchKit

from batchor.testing import Faults, default_responder
from batchor.testing.cli import apply_fault_flags, load_responder, main


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


def test_fault_flags_become_the_faults_python_would_set() -> None:
    faults = Faults()

    apply_fault_flags(
        faults,
        {
            "--http-error": ["429,method=POST,path=/batches,times=2,retry-after=1.5,code=slow"],
            "--fail-batches": ["1,code=server_error,message=Down, sorry."],
        },
    )

    first = faults.take_http_error("POST", "/v1/batches")
    assert first is not None
    assert (first.status, first.code, first.retry_after) == (429, "slow", 1.5)
    assert faults.take_http_error("GET", "/v1/batches") is None
    assert faults.take_http_error("POST", "/v1/batches") == first
    assert faults.take_http_error("POST", "/v1/batches") is None
    batch_fault = faults.take_batch_fault()
    assert batch_fault is not None
    assert (batch_fault.code, batch_fault.message) == ("server_error", "Down, sorry.")


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--http-error", "teapot"], "--http-error"),
        (["--http-error", "200"], "--http-error"),
        (["--fail-request-share", "1.5"], "--fail-request-share"),
        (["--expire-batches", "1,completed=0.5"], "--expire-batches"),
        (["--malform-line", "a,kind=garbled"], "--malform-line"),
        (["--token-limit", "gpt-4.1"], "--token-limit"),
        (["--responder", "json"], "--responder"),
        (["--responder", "json:no_such_function"], "--responder"),
    ],
)
def test_a_bad_flag_stops_the_command_naming_it(
    arguments: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--port", "0", *arguments])

    assert code == 2
    assert named in capsys.readouterr().err


def test_the_responder_flag_names_an_importable_function() -> None:
    assert load_responder("batchor.testing:default_responder") is default_responder
