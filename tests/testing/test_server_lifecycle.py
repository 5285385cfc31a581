"""Expiry on the clock, state kept across restarts, and what a test can inspect."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from local_server_kit import MODEL, BatchKit, make_client

from batchor.testing import BatchPace, LocalBatchServer, ManualClock

DAY = 24 * 3600
FOUR = [BatchKit.responses_request(str(i)) for i in range(4)]


def test_a_batch_still_running_at_expires_at_expires_with_partial_results(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    with LocalBatchServer(
        pace=BatchPace(in_progress=2 * DAY), clock=clock, data_dir=tmp_path / "s"
    ) as server:
        kit = BatchKit(make_client(server))
        batch = kit.submit(FOUR)
        clock.advance(DAY - 1)
        before = kit.retrieve(batch)
        clock.advance(2)
        expired = kit.retrieve(batch)
        outputs, errors = kit.outputs(expired), kit.errors(expired)

    assert before.status == "in_progress"
    assert expired.status == "expired"
    assert expired.expired_at == expired.expires_at == expired.created_at + DAY
    assert sorted(outputs) == ["0", "1"]
    assert sorted(errors) == ["2", "3"]
    assert errors["3"]["error"]["code"] == "batch_expired"
    assert errors["3"]["response"] is None
    assert server.enqueued_tokens(MODEL) == 0


def test_a_batch_never_validated_in_time_expires_with_every_request_in_the_error_file(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    with LocalBatchServer(
        pace=BatchPace(validating=DAY + 1), clock=clock, data_dir=tmp_path / "s"
    ) as server:
        kit = BatchKit(make_client(server))
        batch = kit.submit(FOUR)
        clock.advance(DAY)
        expired = kit.retrieve(batch)

        assert expired.status == "expired"
        assert expired.output_file_id is None
        assert sorted(kit.errors(expired)) == ["0", "1", "2", "3"]


def test_a_new_server_on_the_same_data_dir_sees_old_files_and_batches(tmp_path: Path) -> None:
    clock = ManualClock()
    data_dir = tmp_path / "state"
    pace = BatchPace(in_progress=60)
    with LocalBatchServer(pace=pace, clock=clock, data_dir=data_dir) as first:
        kit = BatchKit(make_client(first))
        done = kit.retrieve(kit.submit(FOUR[:2]))
        running = kit.retrieve(kit.submit(FOUR, metadata={"run": "x"}))

    with LocalBatchServer(pace=pace, clock=clock, data_dir=data_dir) as second:
        kit = BatchKit(make_client(second))
        listed = [b.id for b in kit.client.batches.list()]
        still_running = kit.retrieve(running)
        clock.advance(60)
        finished = kit.retrieve(running)
        old_outputs = kit.outputs(kit.retrieve(done))
        new_outputs = kit.outputs(finished)
        new_batch = kit.retrieve(kit.submit(FOUR))

    assert listed == [running.id, done.id]
    assert still_running.status == "in_progress"
    assert finished.status == "completed"
    assert finished.metadata == {"run": "x"}
    assert sorted(old_outputs) == ["0", "1"]
    assert sorted(new_outputs) == ["0", "1", "2", "3"]
    assert new_batch.status == "in_progress"


def test_a_temporary_data_dir_is_removed_on_stop() -> None:
    server = LocalBatchServer()
    with server:
        BatchKit(make_client(server)).upload(FOUR)
        data_dir = server.data_dir
        assert any(data_dir.iterdir())

    assert not data_dir.exists()
    with pytest.raises(RuntimeError):
        server.start()


def test_a_stopped_server_refuses_connections(tmp_path: Path) -> None:
    with LocalBatchServer(data_dir=tmp_path / "s") as server:
        client = make_client(server)
        client.batches.list()

    with pytest.raises(openai.APIConnectionError):
        client.batches.list()


def test_call_counts_are_keyed_by_templated_path_and_can_be_reset(
    server: LocalBatchServer, kit: BatchKit
) -> None:
    batch = kit.submit(FOUR)
    kit.retrieve(batch)
    kit.retrieve(batch)
    kit.lines(kit.retrieve(batch).output_file_id)

    counts = server.call_counts
    server.reset_counts()

    assert counts == {
        "POST /v1/files": 1,
        "POST /v1/batches": 1,
        "GET /v1/batches/{id}": 3,
        "GET /v1/files/{id}/content": 1,
    }
    assert server.call_counts == {}


def test_batch_records_expose_what_the_server_read(server: LocalBatchServer, kit: BatchKit) -> None:
    batch = kit.submit(FOUR, metadata={"run_id": "r"})

    record = server.batches[batch.id]

    assert record.status == "completed"  # looking advances the batch, like a retrieve
    assert record.custom_ids == ["0", "1", "2", "3"]
    assert record.model == MODEL
    assert record.metadata == {"run_id": "r"}
    assert record.tokens == 4 * 3  # input "Say hello": ceil(9 bytes / 4) = 3 tokens each
    assert record.input_file_id in server.files


def test_unknown_routes_answer_with_an_openai_error_envelope(server: LocalBatchServer) -> None:
    request = urllib.request.Request(
        f"{server.base_url}/models", headers={"Authorization": "Bearer t"}
    )

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)

    assert caught.value.code == 404
    assert json.loads(caught.value.read())["error"]["message"] == "Invalid URL (GET /v1/models)"


def test_settings_are_validated_naming_the_field() -> None:
    with pytest.raises(ValueError, match="max_requests_per_batch"):
        LocalBatchServer(max_requests_per_batch=0)
    with pytest.raises(ValueError, match="in_progress"):
        BatchPace(in_progress=-1)


def test_per_request_pace_makes_bigger_batches_take_longer(tmp_path: Path) -> None:
    clock = ManualClock()
    pace = BatchPace(in_progress=10, per_request=5)
    with LocalBatchServer(pace=pace, clock=clock, data_dir=tmp_path / "s") as server:
        kit = BatchKit(make_client(server))
        small = kit.submit(FOUR[:2])  # 10 + 2 * 5 = 20 s
        large = kit.submit(FOUR)  # 10 + 4 * 5 = 30 s
        kit.retrieve(small)
        kit.retrieve(large)
        clock.advance(20)
        after_20 = kit.retrieve(small).status, kit.retrieve(large).status
        clock.advance(10)
        after_30 = kit.retrieve(large).status

    assert after_20 == ("completed", "in_progress")
    assert after_30 == "completed"


def test_counters_count_batches_by_model_and_the_requests_that_ran(tmp_path: Path) -> None:
    clock = ManualClock()
    with LocalBatchServer(
        pace=BatchPace(in_progress=100), clock=clock, data_dir=tmp_path / "s"
    ) as server:
        client = make_client(server)
        kit = BatchKit(client)
        done = kit.submit(FOUR)
        cut_short = kit.submit(
            [BatchKit.responses_request(str(i), model="gpt-4o") for i in range(4)]
        )
        kit.retrieve(done)
        clock.advance(50)
        client.batches.cancel(cut_short.id)
        clock.advance(50)
        kit.retrieve(done)
        counters = server.counters
        server.reset_counts()

        assert counters.batches_created == {MODEL: 1, "gpt-4o": 1}
        assert counters.requests_executed == {MODEL: 4, "gpt-4o": 2}
        assert counters.max_enqueued_tokens_seen == {MODEL: 12, "gpt-4o": 12}
        assert server.counters.batches_created == {}
