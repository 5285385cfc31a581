"""Reading batchor run ids back from Dagster's event log.

The submit asset records its batchor run id in its materialization metadata,
and so does the results asset. That is the whole link between them: the sensor
and the results asset find "the run of this partition" and "has this run's
result been written" here, whichever process asks.
"""

from __future__ import annotations

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, EventLogRecord

RUN_ID_METADATA_KEY = "batchor_run_id"
"""Materialization metadata key holding the batchor run id."""

RUN_ID_TAG = "batchor/run_id"
"""Dagster run tag carrying the batchor run id of a results run."""


def run_id_of(record: EventLogRecord) -> str | None:
    """The batchor run id a materialization record carries, if any."""
    materialization = record.asset_materialization
    if materialization is None:
        return None
    value = materialization.metadata.get(RUN_ID_METADATA_KEY)
    text = getattr(value, "value", None)
    return text if isinstance(text, str) and text else None


def latest_run_id(
    instance: DagsterInstance, asset_key: AssetKey, partition_key: str | None
) -> str | None:
    """The batchor run id of the latest materialization of ``asset_key`` (of that
    partition, when ``partition_key`` is given)."""
    records_filter = AssetRecordsFilter(
        asset_key=asset_key,
        asset_partitions=[partition_key] if partition_key is not None else None,
    )
    result = instance.fetch_materializations(records_filter, limit=1)
    return run_id_of(result.records[0]) if result.records else None
