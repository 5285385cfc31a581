"""Partitions, single-run backfills and pools: one batchor run per partition, and a
backfill of many partitions folded into one Dagster run whose results asset
materializes every partition (as the UI's backfill launches it: a partition range)."""

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    BackfillPolicy,
    DagsterInstance,
    RetryPolicy,
    StaticPartitionsDefinition,
    asset,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster_kit import ticket_rows, triage_job

from batchor import ConfigurationError
from batchor import RetryPolicy as ItemRetryPolicy
from batchor.testing import LocalBatchServer
from batchor_dagster import COVERAGE_CHECK, RUN_IDS_METADATA_KEY, BatchorAssets

REGIONS = ["emea", "amer", "apac"]
regions = StaticPartitionsDefinition(REGIONS)
WHOLE_RANGE = {ASSET_PARTITION_RANGE_START_TAG: "emea", ASSET_PARTITION_RANGE_END_TAG: "apac"}


@asset(
    partitions_def=regions,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="batchor_parquet_io_manager",
)
def regional_tickets(context: AssetExecutionContext) -> dict[str, pa.Table]:
    """Every partition of the run at once, as a single-run asset returns them."""
    return {
        region: pa.Table.from_pylist(ticket_rows(4, prefix=f"{region}-t"))
        for region in context.partition_keys
    }


def regional_job(**options: Any) -> BatchorAssets:
    return triage_job(
        regional_tickets,
        name="regional",
        backfill_policy=BackfillPolicy.single_run(),
        results_wait_seconds=30,
        **options,
    )


def test_a_single_run_backfill_starts_one_run_per_partition_and_writes_every_partition(
    instance: DagsterInstance,
    resources: dict[str, Any],
    server: LocalBatchServer,
    parquet_dir: Path,
) -> None:
    job = regional_job()

    result = materialize(
        [regional_tickets, *job.assets], instance=instance, resources=resources, tags=WHOLE_RANGE
    )

    assert result.success
    assert len(instance.get_runs()) == 1
    submitted = result.asset_materializations_for_node(job.submit_asset.op.name)
    assert sorted(str(event.partition) for event in submitted) == sorted(REGIONS)
    run_ids = submitted[0].metadata[RUN_IDS_METADATA_KEY].value
    assert sorted(run_ids) == sorted(REGIONS)
    assert len(set(run_ids.values())) == 3
    assert all(run_ids[region].startswith(f"regional.{region}.") for region in REGIONS)
    assert len(server.batches) == 3
    status = instance.get_status_by_partition(job.results_key, REGIONS, regions)
    assert {str(value) for value in status.values()} == {"AssetPartitionStatus.MATERIALIZED"}
    for region in REGIONS:
        table = pq.read_table(parquet_dir / "regional_results" / f"{region}.parquet")
        assert table.column("item_id").to_pylist() == [f"{region}-t{n:03d}" for n in range(4)]
        assert {row["partition_id"] for row in table.column("lineage").to_pylist()} == {region}
    (coverage,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == COVERAGE_CHECK
    ]
    assert coverage.passed and coverage.metadata["upstream_rows"].value == 12


def test_one_partition_later_resumes_the_run_the_backfill_started(
    instance: DagsterInstance, resources: dict[str, Any], server: LocalBatchServer
) -> None:
    job = regional_job()
    backfill = materialize(
        [regional_tickets, *job.assets], instance=instance, resources=resources, tags=WHOLE_RANGE
    )
    submitted = backfill.asset_materializations_for_node(job.submit_asset.op.name)[0]

    again = materialize(
        [regional_tickets, *job.assets],
        instance=instance,
        resources=resources,
        partition_key="amer",
        selection=[regional_tickets.key, job.submit_key],
    )

    (resubmitted,) = again.asset_materializations_for_node(job.submit_asset.op.name)
    assert resubmitted.metadata["resumed"].value is True
    amer = submitted.metadata[RUN_IDS_METADATA_KEY].value["amer"]
    assert resubmitted.metadata["batchor_run_id"].value == amer
    assert len(server.batches) == 3


def test_the_factory_passes_asset_arguments_through(instance: DagsterInstance) -> None:
    job = regional_job(
        automation_condition=AutomationCondition.eager(),
        owners=["team:support"],
        tags={"tier": "gold"},
        code_version="7",
        pool="batchor",
        retry_policy=RetryPolicy(max_retries=2),
    )

    submit = job.submit_asset.specs_by_key[job.submit_key]
    results = job.results_asset.specs_by_key[job.results_key]
    assert submit.automation_condition is not None and results.automation_condition is None
    assert submit.owners == results.owners == ["team:support"]
    assert submit.tags["tier"] == results.tags["tier"] == "gold"
    assert submit.code_version == results.code_version == "7"
    assert submit.partitions_def == results.partitions_def == regions
    assert job.submit_asset.backfill_policy == BackfillPolicy.single_run()
    assert job.results_asset.backfill_policy == BackfillPolicy.single_run()
    assert job.submit_asset.op.pool == "batchor" and job.results_asset.op.pool is None
    assert job.submit_asset.op.retry_policy == RetryPolicy(max_retries=2)
    assert [dep.asset_key for dep in submit.deps] == [regional_tickets.key]


def test_batchors_item_retry_policy_is_not_dagsters_retry_policy() -> None:
    with pytest.raises(ConfigurationError, match="item_retry_policy"):
        regional_job(retry_policy=ItemRetryPolicy(max_attempts=2))


def test_submissions_run_in_their_pool_and_free_its_slot(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    instance.event_log_storage.set_concurrency_slots("batchor", 1)
    job = regional_job(pool="batchor")

    for region in REGIONS[:2]:
        result = materialize(
            [regional_tickets, *job.assets],
            instance=instance,
            resources=resources,
            partition_key=region,
            selection=[regional_tickets.key, job.submit_key],
        )
        assert result.success

    pool = instance.event_log_storage.get_concurrency_info("batchor")
    assert pool.slot_count == 1 and pool.active_slot_count == 0
