"""The example Dagster code location: support tickets triaged through the OpenAI Batch API.

It runs with no API key against batchor's local OpenAI-compatible server, which
the ``batchor`` resource starts on a loopback port (``BATCHOR_EXAMPLE_PORT``,
default 8765) when nothing answers there. Everything it writes (runs, artifacts,
Parquet results, the server's batches) goes under ``BATCHOR_EXAMPLE_HOME``,
default ``.dagster/`` at the repository root.

Three pipelines, two declared in Python with ``batchor_assets`` and one in YAML
with ``BatchorComponent`` (``defs/ticket_routing/defs.yaml``, loaded with
``load_from_defs_folder``):

- ``support`` group: ``support_tickets`` (a pyarrow Table) -> ``ticket_triage_batch``
  (starts the batchor run) -> ``ticket_triage_results`` (Parquet, written when the
  run is terminal) -> ``triage_summary``;
- ``support_by_region`` group: ``regional_tickets`` (a JSONL file per region
  partition) -> ``regional_triage_batch`` -> ``regional_triage_results``;
- ``support_routing`` group (YAML): ``support_tickets`` -> ``ticket_routing_batch``
  -> ``ticket_routing_results``.

To use OpenAI instead, drop ``base_url`` and the server fields and pass
``api_key=EnvVar("OPENAI_API_KEY")`` to :class:`~batchor_dagster.BatchorResource`.
"""

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    DefaultSensorStatus,
    Definitions,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
    in_process_executor,
    load_from_defs_folder,
)

from batchor import OpenAIEnqueueLimitConfig, OpenAIProviderConfig
from batchor_dagster import BatchorParquetIOManager, batchor_assets, batchor_run_control_job
from batchor_example.local_server import LocalServerBatchorResource
from batchor_example.tickets import (
    REGIONS,
    TicketTriage,
    build_prompt,
    ticket_rows,
    ticket_table,
    write_jsonl,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_HOME = Path(os.environ.get("BATCHOR_EXAMPLE_HOME") or REPOSITORY_ROOT / ".dagster")
SERVER_PORT = int(os.environ.get("BATCHOR_EXAMPLE_PORT") or 8765)
TICKETS = 200


def keep_out_of_git(home: Path) -> None:
    """The example's home holds only generated files (and, by the docs' advice,
    ``DAGSTER_HOME``): a ``.gitignore`` inside it keeps all of it out of git."""
    home.mkdir(parents=True, exist_ok=True)
    ignore = home / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by the batchor Dagster example\n*\n", encoding="utf-8")


keep_out_of_git(EXAMPLE_HOME)

MODEL = OpenAIProviderConfig(
    model="gpt-4.1-mini",
    enqueue_limits=OpenAIEnqueueLimitConfig(enqueued_token_limit=2_000_000),
)
regions = StaticPartitionsDefinition(REGIONS)


@asset(group_name="support", io_manager_key="batchor_parquet_io_manager", kinds={"pyarrow"})
def support_tickets() -> pa.Table:
    """Today's support tickets (generated; the same every time)."""
    return ticket_table(TICKETS)


@asset(group_name="support_by_region", partitions_def=regions, kinds={"jsonl"})
def regional_tickets(context: AssetExecutionContext) -> str:
    """One JSON Lines export of tickets per region; the asset's value is the file path."""
    region = context.partition_key
    path = EXAMPLE_HOME / "exports" / f"tickets-{region}.jsonl"
    return str(write_jsonl(ticket_rows(40, region=region), path))


ticket_triage = batchor_assets(
    name="ticket_triage",
    upstream=support_tickets,
    item_id_column="ticket_id",
    build_prompt=build_prompt,
    provider_config=MODEL,
    structured_output=TicketTriage,
    group_name="support",
    results_wait_seconds=60,
    sensor_interval_seconds=5,
    sensor_default_status=DefaultSensorStatus.RUNNING,
)

regional_triage = batchor_assets(
    name="regional_triage",
    upstream=regional_tickets,
    item_id_column="ticket_id",
    build_prompt=build_prompt,
    provider_config=MODEL,
    structured_output=TicketTriage,
    group_name="support_by_region",
    results_wait_seconds=60,
    sensor_interval_seconds=5,
    sensor_default_status=DefaultSensorStatus.RUNNING,
)


@asset(group_name="support", io_manager_key="batchor_parquet_io_manager", kinds={"pyarrow"})
def triage_summary(context: AssetExecutionContext, ticket_triage_results: pa.Table) -> pa.Table:
    """Completed tickets per topic, with their mean urgency."""
    completed = ticket_triage_results.filter(pc.equal(ticket_triage_results["status"], "completed"))
    summary = (
        completed.group_by("topic")
        .aggregate([("item_id", "count"), ("urgency", "mean")])
        .rename_columns(["topic", "tickets", "mean_urgency"])
        .sort_by("topic")
    )
    lines = ["| topic | tickets | mean urgency |", "| --- | --- | --- |"]
    lines += [
        f"| {row['topic']} | {row['tickets']} | {row['mean_urgency']:.2f} |"
        for row in summary.to_pylist()
    ]
    context.add_output_metadata({"summary": MetadataValue.md("\n".join(lines))})
    return summary


def python_definitions() -> Definitions:
    """The jobs declared in Python, with the resources the YAML jobs use too."""
    return Definitions(
        assets=[
            support_tickets,
            *ticket_triage.assets,
            triage_summary,
            regional_tickets,
            *regional_triage.assets,
        ],
        sensors=[ticket_triage.sensor, regional_triage.sensor],
        jobs=[batchor_run_control_job],
        # Every step here is light: one process per run starts faster than one per step.
        executor=in_process_executor,
        resources={
            "batchor": LocalServerBatchorResource(
                storage=str(EXAMPLE_HOME / "runs.sqlite3"),
                artifact_root=str(EXAMPLE_HOME / "artifacts"),
                # The local server accepts any key; with OpenAI use EnvVar("OPENAI_API_KEY").
                api_key="sk-local-example",
                base_url=f"http://127.0.0.1:{SERVER_PORT}/v1",
                server_port=SERVER_PORT,
                server_data_dir=str(EXAMPLE_HOME / "local-openai"),
            ),
            "batchor_parquet_io_manager": BatchorParquetIOManager(
                base_dir=str(EXAMPLE_HOME / "parquet")
            ),
        },
    )


# The YAML jobs in defs/ use the resources bound above (the `batchor` resource and
# the Parquet IO manager): a component without `storage:` binds none of its own.
defs = Definitions.merge(
    python_definitions(), load_from_defs_folder(path_within_project=Path(__file__).parent)
)
