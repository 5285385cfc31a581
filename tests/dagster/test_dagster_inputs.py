"""Upstream forms (pandas, rows, Parquet/CSV/JSONL paths), partitions, text jobs and
run control, each materialized with Dagster's test utilities."""

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from dagster_kit import tick_until_requested, ticket_rows, ticket_table, triage_job

from batchor import RunControlState, SourceRowError
from batchor.testing import LocalBatchServer
from batchor_dagster import (
    RUN_ID_METADATA_KEY,
    BatchorAssets,
    BatchorRunControlConfig,
    batchor_run_control_job,
)
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DagsterInstance,
    Definitions,
    StaticPartitionsDefinition,
    asset,
    materialize,
)

REGIONS = StaticPartitionsDefinition(["emea", "amer"])


def run_pipeline(
    upstream: AssetsDefinition,
    job: BatchorAssets,
    instance: DagsterInstance,
    resources: dict[str, Any],
    *,
    partitions: list[str | None] | None = None,
) -> list[pa.Table]:
    """Submit each partition, tick the sensor until every run is requested, then
    materialize what it requested; the results tables, in request order."""
    partitions = partitions or [None]
    for partition in partitions:
        submitted = materialize(
            [upstream, *job.assets],
            instance=instance,
            resources=resources,
            selection=[upstream.key, job.submit_key],
            partition_key=partition,
        )
        assert submitted.success
    defs = Definitions(assets=[upstream, *job.assets], sensors=[job.sensor], resources=resources)
    requests, _ = tick_until_requested(
        job.sensor,
        instance=instance,
        resources=resources,
        definitions=defs,
        expected=len(partitions),
    )
    tables = []
    for request in requests:
        result = materialize(
            [upstream, *job.assets],
            instance=instance,
            resources=resources,
            selection=request.asset_selection,
            run_config=request.run_config,
            partition_key=request.partition_key,
        )
        assert result.success
        (event,) = result.asset_materializations_for_node(job.results_asset.op.name)
        tables.append(pq.read_table(event.metadata["path"].value))
    return tables


def test_partitioned_upstream_runs_once_per_partition(
    instance: DagsterInstance, resources: dict[str, Any], parquet_dir: Path
) -> None:
    @asset(partitions_def=REGIONS, io_manager_key="batchor_parquet_io_manager")
    def regional_tickets(context: AssetExecutionContext) -> pa.Table:
        return ticket_table(4, prefix=f"{context.partition_key}-")

    job = triage_job(regional_tickets, name="regional")
    assert job.submit_asset.partitions_def == REGIONS

    tables = run_pipeline(regional_tickets, job, instance, resources, partitions=["emea", "amer"])

    by_partition = {table.column("lineage")[0].as_py()["partition_id"]: table for table in tables}
    assert sorted(by_partition) == ["amer", "emea"]
    for partition, table in by_partition.items():
        assert table.column("item_id").to_pylist() == [f"{partition}-{n:03d}" for n in range(4)]
        assert set(table.column("status").to_pylist()) == {"completed"}
    assert sorted(path.name for path in (parquet_dir / "regional_results").iterdir()) == [
        "amer.parquet",
        "emea.parquet",
    ]
    submit_records = instance.fetch_materializations(job.submit_key, limit=10).records
    ids = {record.partition_key: record.asset_materialization for record in submit_records}
    run_id_by_partition = {
        partition: materialization.metadata[RUN_ID_METADATA_KEY].value  # type: ignore[union-attr]
        for partition, materialization in ids.items()
    }
    assert run_id_by_partition["emea"].startswith("regional.emea.")
    assert run_id_by_partition["amer"].startswith("regional.amer.")

    @asset(io_manager_key="batchor_parquet_io_manager")
    def all_regions(regional_results: pa.Table) -> pa.Table:
        return regional_results

    combined = materialize(
        [regional_tickets, *job.assets, all_regions],
        instance=instance,
        resources=resources,
        selection=[all_regions.key],
    )
    assert combined.output_for_node("all_regions").num_rows == 8


@pytest.mark.parametrize("form", ["pandas", "rows"])
def test_pandas_and_row_list_upstreams(
    form: str, instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    @asset
    def tickets() -> Any:
        rows = ticket_rows(3)
        return pd.DataFrame(rows) if form == "pandas" else rows

    (table,) = run_pipeline(tickets, triage_job(tickets), instance, resources)

    assert table.column("item_id").to_pylist() == ["t000", "t001", "t002"]
    assert set(table.column("status").to_pylist()) == {"completed"}


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_file_path_upstreams_use_the_file_sources(
    suffix: str, tmp_path: Path, instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    path = tmp_path / f"tickets{suffix}"
    table = ticket_table(3)
    if suffix == ".parquet":
        pq.write_table(table, path)
    elif suffix == ".csv":
        pa_csv.write_csv(table, path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))

    @asset
    def ticket_file() -> str:
        return str(path)

    (results,) = run_pipeline(ticket_file, triage_job(ticket_file), instance, resources)

    assert results.column("item_id").to_pylist() == ["t000", "t001", "t002"]
    lineage = results.column("lineage")[1].as_py()
    assert lineage["source_ref"] == str(path)
    assert lineage["source_item_index"] == 1
    upstream_kind = instance.get_latest_materialization_event(
        triage_job(ticket_file).submit_key
    ).asset_materialization.metadata["upstream_kind"]  # type: ignore[union-attr]
    assert upstream_kind.value == suffix.lstrip(".")


def test_text_jobs_write_an_output_text_column(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    @asset
    def tickets() -> pa.Table:
        return ticket_table(2)

    (table,) = run_pipeline(tickets, triage_job(tickets, structured=False), instance, resources)

    assert "output_text" in table.column_names and "topic" not in table.column_names
    assert all(text for text in table.column("output_text").to_pylist())


def test_a_row_without_an_item_id_fails_the_submit_asset_and_names_the_row(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    @asset
    def tickets() -> list[dict[str, Any]]:
        return [{"ticket_id": "a", "text": "one"}, {"ticket_id": None, "text": "two"}]

    job = triage_job(tickets)
    result = materialize(
        [tickets, *job.assets],
        instance=instance,
        resources=resources,
        selection=[tickets.key, job.submit_key],
        raise_on_error=False,
    )

    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    error = failure.step_failure_data.error
    cause = error.cause if error is not None else None
    assert cause is not None and cause.cls_name == SourceRowError.__name__
    assert "tickets, row 2, field 'ticket_id': the item id column 'ticket_id' is empty" in (
        cause.message
    )


def test_the_run_control_job_pauses_resumes_and_cancels_a_run(
    tmp_path: Path, instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    from batchor.testing import BatchPace

    @asset
    def tickets() -> pa.Table:
        return ticket_table(3)

    with LocalBatchServer(pace=BatchPace(in_progress=60), data_dir=tmp_path / "slow") as slow:
        from batchor_dagster import BatchorResource

        slow_resources = {
            **resources,
            "batchor": BatchorResource(
                storage=resources["batchor"].storage,
                api_key=resources["batchor"].api_key,
                base_url=slow.base_url,
            ),
        }
        job = triage_job(tickets)
        submitted = materialize(
            [tickets, *job.assets],
            instance=instance,
            resources=slow_resources,
            selection=[tickets.key, job.submit_key],
        )
        (event,) = submitted.asset_materializations_for_node(job.submit_asset.op.name)
        run_id = event.metadata[RUN_ID_METADATA_KEY].value
        run = slow_resources["batchor"].get_run(run_id)

        def control(action: str) -> dict[str, Any]:
            config = BatchorRunControlConfig(batchor_run_id=run_id, action=action)  # type: ignore[arg-type]
            result = batchor_run_control_job.execute_in_process(
                run_config={"ops": {"control_batchor_run": {"config": config.model_dump()}}},
                instance=instance,
                resources={"batchor": slow_resources["batchor"]},
            )
            assert result.success
            (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
            return {
                key: value.value
                for key, value in output.event_specific_data.metadata.items()  # type: ignore[union-attr]
            }

        assert control("pause")["control_state"] == "paused"
        assert run.summary().control_state is RunControlState.PAUSED
        assert control("resume")["control_state"] == "running"
        cancelled = control("cancel")
        assert cancelled["control_state"] == "cancel_requested"
        assert run.summary().control_state is RunControlState.CANCEL_REQUESTED
