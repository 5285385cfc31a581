"""The sensor that drives a job's in-flight runs and requests their results.

Each tick it reads new materializations of the submit asset (from a stored
event-log position), steps at most ``runs_per_tick`` in-flight runs once each
with :meth:`batchor.Run.refresh` (round robin, so every run advances however
many there are), and for each run that became terminal requests the results
asset with ``run_key`` = the batchor run id: Dagster launches a run key once.
A run is not requested when its results were already written, when a newer
submission of its partition replaced it, or while a Dagster run that includes
the results asset is queued or running (it is looked at again next tick).

Each stepped run whose progress changed since the last tick is recorded as an
``AssetObservation`` of the submit asset (of its partition) with
:func:`~batchor_dagster.metadata.progress_metadata`: the asset's page in the
UI plots items by status, batches, tokens, cost and percent terminal.

The cursor is JSON: ``{"after_storage_id": int | null, "in_flight": [[run_id,
partition_key | null], ...], "observed": {run_id: progress digest}}``.
"""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from batchor import RunNotFoundError, RunSummary
from batchor_dagster.materializations import (
    RUN_ID_METADATA_KEY,
    RUN_ID_TAG,
    latest_run_id,
    run_id_of,
)
from batchor_dagster.metadata import progress_metadata
from batchor_dagster.resource import BatchorResource

SUBMISSIONS_PER_TICK = 100
"""New submit materializations read per tick (the rest wait for the next tick)."""

_MAX_NOTES = 10
_ACTIVE_RUNS_CHECKED = 200
_ACTIVE_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
PARTITION_TAG = "dagster/partition"


@dataclass
class SensorCursor:
    """Where the sensor is in the event log, and the runs it is driving."""

    after_storage_id: int | None = None
    in_flight: list[tuple[str, str | None]] = field(default_factory=list)
    observed: dict[str, str] = field(default_factory=dict)
    """The progress digest of each run's last observation (see :func:`progress_digest`)."""

    @classmethod
    def parse(cls, text: str | None) -> "SensorCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            after_storage_id=data.get("after_storage_id"),
            in_flight=[(str(run_id), partition) for run_id, partition in data.get("in_flight", [])],
            observed={str(key): str(value) for key, value in data.get("observed", {}).items()},
        )

    def dumps(self) -> str:
        driven = {run_id for run_id, _partition in self.in_flight}
        return json.dumps(
            {
                "after_storage_id": self.after_storage_id,
                "in_flight": self.in_flight,
                "observed": {
                    run_id: digest for run_id, digest in self.observed.items() if run_id in driven
                },
            },
            separators=(",", ":"),
        )

    def changed(self, run_id: str, summary: RunSummary) -> bool:
        """Whether ``summary`` differs from the run's last observation (and remember it)."""
        digest = progress_digest(summary)
        if self.observed.get(run_id) == digest:
            return False
        self.observed[run_id] = digest
        return True

    def track(self, run_id: str, partition_key: str | None) -> list[str]:
        """Drive ``run_id`` for its partition from now on; returns the runs of the same
        partition it supersedes (they are no longer driven or collected)."""
        superseded = [
            other
            for other, partition in self.in_flight
            if partition == partition_key and other != run_id
        ]
        self.in_flight = [
            (other, partition)
            for other, partition in self.in_flight
            if partition != partition_key or other == run_id
        ]
        if (run_id, partition_key) not in self.in_flight:
            self.in_flight.append((run_id, partition_key))
        return superseded


def build_batchor_sensor(
    *,
    name: str,
    submit_key: AssetKey,
    results_key: AssetKey,
    results_op_name: str,
    resource_key: str,
    runs_per_tick: int,
    minimum_interval_seconds: int,
    default_status: DefaultSensorStatus,
) -> SensorDefinition:
    """The sensor of one :func:`~batchor_dagster.batchor_assets` job."""
    if runs_per_tick < 1:
        raise ValueError(f"runs_per_tick must be at least 1, got {runs_per_tick}")

    @sensor(
        name=name,
        asset_selection=[results_key],
        required_resource_keys={resource_key},
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Steps the in-flight batchor runs started by {submit_key.to_user_string()} and "
            f"materializes {results_key.to_user_string()} when one finishes (run key = "
            "batchor run id)."
        ),
    )
    def batchor_sensor(context: SensorEvaluationContext) -> SensorResult:
        resource: BatchorResource = getattr(context.resources, resource_key)
        cursor = SensorCursor.parse(context.cursor)
        _track_new_submissions(context, submit_key, cursor)

        requests: list[RunRequest] = []
        observations: list[AssetObservation] = []
        notes: list[str] = []
        selected = cursor.in_flight[:runs_per_tick]
        still_in_flight: list[tuple[str, str | None]] = []
        for run_id, partition in selected:
            where = run_id if partition is None else f"{run_id} (partition {partition})"
            try:
                run = resource.get_run(run_id)
                summary = run.summary() if run.status.is_terminal else run.refresh()
            except RunNotFoundError:
                context.log.warning(f"batchor run {run_id} is not in the storage; dropping it")
                continue
            except Exception as exc:  # one broken run must not stop the others
                context.log.error(
                    f"stepping batchor run {where} failed: {type(exc).__name__}: {exc}"
                )
                notes.append(f"{where}: step failed ({type(exc).__name__})")
                still_in_flight.append((run_id, partition))
                continue
            if cursor.changed(run_id, summary):
                observations.append(
                    AssetObservation(
                        asset_key=submit_key,
                        partition=partition,
                        metadata={RUN_ID_METADATA_KEY: run_id, **progress_metadata(summary)},
                    )
                )
            if not summary.status.is_terminal:
                notes.append(f"{where}: {_progress(summary)}")
                still_in_flight.append((run_id, partition))
                continue
            instance = context.instance
            if _results_run_in_progress(instance, results_key, partition):
                notes.append(f"{where}: {summary.status.value}, results being materialized")
                still_in_flight.append((run_id, partition))
            elif (
                latest_run_id(instance, submit_key, partition) != run_id
                or latest_run_id(instance, results_key, partition) == run_id
            ):
                notes.append(f"{where}: {summary.status.value}, results already handled")
            else:
                context.log.info(
                    f"batchor run {where} is {summary.status.value}; requesting results"
                )
                requests.append(
                    RunRequest(
                        run_key=run_id,
                        asset_selection=[results_key],
                        partition_key=partition,
                        run_config=_results_run_config(results_op_name, run_id),
                        tags={RUN_ID_TAG: run_id, "batchor/status": summary.status.value},
                    )
                )
        cursor.in_flight = cursor.in_flight[len(selected) :] + still_in_flight

        if requests:
            return SensorResult(
                run_requests=requests, asset_events=observations, cursor=cursor.dumps()
            )
        return SensorResult(
            skip_reason=_skip_reason(cursor, notes),
            asset_events=observations,
            cursor=cursor.dumps(),
        )

    return batchor_sensor


def _track_new_submissions(
    context: SensorEvaluationContext, submit_key: AssetKey, cursor: SensorCursor
) -> None:
    result = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=submit_key, after_storage_id=cursor.after_storage_id),
        limit=SUBMISSIONS_PER_TICK,
        ascending=True,
    )
    for record in result.records:
        cursor.after_storage_id = record.storage_id
        run_id = run_id_of(record)
        if run_id is None:
            continue
        for superseded in cursor.track(run_id, record.partition_key):
            context.log.info(
                f"batchor run {superseded} is superseded by {run_id}: it is no longer "
                "driven and its results will not be materialized (cancel it with the "
                "run-control job if it is still running)"
            )


def _results_run_in_progress(
    instance: DagsterInstance, results_key: AssetKey, partition: str | None
) -> bool:
    """Whether a queued or running Dagster run is already materializing the results
    (of this partition): a "materialize all" from the UI, or an earlier request."""
    records = instance.get_run_records(
        RunsFilter(statuses=_ACTIVE_STATUSES), limit=_ACTIVE_RUNS_CHECKED
    )
    for record in records:
        run = record.dagster_run
        if results_key not in (run.asset_selection or ()):
            continue
        if partition is None or run.tags.get(PARTITION_TAG) == partition:
            return True
    return False


def progress_digest(summary: RunSummary) -> str:
    """12 hex digits that change when the run makes progress (not with the clock)."""
    text = repr([*summary.progress_key(), summary.input_tokens, summary.output_tokens])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _results_run_config(op_name: str, run_id: str) -> dict[str, Any]:
    return {"ops": {op_name: {"config": {"batchor_run_id": run_id}}}}


def _progress(summary: RunSummary) -> str:
    text = (
        f"{summary.terminal_items}/{summary.total_items} items terminal, "
        f"{summary.batches_in_flight} batch(es) in flight"
    )
    if summary.control_state.value != "running":
        text += f", {summary.control_state.value}"
    if summary.last_error:
        text += f", last error: {summary.last_error[:120]}"
    return text


def _skip_reason(cursor: SensorCursor, notes: list[str]) -> SkipReason:
    if not cursor.in_flight and not notes:
        return SkipReason("No batchor runs in flight.")
    shown = "; ".join(notes[:_MAX_NOTES])
    more = len(notes) - _MAX_NOTES
    if more > 0:
        shown += f"; and {more} more"
    stepped = f"Stepped: {shown}." if notes else ""
    return SkipReason(
        f"{len(cursor.in_flight)} batchor run(s) in flight, none newly terminal. {stepped}".strip()
    )
