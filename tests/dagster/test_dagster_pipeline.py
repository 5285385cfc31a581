"""The straight path, with Dagster's own test utilities: ``materialize`` the submit
asset on an ``instance_for_test()``, tick the sensor with ``build_sensor_context``
until it requests the results, materialize what it requested, read the Parquet file
back, and feed it to a downstream asset. The pipeline runs once for the module; each
test checks one thing a user would see."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetCheckEvaluation,
    DagsterInstance,
    Definitions,
    RunRequest,
    asset,
    instance_for_test,
    materialize,
)
from dagster_kit import (
    TEST_API_KEY,
    TicketTriage,
    tick,
    tick_until_requested,
    ticket_table,
    triage_job,
)
from tests.files_kit import readable_bytes

from batchor.testing import LocalBatchServer
from batchor_dagster import (
    COVERAGE_CHECK,
    FAILURE_RATE_CHECK,
    RUN_ID_METADATA_KEY,
    RUN_ID_TAG,
    BatchorAssets,
    BatchorParquetIOManager,
    BatchorResource,
)

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ROWS = 12


@asset(io_manager_key="batchor_parquet_io_manager")
def tickets() -> pa.Table:
    return ticket_table(ROWS)


@dataclass
class Pipeline:
    job: BatchorAssets
    instance: DagsterInstance
    resources: dict[str, Any]
    server: LocalBatchServer
    root: Path
    submit_metadata: dict[str, Any]
    request: RunRequest
    cursor: str | None
    definitions: Definitions
    results_metadata: dict[str, Any]
    checks: dict[str, AssetCheckEvaluation]
    downstream_input_type: type
    downstream_output: pa.Table


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("pipeline")
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
        job = triage_job(tickets)
        seen: dict[str, Any] = {}

        @asset(io_manager_key="batchor_parquet_io_manager")
        def topic_counts(triage_results: pa.Table) -> pa.Table:
            seen["type"] = type(triage_results)
            return triage_results.group_by("topic").aggregate([("item_id", "count")])

        everything = [tickets, *job.assets, topic_counts]
        submitted = materialize(
            everything,
            instance=instance,
            resources=resources,
            selection=[tickets.key, job.submit_key],
        )
        (submit_event,) = submitted.asset_materializations_for_node(job.submit_asset.op.name)
        definitions = Definitions(assets=everything, sensors=[job.sensor], resources=resources)
        (request,), cursor = tick_until_requested(
            job.sensor, instance=instance, resources=resources, definitions=definitions
        )
        results = materialize(
            everything,
            instance=instance,
            resources=resources,
            selection=request.asset_selection,
            run_config=request.run_config,
            tags=request.tags,
        )
        (results_event,) = results.asset_materializations_for_node(job.results_asset.op.name)
        checks = {check.check_name: check for check in results.get_asset_check_evaluations()}
        downstream = materialize(
            everything, instance=instance, resources=resources, selection=[topic_counts.key]
        )
        yield Pipeline(
            job=job,
            instance=instance,
            resources=resources,
            server=server,
            root=root,
            submit_metadata={key: value.value for key, value in submit_event.metadata.items()},
            request=request,
            cursor=cursor,
            definitions=definitions,
            results_metadata={key: value.value for key, value in results_event.metadata.items()},
            checks=checks,
            downstream_input_type=seen["type"],
            downstream_output=downstream.output_for_node("topic_counts"),
        )


def test_the_submit_asset_starts_a_run_and_records_it(pipeline: Pipeline) -> None:
    metadata = pipeline.submit_metadata

    run_id = metadata[RUN_ID_METADATA_KEY]
    assert RUN_ID.match(run_id) and run_id.startswith("triage.")
    assert metadata["items"] == ROWS
    assert metadata["resumed"] is False
    assert metadata["estimated_input_tokens"] > ROWS * 10
    assert metadata["estimated_cost_usd"] > 0
    assert metadata["batches_submitted"] == 1
    assert len(pipeline.server.batches) == 1
    assert pipeline.resources["batchor"].get_run(run_id).summary().total_items == ROWS


def test_the_sensor_requests_the_results_with_the_run_id_as_run_key(pipeline: Pipeline) -> None:
    request = pipeline.request
    run_id = pipeline.submit_metadata[RUN_ID_METADATA_KEY]

    assert request.run_key == run_id
    assert request.asset_selection == [pipeline.job.results_key]
    assert request.tags[RUN_ID_TAG] == run_id
    assert request.run_config == {"ops": {"triage_results": {"config": {"batchor_run_id": run_id}}}}


def test_the_sensor_does_not_request_the_same_results_twice(pipeline: Pipeline) -> None:
    requests, _cursor, skip = tick(
        pipeline.job.sensor,
        instance=pipeline.instance,
        resources=pipeline.resources,
        definitions=pipeline.definitions,
        cursor=pipeline.cursor,
    )

    assert requests == []
    assert skip == "No batchor runs in flight."


def test_the_results_parquet_has_one_checked_row_per_item(pipeline: Pipeline) -> None:
    path = Path(pipeline.results_metadata["path"])
    assert path == pipeline.root / "parquet" / "triage_results.parquet"
    table = pq.read_table(path)

    assert table.column_names == [
        "item_id",
        "status",
        "topic",
        "urgency",
        "summary",
        "output_text",
        "output_error",
        "error_code",
        "error_message",
        "attempts",
        "resubmissions",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "sequence",
        "lineage",
        "metadata",
    ]
    rows = {row["item_id"]: row for row in table.to_pylist()}
    assert sorted(rows) == [f"t{number:03d}" for number in range(ROWS)]
    for number in range(ROWS):
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
        assert row["metadata"] is None
    assert sorted(row["sequence"] for row in rows.values()) == list(range(1, ROWS + 1))


def test_the_results_metadata_counts_tokens_cost_and_previews(pipeline: Pipeline) -> None:
    metadata = pipeline.results_metadata
    table = pq.read_table(metadata["path"])

    assert metadata[RUN_ID_METADATA_KEY] == pipeline.submit_metadata[RUN_ID_METADATA_KEY]
    assert metadata["status"] == "completed"
    assert (metadata["rows"], metadata["completed"], metadata["failed"]) == (ROWS, ROWS, 0)
    assert metadata["failure_rate"] == 0.0
    assert metadata["input_tokens"] == pc.sum(table["input_tokens"]).as_py()
    assert metadata["output_tokens"] == pc.sum(table["output_tokens"]).as_py()
    assert metadata["estimated_cost_usd"] > 0
    assert metadata["dagster/row_count"] == ROWS
    assert [column.name for column in metadata["dagster/column_schema"].columns][:3] == [
        "item_id",
        "status",
        "topic",
    ]
    preview = metadata["preview"]
    assert len(preview.records) == 10
    assert [column.name for column in preview.schema.columns][:5] == [
        "item_id",
        "status",
        "topic",
        "urgency",
        "summary",
    ]
    assert preview.records[0].data["item_id"] == "t000"


def test_the_results_metadata_has_dagster_openai_usage_keys(pipeline: Pipeline) -> None:
    metadata = pipeline.results_metadata

    assert metadata["openai.gpt-4.1-mini.calls"] == ROWS
    assert metadata["openai.gpt-4.1-mini.prompt_tokens"] == metadata["input_tokens"]
    assert metadata["openai.gpt-4.1-mini.completion_tokens"] == metadata["output_tokens"]
    assert metadata["openai.gpt-4.1-mini.total_tokens"] == (
        metadata["input_tokens"] + metadata["output_tokens"]
    )


def test_the_failure_rate_check_passes_when_nothing_failed(pipeline: Pipeline) -> None:
    check = pipeline.checks[FAILURE_RATE_CHECK]

    assert check.passed
    assert check.metadata["failure_rate"].value == 0.0


def test_the_coverage_check_finds_one_row_per_upstream_row(pipeline: Pipeline) -> None:
    check = pipeline.checks[COVERAGE_CHECK]

    assert check.passed
    assert check.metadata["upstream_rows"].value == ROWS
    assert check.metadata["result_rows"].value == ROWS
    assert check.metadata["missing_items"].value == 0


def test_a_downstream_asset_takes_the_results_as_a_pyarrow_table(pipeline: Pipeline) -> None:
    assert pipeline.downstream_input_type is pa.Table
    assert sum(pipeline.downstream_output.column("item_id_count").to_pylist()) == ROWS


def test_the_api_key_appears_in_no_event_log_run_config_or_file(pipeline: Pipeline) -> None:
    instance = pipeline.instance
    runs = instance.get_runs()
    assert len(runs) == 3
    for run in runs:
        assert TEST_API_KEY not in repr(run.run_config) and TEST_API_KEY not in repr(run.tags)
        for entry in instance.all_logs(run.run_id):
            assert TEST_API_KEY not in repr(entry)
    for root in (Path(instance.root_directory), pipeline.root):
        for path in root.rglob("*"):
            if path.is_file():
                assert TEST_API_KEY.encode() not in readable_bytes(path), path
