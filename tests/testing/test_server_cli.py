"""``python -m batchor.testing`` (and ``batchor emulator``): flags, faults, the docs' recipe."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from local_server_kit import BatchKit
from tests.docs_examples import DOCS

from batchor.testing import Faults, default_responder
from batchor.testing.cli import apply_fault_flags, load_responder, main

DOC = DOCS / "local-server.md"


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


def _bad_day_command(data_dir: Path) -> list[str]:
    """The emulator command of the docs' "Rehearse a bad day" recipe, on a free port, unpaced."""
    block = re.search(r"<!-- bad-day -->\n```console\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/local-server.md has no bad-day recipe"
    command = block.group(1).split("\n$ ")[0].removeprefix("$ ").replace("\\\n", " ")
    arguments = shlex.split(command)
    assert arguments[:2] == ["batchor", "emulator"]
    arguments[arguments.index("--port") + 1] = "0"
    arguments[arguments.index("--data-dir") + 1] = str(data_dir)
    for index, argument in enumerate(arguments):
        if argument.startswith("--pace-"):
            arguments[index + 1] = "0"  # the same day, without the waiting
    return [str(Path(sys.executable).with_name("batchor")), *arguments[1:]]


@pytest.mark.slow
def test_the_bad_day_recipe_serves_the_faults_it_promises(tmp_path: Path) -> None:
    process = subprocess.Popen(
        _bad_day_command(tmp_path / "bad-day"), stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", process.stdout.readline())
        assert found
        client = openai.OpenAI(api_key="t", base_url=found.group(1), max_retries=0)
        kit = BatchKit(client)
        requests = [BatchKit.responses_request(str(i), model="gpt-4.1-mini") for i in range(10)]
        unavailable = []
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as caught:
                kit.upload(requests)
            unavailable.append(caught.value.status_code)
        uploaded = kit.upload(requests)
        throttled = []
        create = {"input_file_id": uploaded.id, "endpoint": "/v1/responses"}
        for _ in range(3):
            with pytest.raises(openai.RateLimitError) as limited:
                client.batches.create(**create, completion_window="24h")  # type: ignore[call-overload]
            throttled.append(limited.value.response.headers["retry-after"])
        batches = [
            client.batches.create(**create, completion_window="24h")  # type: ignore[call-overload]
            for _ in range(3)
        ]
        expired, failed, completed = (client.batches.retrieve(b.id) for b in batches)
        expired_outputs = kit.outputs(expired)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)

    assert unavailable == [503, 503]
    assert throttled == ["2", "2", "2"]
    assert expired.status == "expired" and expired.error_file_id is None
    assert len(expired_outputs) == 6
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data is not None
    assert failed.errors.data[0].message == "The batch could not be processed."
    assert completed.status == "completed"
