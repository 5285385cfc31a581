"""Upstream forms (pandas, polars, rows, Parquet/CSV/JSONL paths), partitions, text jobs
and run control, each materialized with Dagster's test utilities."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DagsterInstance,
    Definitions,
    StaticPartitionsDefinition,
    asset,
    instance_for_test,
    materialize,
)
from dagster_kit import (
    TEST_API_KEY,
    tick_until_requested,
    ticket_rows,
    ticket_table,
    triage_job,
)

from batchor import RunControlState, SourceRowError
from batchor.testing import LocalBatchServer
from batchor_dagster import (
    RUN_ID_METADATA_KEY,
    BatchorAssets,
    BatchorParquetIOManager,
    BatchorResource,
    BatchorRunControlConfig,
    batchor_run_control_job,
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


@dataclass
class UpstreamForms:
    """One job per upstream form, all submitted in one run and collected in another."""

    results: dict[str, pa.Table]
    upstream_kinds: dict[str, str]
    paths: dict[str, Path]


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamForms]:
    root = tmp_path_factory.mktemp("forms")
    table = ticket_table(3)
    paths = {suffix: root / f"tickets.{suffix}" for suffix in ("parquet", "csv", "jsonl")}
    pq.write_table(table, paths["parquet"])
    pa_csv.write_csv(table, paths["csv"])
    paths["jsonl"].write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
    values: dict[str, Any] = {
        "pandas": pd.DataFrame(ticket_rows(3)),
        "polars": pl.DataFrame(ticket_rows(3)),
        "rows": ticket_rows(3),
        "text": table,
        **{suffix: str(path) for suffix, path in paths.items()},
    }

    def upstream_for(form: str) -> AssetsDefinition:
        @asset(name=f"{form}_tickets")
        def upstream() -> Any:
            return values[form]

        return upstream

    upstreams = {form: upstream_for(form) for form in values}
    jobs = {
        form: triage_job(upstreams[form], name=form, structured=form != "text") for form in values
    }
    everything = [*upstreams.values(), *(a for job in jobs.values() for a in job.assets)]
    with (
        LocalBatchServer(data_dir=root / "server") as server,
        instance_for_test() as instance,
    ):
        resources = {
            "batchor": BatchorResource(
                storage=str(root / "runs.sqlite3"), api_key=TEST_API_KEY, base_url=server.base_url
            ),
            "batchor_parquet_io_manager": BatchorParquetIOManager(base_dir=str(root / "parquet")),
        }
        submitted = materialize(
            everything,
            instance=instance,
            resources=resources,
            selection=[
                *(upstream.key for upstream in upstreams.values()),
                *(job.submit_key for job in jobs.values()),
            ],
        )
        assert submitted.success
        defs = Definitions(
            assets=everything, sensors=[job.sensor for job in jobs.values()], resources=resources
        )
        requests = [
            tick_until_requested(
                job.sensor, instance=instance, resources=resources, definitions=defs
            )[0][0]
            for job in jobs.values()
        ]
        collected = materialize(
            everything,
            instance=instance,
            resources=resources,
            selection=[key for request in requests for key in request.asset_selection or []],
            run_config={
                "ops": {
                    op: config
                    for request in requests
                    for op, config in request.run_config["ops"].items()
                }
            },
        )
        assert collected.success
        kinds = {}
        for form, job in jobs.items():
            (event,) = submitted.asset_materializations_for_node(job.submit_asset.op.name)
            kinds[form] = event.metadata["upstream_kind"].value
        yield UpstreamForms(
            results={
                form: pq.read_table(root / "parquet" / f"{form}_results.parquet") for form in jobs
            },
            upstream_kinds=kinds,
            paths=paths,
        )


@pytest.mark.parametrize("form", ["pandas", "polars", "rows"])
def test_dataframe_and_row_list_upstreams_become_one_item_per_row(
    form: str, forms: UpstreamForms
) -> None:
    table = forms.results[form]

    assert table.column("item_id").to_pylist() == ["t000", "t001", "t002"]
    assert set(table.column("status").to_pylist()) == {"completed"}
    assert forms.upstream_kinds[form] == ("rows" if form == "rows" else "table")


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_file_path_upstreams_are_read_with_the_file_sources(
    suffix: str, forms: UpstreamForms
) -> None:
    table = forms.results[suffix]

    assert table.column("item_id").to_pylist() == ["t000", "t001", "t002"]
    assert set(table.column("status").to_pylist()) == {"completed"}
    lineage = table.column("lineage")[1].as_py()
    assert lineage["source_ref"] == str(forms.paths[suffix])
    assert lineage["source_item_index"] == 1
    assert forms.upstream_kinds[suffix] == suffix


def test_text_jobs_write_an_output_text_column(forms: UpstreamForms) -> None:
    table = forms.results["text"]

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
