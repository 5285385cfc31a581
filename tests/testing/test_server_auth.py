"""Bearer authentication, answered like OpenAI's 401s."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from local_server_kit import make_client

from batchor.testing import LocalBatchServer


def test_a_request_without_a_bearer_key_is_401(server: LocalBatchServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server.base_url}/batches", timeout=10)

    error = json.loads(caught.value.read())["error"]
    assert caught.value.code == 401
    assert error["type"] == "invalid_request_error"
    assert "You didn't provide an API key" in error["message"]


def test_any_key_is_accepted_when_no_api_key_is_configured(server: LocalBatchServer) -> None:
    assert make_client(server, api_key="anything at all").batches.list().data == []


def test_a_wrong_key_is_401_invalid_api_key_and_the_right_one_works(tmp_path: Path) -> None:
    with LocalBatchServer(api_key="sk-local-secret", data_dir=tmp_path / "s") as server:
        with pytest.raises(openai.AuthenticationError) as caught:
            make_client(server, api_key="sk-wrong-key-123").files.list()
        listed = make_client(server, api_key="sk-local-secret").files.list()

    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong-key-123" not in caught.value.message
    assert listed.data == []
