"""The asset factory end to end with Dagster's own test utilities: materialize the
submit asset, tick the sensor until it requests the results, materialize them and
read the Parquet file back."""

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster_kit import TicketTriage, tick, tick_until_requested, ticket_table, triage_job

from batchor.testing import LocalBatchServer
from batchor_dagster import (
    FAILURE_RATE_CHECK,
    RUN_ID_METADATA_KEY,
    RUN_ID_TAG,
    BatchorAssets,
    BatchorResource,
)
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    Definitions,
    RunRequest,
    asset,
    materialize,
)

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@asset(io_manager_key="batchor_parquet_io_manager")
def tickets() -> pa.Table:
    return ticket_table(12)


def submit(
    job: BatchorAssets, instance: DagsterInstance, resources: dict[str, Any], upstream: Any = None
) -> dict[str, Any]:
    """Materialize the upstream and the submit asset; the submit asset's metadata."""
    upstream = upstream or tickets
    result = materialize(
        [upstream, *job.assets],
        instance=instance,
        resources=resources,
        selection=[upstream.key, job.submit_key],
    )
    assert result.success
    (event,) = result.asset_materializations_for_node(job.submit_asset.op.name)
    return {key: value.value for key, value in event.metadata.items()}


def materialize_results(
    job: BatchorAssets, request: RunRequest, instance: DagsterInstance, resources: dict[str, Any]
) -> Any:
    """Run what the sensor requested, as the daemon would launch it."""
    return materialize(
        [tickets, *job.assets],
        instance=instance,
        resources=resources,
        selection=request.asset_selection,
        run_config=request.run_config,
        partition_key=request.partition_key,
        tags=request.tags,
    )


def definitions(job: BatchorAssets, resources: dict[str, Any]) -> Definitions:
    return Definitions(assets=[tickets, *job.assets], sensors=[job.sensor], resources=resources)


def test_submit_asset_starts_a_run_and_records_it(
    instance: DagsterInstance, resources: dict[str, Any], server: LocalBatchServer
) -> None:
    job = triage_job(tickets)

    metadata = submit(job, instance, resources)

    run_id = metadata[RUN_ID_METADATA_KEY]
    assert RUN_ID.match(run_id) and run_id.startswith("triage.")
    assert metadata["items"] == 12
    assert metadata["resumed"] is False
    assert metadata["estimated_input_tokens"] > 12 * 10
    assert metadata["estimated_input_cost_usd"] > 0
    assert metadata["batches_submitted"] == 1
    assert len(server.batches) == 1
    run = resources["batchor"].get_run(run_id)
    assert run.summary().total_items == 12


def test_sensor_requests_the_results_once_with_the_run_id_as_run_key(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets)
    run_id = submit(job, instance, resources)[RUN_ID_METADATA_KEY]
    defs = definitions(job, resources)

    (request,), cursor = tick_until_requested(
        job.sensor, instance=instance, resources=resources, definitions=defs
    )

    assert request.run_key == run_id
    assert request.asset_selection == [job.results_key]
    assert request.tags[RUN_ID_TAG] == run_id
    again, _cursor, skip = tick(
        job.sensor, instance=instance, resources=resources, definitions=defs, cursor=cursor
    )
    assert again == []
    assert skip == "No batchor runs in flight."


def test_results_asset_writes_each_item_to_parquet(
    instance: DagsterInstance, resources: dict[str, Any], parquet_dir: Path
) -> None:
    job = triage_job(tickets)
    run_id = submit(job, instance, resources)[RUN_ID_METADATA_KEY]
    (request,), _ = tick_until_requested(
        job.sensor, instance=instance, resources=resources, definitions=definitions(job, resources)
    )

    result = materialize_results(job, request, instance, resources)

    assert result.success
    (event,) = result.asset_materializations_for_node(job.results_asset.op.name)
    path = Path(event.metadata["path"].value)
    assert path == parquet_dir / "triage_results.parquet"
    table = pq.read_table(path)
    assert table.column_names == [
        "item_id",
        "status",
        "topic",
        "urgency",
        "summary",
        "error_code",
        "error_message",
        "attempts",
        "input_tokens",
        "output_tokens",
        "sequence",
        "lineage",
        "metadata",
    ]
    rows = {row["item_id"]: row for row in table.to_pylist()}
    assert sorted(rows) == [f"t{number:03d}" for number in range(12)]
    for number in range(12):
        row = rows[f"t{number:03d}"]
        assert row["status"] == "completed"
        TicketTriage(topic=row["topic"], urgency=row["urgency"], summary=row["summary"])
        assert row["error_code"] is None and row["error_message"] is None
        assert row["attempts"] == 1
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0
        assert row["lineage"] == {
            "source_ref": "tickets",
            "partition_id": None,
            "source_item_index": number,
            "source_primary_key": f"t{number:03d}",
            "source_namespace": None,
        }
    metadata = {key: value.value for key, value in event.metadata.items()}
    assert metadata[RUN_ID_METADATA_KEY] == run_id
    assert metadata["status"] == "completed"
    assert (metadata["rows"], metadata["completed"], metadata["failed"]) == (12, 12, 0)
    assert metadata["input_tokens"] == sum(row["input_tokens"] for row in rows.values())
    assert metadata["estimated_cost_usd"] > 0
    assert "| item_id | status | topic |" in metadata["preview"]
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == FAILURE_RATE_CHECK and check.passed


def test_a_downstream_asset_takes_the_results_as_a_pyarrow_table(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets)
    submit(job, instance, resources)
    (request,), _ = tick_until_requested(
        job.sensor, instance=instance, resources=resources, definitions=definitions(job, resources)
    )
    assert materialize_results(job, request, instance, resources).success
    seen: dict[str, Any] = {}

    @asset(io_manager_key="batchor_parquet_io_manager")
    def topic_counts(triage_results: pa.Table) -> pa.Table:
        seen["type"] = type(triage_results)
        return triage_results.group_by("topic").aggregate([("item_id", "count")])

    result = materialize(
        [tickets, *job.assets, topic_counts],
        instance=instance,
        resources=resources,
        selection=[topic_counts.key],
    )

    assert result.success
    assert seen["type"] is pa.Table
    counts = result.output_for_node("topic_counts")
    assert sum(counts.column("item_id_count").to_pylist()) == 12


def test_resubmitting_the_same_data_resumes_the_run_without_a_new_batch(
    instance: DagsterInstance, resources: dict[str, Any], server: LocalBatchServer
) -> None:
    job = triage_job(tickets)
    first = submit(job, instance, resources)
    batches_before = dict(server.batches)

    second = submit(job, instance, resources)

    assert second[RUN_ID_METADATA_KEY] == first[RUN_ID_METADATA_KEY]
    assert second["resumed"] is True
    assert second["items"] == 12
    assert second["estimated_input_tokens"] == first["estimated_input_tokens"]
    assert server.batches.keys() == batches_before.keys()
    assert len(server.batches) == 1


def test_resubmitting_after_the_results_does_not_request_them_again(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets)
    submit(job, instance, resources)
    defs = definitions(job, resources)
    (request,), cursor = tick_until_requested(
        job.sensor, instance=instance, resources=resources, definitions=defs
    )
    assert materialize_results(job, request, instance, resources).success

    submit(job, instance, resources)
    requests, _cursor, skip = tick(
        job.sensor, instance=instance, resources=resources, definitions=defs, cursor=cursor
    )

    assert requests == []
    assert skip is not None and "results already handled" in skip


def test_changed_data_starts_a_new_run(
    instance: DagsterInstance, resources: dict[str, Any], server: LocalBatchServer
) -> None:
    job = triage_job(tickets)
    first = submit(job, instance, resources)

    @asset(name="tickets", io_manager_key="batchor_parquet_io_manager")
    def changed_tickets() -> pa.Table:
        return ticket_table(13)

    second = submit(job, instance, resources, upstream=changed_tickets)

    assert second[RUN_ID_METADATA_KEY] != first[RUN_ID_METADATA_KEY]
    assert second["resumed"] is False and second["items"] == 13
    assert len(server.batches) == 2


def test_a_superseded_run_is_not_collected(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets)
    submit(job, instance, resources)

    @asset(name="tickets", io_manager_key="batchor_parquet_io_manager")
    def changed_tickets() -> pa.Table:
        return ticket_table(5)

    newest = submit(job, instance, resources, upstream=changed_tickets)[RUN_ID_METADATA_KEY]

    (request,), _ = tick_until_requested(
        job.sensor, instance=instance, resources=resources, definitions=definitions(job, resources)
    )
    assert request.run_key == newest


def test_failure_rate_check_fails_when_too_many_items_fail(
    instance: DagsterInstance, resources: dict[str, Any], server: LocalBatchServer
) -> None:
    server.faults.fail_requests(
        ["t000", "t001"], status_code=400, code="invalid_prompt", message="rejected", times=None
    )
    job = triage_job(tickets, max_failure_rate=0.1)
    submit(job, instance, resources)
    (request,), _ = tick_until_requested(
        job.sensor, instance=instance, resources=resources, definitions=definitions(job, resources)
    )

    result = materialize_results(job, request, instance, resources)

    assert result.success
    (event,) = result.asset_materializations_for_node(job.results_asset.op.name)
    assert event.metadata["failed"].value == 2
    assert event.metadata["status"].value == "completed_with_failures"
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["failure_rate"].value == pytest.approx(2 / 12)
    rows = {row["item_id"]: row for row in pq.read_table(event.metadata["path"].value).to_pylist()}
    assert rows["t000"]["status"] == "failed"
    assert rows["t000"]["error_code"] == "invalid_prompt"
    assert rows["t000"]["topic"] is None
    assert rows["t002"]["status"] == "completed"


def test_the_api_key_appears_in_no_event_log_metadata_or_file(
    tmp_path: Path, instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets)
    submit(job, instance, resources)
    (request,), _ = tick_until_requested(
        job.sensor, instance=instance, resources=resources, definitions=definitions(job, resources)
    )
    assert materialize_results(job, request, instance, resources).success

    key = resources["batchor"].api_key
    for run in instance.get_runs():
        assert key not in repr(run.run_config) and key not in repr(run.tags)
        for entry in instance.all_logs(run.run_id):
            assert key not in repr(entry)
    for root in (Path(instance.root_directory), tmp_path):
        for path in root.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path


def test_results_are_not_materialized_while_the_run_is_in_flight(
    tmp_path: Path, instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    from batchor.testing import BatchPace

    with LocalBatchServer(pace=BatchPace(in_progress=30), data_dir=tmp_path / "slow") as slow:
        slow_resources = {
            **resources,
            "batchor": BatchorResource(
                storage=resources["batchor"].storage,
                api_key=resources["batchor"].api_key,
                base_url=slow.base_url,
            ),
        }
        job = triage_job(tickets)
        submit(job, instance, slow_resources)

        result = materialize(
            [tickets, *job.assets],
            instance=instance,
            resources=slow_resources,
            selection=[job.results_key],
        )

    assert result.success
    assert result.asset_materializations_for_node(job.results_asset.op.name) == []
    assert instance.get_latest_materialization_event(AssetKey("triage_results")) is None
