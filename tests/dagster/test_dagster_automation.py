"""Declarative automation and progress where Dagster users look for it.

- ``AutomationCondition.eager()`` on the submit asset starts a run when the upstream
  has new data, and the sensor then delivers the results;
- ``eager()`` on the results asset, measured: it is requested in the same tick as
  the submit asset, before the batch exists, so the sensor (not a condition) is what
  requests the results when the run is terminal;
- each sensor tick that sees a run change records an ``AssetObservation`` of the
  submit asset with the run's progress; a tick that sees no change records none.
"""

import itertools
from typing import Any

import pyarrow as pa
from dagster import (
    AssetKey,
    AssetObservation,
    AssetSpec,
    AutomationCondition,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    SensorDefinition,
    asset,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)
from dagster_kit import tick_until_requested, ticket_table, triage_job

from batchor import ChunkPolicy
from batchor_dagster import RUN_ID_METADATA_KEY, BatchorAssetProps, BatchorTranslator


@asset(io_manager_key="batchor_parquet_io_manager")
def tickets() -> pa.Table:
    return ticket_table(12)


def requested(result: Any) -> set[str]:
    """The assets an automation tick requested."""
    return {
        name
        for name in ("tickets", "triage_batch", "triage_results")
        if result.get_num_requested(AssetKey(name))
    }


def observe(
    sensor: SensorDefinition,
    instance: DagsterInstance,
    definitions: Definitions,
    cursor: str | None,
) -> tuple[list[AssetObservation], str | None, int]:
    """One tick, its observations reported as the sensor daemon reports them."""
    with build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources=definitions.resources,
        definitions=definitions,
    ) as context:
        data = sensor.evaluate_tick(context)
    events = [event for event in data.asset_events if isinstance(event, AssetObservation)]
    for event in events:
        instance.report_runless_asset_event(event)
    return events, data.cursor, len(data.run_requests or [])


def test_eager_on_the_submit_asset_starts_a_run_when_the_upstream_updates(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets, automation_condition=AutomationCondition.eager())
    defs = Definitions(assets=[tickets, *job.assets], sensors=[job.sensor], resources=resources)

    first = evaluate_automation_conditions(defs=defs, instance=instance)
    materialize([tickets], instance=instance, resources=resources)
    after_new_data = evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=first.cursor
    )
    submitted = materialize(
        [tickets, *job.assets], instance=instance, resources=resources, selection=[job.submit_key]
    )
    (request,), _cursor = tick_until_requested(
        job.sensor, instance=instance, resources=resources, definitions=defs
    )

    assert requested(first) == set()
    assert requested(after_new_data) == {"triage_batch"}
    (event,) = submitted.asset_materializations_for_node("triage_batch")
    assert request.run_key == event.metadata[RUN_ID_METADATA_KEY].value
    assert request.asset_selection == [job.results_key]


class EagerResults(BatchorTranslator):
    def get_asset_spec(self, props: BatchorAssetProps) -> AssetSpec:
        return (
            super()
            .get_asset_spec(props)
            .replace_attributes(automation_condition=AutomationCondition.eager())
        )


def test_eager_on_the_results_asset_fires_before_the_batch_is_done(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets, translator=EagerResults())
    defs = Definitions(assets=[tickets, *job.assets], resources=resources)

    first = evaluate_automation_conditions(defs=defs, instance=instance)
    materialize([tickets], instance=instance, resources=resources)
    tick = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)

    # Both in one tick: the results asset would run before its batchor run exists,
    # skip, and not be requested again until the upstream changes.
    assert requested(tick) == {"triage_batch", "triage_results"}


def test_every_tick_that_sees_progress_records_an_observation(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets, chunk_policy=ChunkPolicy(max_requests_per_batch=4))
    defs = Definitions(assets=[tickets, *job.assets], sensors=[job.sensor], resources=resources)
    materialize(
        [tickets, *job.assets],
        instance=instance,
        resources=resources,
        selection=[tickets.key, job.submit_key],
    )

    cursor = None
    for _ in range(20):
        _events, cursor, requests = observe(job.sensor, instance, defs, cursor)
        if requests:
            break

    records = instance.fetch_observations(AssetKey("triage_batch"), limit=50).records
    progress = [
        {key: value.value for key, value in record.asset_observation.metadata.items()}
        for record in reversed(records)
    ]
    assert progress, "the sensor recorded no observation"
    assert all(entry[RUN_ID_METADATA_KEY].startswith("triage.") for entry in progress)
    last = progress[-1]
    assert last["status"] == "completed" and last["percent_terminal"] == 100.0
    assert (last["items_total"], last["items_completed"], last["items_failed"]) == (12, 12, 0)
    assert last["batches_total"] == 3 and last["batches_in_flight"] == 0
    assert last["input_tokens"] > 0 and last["estimated_cost_usd"] > 0
    assert all(before != after for before, after in itertools.pairwise(progress))


def test_a_tick_that_sees_no_change_records_no_observation(
    instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    job = triage_job(tickets)
    defs = Definitions(assets=[tickets, *job.assets], sensors=[job.sensor], resources=resources)
    materialize(
        [tickets, *job.assets],
        instance=instance,
        resources=resources,
        selection=[tickets.key, job.submit_key],
    )
    # A results run under way keeps the finished run in the sensor's hands.
    instance.add_run(
        DagsterRun(
            job_name="__ASSET_JOB",
            status=DagsterRunStatus.STARTED,
            asset_selection=frozenset({job.results_key}),
        )
    )

    cursor = None
    for _ in range(20):
        events, cursor, _requests = observe(job.sensor, instance, defs, cursor)
        if events and events[-1].metadata["status"].value == "completed":
            break
    unchanged, _cursor, _requests = observe(job.sensor, instance, defs, cursor)

    assert unchanged == []
