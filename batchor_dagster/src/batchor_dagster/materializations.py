"""Reading batchor run ids back from Dagster's event log.

The submit asset records its batchor run id in its materialization metadata,
and so does the results asset. That is the whole link between them: the sensor
and the results asset find "the run of this partition" and "has this run's
result been written" here, whichever process asks. A Dagster run that covered
several partitions (a single-run backfill) records one materialization per
partition with the same metadata, so it holds ``{partition: run id}`` under
``batchor_run_ids`` instead.
"""

from __future__ import annotations

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, EventLogRecord

RUN_ID_METADATA_KEY = "batchor_run_id"
"""Materialization metadata key holding the batchor run id."""

RUN_IDS_METADATA_KEY = "batchor_run_ids"
"""Metadata key holding ``{partition key: batchor run id}`` (several partitions in one run)."""

RUN_ID_TAG = "batchor/run_id"
"""Dagster run tag carrying the batchor run id of a results run."""


def run_id_of(record: EventLogRecord) -> str | None:
    """The batchor run id a materialization record carries, if any."""
    materialization = record.asset_materialization
    if materialization is None:
        return None
    metadata = materialization.metadata
    text = getattr(metadata.get(RUN_ID_METADATA_KEY), "value", None)
    if text is None and record.partition_key is not None:
        by_partition = getattr(metadata.get(RUN_IDS_METADATA_KEY), "value", None)
        if isinstance(by_partition, dict):
            text = by_partition.get(record.partition_key)
    return text if isinstance(text, str) and text else None


def upstream_rows_of(record: EventLogRecord, run_id: str) -> int | None:
    """How many upstream rows the submit materialization ``record`` counted for
    ``run_id`` (None when it recorded another run, or no count)."""
    materialization = record.asset_materialization
    if materialization is None or run_id_of(record) != run_id:
        return None
    metadata = materialization.metadata
    if RUN_ID_METADATA_KEY in metadata:
        count = getattr(metadata.get("items"), "value", None)
    else:
        by_partition = getattr(metadata.get("items_by_partition"), "value", None)
        count = by_partition.get(record.partition_key) if isinstance(by_partition, dict) else None
    return count if isinstance(count, int) else None


def latest_materialization(
    instance: DagsterInstance, asset_key: AssetKey, partition_key: str | None
) -> EventLogRecord | None:
    """The latest materialization record of ``asset_key`` (of that partition, when
    ``partition_key`` is given)."""
    records_filter = AssetRecordsFilter(
        asset_key=asset_key,
        asset_partitions=[partition_key] if partition_key is not None else None,
    )
    result = instance.fetch_materializations(records_filter, limit=1)
    return result.records[0] if result.records else None


def latest_run_id(
    instance: DagsterInstance, asset_key: AssetKey, partition_key: str | None
) -> str | None:
    """The batchor run id of the latest materialization of ``asset_key`` (of that
    partition, when ``partition_key`` is given)."""
    record = latest_materialization(instance, asset_key, partition_key)
    return run_id_of(record) if record is not None else None
