"""What happens around one job's runs: resubmitting, changed data, superseded runs,
failures and the failure-rate check, runs still in flight, and results runs already
under way. (The straight path is in ``test_dagster_pipeline.py``.)"""

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    asset,
    materialize,
)
from dagster_kit import tick, tick_until_requested, ticket_table, triage_job

from batchor.testing import LocalBatchServer
from batchor_dagster import (
    FAILURE_RATE_CHECK,
    RUN_ID_METADATA_KEY,
    BatchorAssets,
    BatchorResource,
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


def test_a_results_run_already_in_progress_defers_the_request(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets)
    run_id = submit(job, instance, resources)[RUN_ID_METADATA_KEY]
    defs = definitions(job, resources)
    materialize_all = DagsterRun(
        job_name="__ASSET_JOB",
        status=DagsterRunStatus.STARTED,
        asset_selection=frozenset({job.results_key}),
    )
    instance.add_run(materialize_all)

    deferred, cursor, skip = tick(
        job.sensor, instance=instance, resources=resources, definitions=defs, cursor=None
    )
    instance.report_run_failed(materialize_all)
    (request,), _cursor = tick_until_requested(
        job.sensor, instance=instance, resources=resources, definitions=defs, cursor=cursor
    )

    assert deferred == []
    assert skip is not None and "results being materialized" in skip
    assert request.run_key == run_id


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
    checks = {check.check_name: check for check in result.get_asset_check_evaluations()}
    check = checks[FAILURE_RATE_CHECK]
    assert not check.passed
    assert check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["failure_rate"].value == pytest.approx(2 / 12)
    rows = {row["item_id"]: row for row in pq.read_table(event.metadata["path"].value).to_pylist()}
    assert rows["t000"]["status"] == "failed"
    assert rows["t000"]["error_code"] == "invalid_prompt"
    assert rows["t000"]["topic"] is None
    assert rows["t002"]["status"] == "completed"


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


def test_the_submit_metadata_counts_the_tokens_the_core_reserves(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets)

    metadata = submit(job, instance, resources)

    stored = resources["batchor"].get_run(metadata[RUN_ID_METADATA_KEY]).summary()
    assert metadata["estimated_input_tokens"] == stored.estimated_input_tokens
    assert metadata["items"] == stored.total_items == 12


def test_moving_the_api_behind_another_address_resumes_the_same_run(
    instance: DagsterInstance, resources: dict[str, Any], server: LocalBatchServer
) -> None:
    job = triage_job(tickets)
    first = submit(job, instance, resources)
    elsewhere = server.base_url.replace("127.0.0.1", "localhost")
    moved = {
        **resources,
        "batchor": BatchorResource(
            storage=resources["batchor"].storage,
            api_key=resources["batchor"].api_key,
            base_url=elsewhere,
        ),
    }

    second = submit(job, instance, moved)

    assert second[RUN_ID_METADATA_KEY] == first[RUN_ID_METADATA_KEY]
    assert second["resumed"] is True
    assert len(server.batches) == 1
