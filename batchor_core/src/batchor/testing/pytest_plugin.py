"""pytest plugin (auto-registered): the ``batchor_server`` fixture.

A test gets a started :class:`~batchor.testing.LocalBatchServer` with its state in
the test's ``tmp_path``. Options go in a marker::

    @pytest.mark.batchor_server(pace=BatchPace(in_progress=5), token_limits={"gpt-4.1": 1000})
    def test_something(batchor_server): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchor.testing.server import LocalBatchServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "batchor_server(**options): LocalBatchServer keyword arguments for the "
        "batchor_server fixture",
    )


@pytest.fixture
def batchor_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalBatchServer]:
    """A running local OpenAI Batch server for one test (``server.base_url`` for the client)."""
    marker = request.node.get_closest_marker("batchor_server")
    options = dict(marker.kwargs) if marker is not None else {}
    options.setdefault("data_dir", tmp_path / "batchor-server")
    with LocalBatchServer(**options) as server:
        yield server
