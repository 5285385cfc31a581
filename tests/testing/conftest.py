"""Shared arrangements for the local-server tests: a server on a manual clock, a real
``openai`` client pointed at it, and the request/result kit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from local_server_kit import BatchKit, make_client
from openai_spec import VALIDATED_PROPERTY

from batchor.testing import LocalBatchServer, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(tmp_path: Path, clock: ManualClock) -> Iterator[LocalBatchServer]:
    with LocalBatchServer(clock=clock, data_dir=tmp_path / "server") as running:
        yield running


@pytest.fixture
def client(server: LocalBatchServer) -> openai.OpenAI:
    return make_client(server)


@pytest.fixture
def kit(client: openai.OpenAI) -> BatchKit:
    return BatchKit(client)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how much the conformance test validated against OpenAI's spec (its report
    carries the tally, whichever worker process ran it)."""
    tally: Counter[str] = Counter()
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", ()):
            if name == VALIDATED_PROPERTY:
                tally.update(value)
    if tally:
        kinds = ", ".join(f"{count} {kind}" for kind, count in tally.most_common())
        terminalreporter.write_sep("-", "OpenAI spec conformance")
        terminalreporter.write_line(f"{sum(tally.values())} validated: {kinds}")
