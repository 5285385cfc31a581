"""The ``batchor_server`` pytest fixture, registered by the package's pytest11 entry point."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from local_server_kit import BatchKit, make_client

from batchor.testing import BatchPace, LocalBatchServer


def test_the_fixture_yields_a_running_server_with_state_in_tmp_path(
    batchor_server: LocalBatchServer, tmp_path: Path
) -> None:
    kit = BatchKit(make_client(batchor_server))

    batch = kit.retrieve(kit.submit([BatchKit.responses_request("a")]))

    assert batchor_server.running
    assert batch.status == "completed"
    assert batchor_server.data_dir.is_relative_to(tmp_path)


@pytest.mark.batchor_server(api_key="sk-marker", pace=BatchPace(validating=3600))
def test_the_marker_passes_options_to_the_server(batchor_server: LocalBatchServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        make_client(batchor_server, api_key="other").batches.list()
    kit = BatchKit(make_client(batchor_server, api_key="sk-marker"))

    batch = kit.retrieve(kit.submit([BatchKit.responses_request("a")]))

    assert batch.status == "validating"
