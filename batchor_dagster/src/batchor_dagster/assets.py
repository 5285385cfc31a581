"""``batchor_assets``: a batch job declared as Dagster assets.

One call builds, for one job:

- the **submit asset** ``<name>_batch``: reads the upstream asset, starts the
  batchor run (or resumes it: the run id is derived from the data, the
  prompts and the job settings, see :mod:`batchor_dagster.inputs`), submits
  its first batches and records the run id, item count and estimated tokens
  and cost in its metadata (all of them from :meth:`batchor.BatchRunner.plan`);
- the **sensor** ``<name>_sensor``: steps in-flight runs, records their
  progress as observations of the submit asset, and requests the results asset
  when one is terminal (see :mod:`batchor_dagster.sensor`);
- the **results asset** ``<name>_results``: the terminal results as a
  ``pyarrow.Table`` (see :class:`batchor.ResultsTableLayout`), stored by the
  ``batchor_parquet_io_manager``, with counts, tokens, cost and a preview in its
  metadata and the checks of :mod:`batchor_dagster.checks`.

With a ``partitions_def`` (inherited from a partitioned upstream by default)
each partition is its own run; a Dagster run that covers several partitions (a
single-run backfill) starts one batchor run per partition and materializes
every partition of both assets.
"""

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    AutomationCondition,
    BackfillPolicy,
    Config,
    DataVersion,
    DefaultSensorStatus,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    PartitionsDefinition,
    SensorDefinition,
    multi_asset,
)
from dagster import RetryPolicy as OpRetryPolicy
from pydantic import BaseModel, Field

from batchor import (
    ArtifactPolicy,
    BatchItem,
    BatchJob,
    BatchRunner,
    ChunkPolicy,
    ConfigurationError,
    JobPlan,
    PromptParts,
    ProviderConfig,
    ResultsTableLayout,
    RetryPolicy,
    Run,
    RunNotFoundError,
    RunSummary,
    RunTimeoutError,
)
from batchor_dagster.checks import ResultChecks, RunResults
from batchor_dagster.inputs import deterministic_run_id, read_upstream, value_of_partition
from batchor_dagster.io_manager import PARTITIONS_AS_MAPPING
from batchor_dagster.materializations import (
    RUN_ID_METADATA_KEY,
    RUN_IDS_METADATA_KEY,
    latest_materialization,
    run_id_of,
    upstream_rows_of,
)
from batchor_dagster.metadata import results_metadata
from batchor_dagster.resource import BatchorResource
from batchor_dagster.sensor import build_batchor_sensor
from batchor_dagster.translator import AssetRole, BatchorAssetProps, BatchorTranslator

DEFAULT_RESOURCE_KEY = "batchor"
DEFAULT_IO_MANAGER_KEY = "batchor_parquet_io_manager"

SubmitFn = Callable[[AssetExecutionContext, BatchorResource, Any], Iterable[MaterializeResult[Any]]]
"""The submit asset's body: ``(context, batchor resource, upstream value)`` ->
the materialization (see :meth:`BatchorAssets.submit`)."""


class BatchorResultsConfig(Config):
    """Launchpad config of a results asset (the sensor fills ``batchor_run_id``)."""

    batchor_run_id: str | None = Field(
        default=None,
        description=(
            "The batchor run whose results to write. Default: the run recorded by the latest "
            "materialization of the submit asset (of this partition)."
        ),
    )
    wait_seconds: float | None = Field(
        default=None,
        ge=0,
        description=(
            "If the run is still in flight, drive it for up to this many seconds before "
            "giving up (the asset is then not materialized). Default: the factory's "
            "results_wait_seconds."
        ),
    )


@dataclass(frozen=True)
class _Started:
    """One batchor run the submit asset started or resumed."""

    partition: str | None
    run_id: str
    resumed: bool
    plan: JobPlan
    summary: RunSummary
    upstream_kind: str


@dataclass(frozen=True)
class _Job:
    """Everything the two assets' bodies need to know about the job."""

    name: str
    upstream_key: AssetKey
    submit_key: AssetKey
    results_key: AssetKey
    results_output_name: str
    sensor_name: str
    item_id_column: str
    build_prompt: Callable[[BatchItem], PromptParts]
    provider_config: ProviderConfig
    structured_output: type[BaseModel] | None
    item_retry_policy: RetryPolicy
    chunk_policy: ChunkPolicy
    artifact_policy: ArtifactPolicy
    code_version: str | None
    layout: ResultsTableLayout
    wait_seconds: float
    checks: ResultChecks

    def batch_job(self, items: Any, provider_config: ProviderConfig) -> BatchJob:
        return BatchJob(
            items=items,
            build_prompt=self.build_prompt,
            provider_config=provider_config,
            structured_output=self.structured_output,
            retry_policy=self.item_retry_policy,
            chunk_policy=self.chunk_policy,
            artifact_policy=self.artifact_policy,
            batch_metadata={"dagster_job": self.name[:512]},
        )

    # -- the submit asset -----------------------------------------------------------------

    def submit(
        self, context: AssetExecutionContext, resource: BatchorResource, upstream: object
    ) -> Iterator[MaterializeResult[Any]]:
        partitions = _partition_keys(context)
        provider_config = resource.provider_config(self.provider_config)
        runner = resource.get_runner()
        started = [
            self._start(
                context,
                runner,
                provider_config,
                upstream
                if len(partitions) == 1
                else value_of_partition(upstream, str(partition), [str(p) for p in partitions]),
                partition,
            )
            for partition in partitions
        ]
        if len(started) == 1:
            (run,) = started
            yield MaterializeResult(
                metadata=_submit_metadata(run), data_version=DataVersion(run.run_id)
            )
            return
        digest = hashlib.sha256("\n".join(run.run_id for run in started).encode()).hexdigest()
        yield MaterializeResult(
            metadata=_range_submit_metadata(started), data_version=DataVersion(digest[:24])
        )

    def _start(
        self,
        context: AssetExecutionContext,
        runner: BatchRunner,
        provider_config: ProviderConfig,
        value: object,
        partition: str | None,
    ) -> _Started:
        upstream = read_upstream(
            value,
            item_id_column=self.item_id_column,
            source_ref=self.upstream_key.to_user_string(),
            partition_key=partition,
        )
        job = self.batch_job(upstream.items, provider_config)
        plan = runner.plan(job)  # builds every request as start() will: the run id follows them
        run_id = deterministic_run_id(
            name=self.name,
            partition_key=partition,
            job={"code_version": self.code_version},
            source_identity=upstream.identity,
            items_digest=plan.fingerprint,
        )
        try:
            runner.get_run(run_id)
            resumed = True
        except RunNotFoundError:
            resumed = False
        where = "" if partition is None else f" (partition {partition})"
        context.log.info(
            f"{'resuming' if resumed else 'starting'} batchor run {run_id}{where}: "
            f"{plan.item_count} items from {upstream.kind} upstream "
            f"{self.upstream_key.to_user_string()}, ~{plan.estimated_input_tokens} input tokens"
        )

        def report(stored: int) -> None:
            context.log.info(f"batchor run {run_id}: {stored}/{plan.item_count} items stored")

        run = runner.start(job, run_id=run_id, progress=report)
        summary = run.summary()
        if not summary.status.is_terminal:
            summary = run.refresh()  # submits the first batches now, not at the next tick
        return _Started(partition, run_id, resumed, plan, summary, upstream.kind)

    # -- the results asset ----------------------------------------------------------------

    def collect(
        self,
        context: AssetExecutionContext,
        resource: BatchorResource,
        config: BatchorResultsConfig,
    ) -> Iterator[Any]:
        """The terminal runs' tables and the checks, or nothing while a run is in flight."""
        partitions = _partition_keys(context)
        if config.batchor_run_id is not None and len(partitions) > 1:
            raise Failure(
                description=(
                    f"batchor_run_id names one run, but this run covers {len(partitions)} "
                    "partitions; leave it unset (each partition's latest submission is used)"
                )
            )
        wait = config.wait_seconds if config.wait_seconds is not None else self.wait_seconds
        deadline = time.monotonic() + wait
        finished: dict[str | None, RunResults] = {}
        for partition in partitions:
            record = latest_materialization(context.instance, self.submit_key, partition)
            run_id = config.batchor_run_id or (run_id_of(record) if record else None)
            if run_id is None:
                where = f" for partition {partition!r}" if partition is not None else ""
                raise Failure(
                    description=(
                        f"{self.submit_key.to_user_string()} has no materialization{where} "
                        "yet: materialize it first, it starts the batchor run these results "
                        "come from"
                    )
                )
            try:
                run = resource.get_run(run_id)
            except RunNotFoundError as exc:
                raise Failure(description=str(exc)) from exc
            summary = run.summary()
            if not summary.status.is_terminal:
                summary = _drive(run, max(deadline - time.monotonic(), 0.0))
            if not summary.status.is_terminal:
                context.log.warning(
                    f"batchor run {run_id} is still running ({summary.terminal_items}/"
                    f"{summary.total_items} items terminal), so "
                    f"{self.results_key.to_user_string()} is not materialized now; the sensor "
                    f"{self.sensor_name} requests it when the run finishes"
                )
                return
            finished[partition] = RunResults(
                run_id=run_id,
                summary=summary,
                table=self.layout.table(run.iter_results(), partition_key=partition),
                upstream_rows=upstream_rows_of(record, run_id) if record else None,
            )
        runs = list(finished.values())
        if len(runs) == 1:
            (only,) = runs
            yield Output(
                only.table,
                output_name=self.results_output_name,
                metadata={
                    RUN_ID_METADATA_KEY: only.run_id,
                    **results_metadata(
                        provider=self.provider_config.kind,
                        summaries=[only.summary],
                        table=only.table,
                    ),
                },
            )
        else:
            tables = {str(partition): run.table for partition, run in finished.items()}
            yield Output(
                tables,
                output_name=self.results_output_name,
                metadata={
                    RUN_IDS_METADATA_KEY: MetadataValue.json(
                        {str(partition): run.run_id for partition, run in finished.items()}
                    ),
                    "partitions": len(runs),
                    **results_metadata(
                        provider=self.provider_config.kind,
                        summaries=[run.summary for run in runs],
                        table=pa.concat_tables(tables.values(), promote_options="default"),
                    ),
                },
            )
        yield from self.checks.evaluate(
            self.results_key, runs, set(context.selected_asset_check_keys)
        )


@dataclass(frozen=True)
class BatchorAssets:
    """The definitions :func:`batchor_assets` builds for one job."""

    submit_asset: AssetsDefinition
    results_asset: AssetsDefinition
    sensor: SensorDefinition
    _job: _Job = field(repr=False)

    @property
    def submit_key(self) -> AssetKey:
        return self.submit_asset.key

    @property
    def results_key(self) -> AssetKey:
        return self.results_asset.key

    @property
    def assets(self) -> list[AssetsDefinition]:
        return [self.submit_asset, self.results_asset]

    def to_definitions(self) -> Definitions:
        """The assets and the sensor, ready for ``Definitions.merge``."""
        return Definitions(assets=self.assets, sensors=[self.sensor])

    def submit(
        self, context: AssetExecutionContext, batchor: BatchorResource, upstream: object
    ) -> Iterator[MaterializeResult[Any]]:
        """The submit asset's default body: start or resume one batchor run per partition
        of this materialization and record their ids. An ``execute=`` given to
        :func:`batchor_assets` (or :meth:`BatchorComponent.execute`) can wrap it."""
        return self._job.submit(context, batchor, upstream)


def batchor_assets(
    *,
    name: str,
    upstream: AssetKey | str | AssetsDefinition | AssetSpec,
    item_id_column: str,
    build_prompt: Callable[[BatchItem], PromptParts],
    provider_config: ProviderConfig,
    structured_output: type[BaseModel] | None = None,
    partitions_def: PartitionsDefinition[Any] | None = None,
    backfill_policy: BackfillPolicy | None = None,
    group_name: str | None = None,
    owners: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    code_version: str | None = None,
    automation_condition: AutomationCondition[Any] | None = None,
    pool: str | None = None,
    retry_policy: OpRetryPolicy | None = None,
    item_retry_policy: RetryPolicy | None = None,
    chunk_policy: ChunkPolicy | None = None,
    artifact_policy: ArtifactPolicy | None = None,
    max_failure_rate: float = 0.05,
    failure_rate_blocking: bool = False,
    coverage_check: bool = True,
    max_cost_usd: float | None = None,
    results_wait_seconds: float = 0.0,
    resource_key: str = DEFAULT_RESOURCE_KEY,
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY,
    sensor_interval_seconds: int = 30,
    runs_per_tick: int = 10,
    sensor_default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
    translator: BatchorTranslator | None = None,
    execute: SubmitFn | None = None,
) -> BatchorAssets:
    """Declare a batch job over an upstream asset: submit asset, sensor, results asset.

    The Dagster arguments (``partitions_def`` to ``retry_policy``) mean what they mean
    to ``@asset``; ``owners``, ``tags``, ``code_version`` and ``group_name`` go to both
    assets, ``automation_condition`` and ``pool`` to the submit asset.

    Args:
        name: The job's name (letters, digits, ``_``): prefix of its asset keys, its
            sensor's name and its run ids.
        upstream: The asset whose rows become items: its value is a ``pyarrow.Table``,
            a pandas or polars ``DataFrame``, a list of row dicts, or the path of a
            ``.parquet`` / ``.csv`` / ``.jsonl`` file.
        item_id_column: The column holding each row's unique id.
        build_prompt: ``item -> PromptParts``; ``item.payload`` is the row as a dict.
            Must be deterministic: it is called again when a run resumes.
            :class:`batchor.PromptBuilder` builds one from a column or a template.
        provider_config: Any provider's config (``OpenAIProviderConfig(model=...)``,
            ...). ``api_key`` and ``base_url`` come from the resource when it sets them.
        structured_output: A module-level Pydantic model; each of its fields becomes a
            column of the results.
        partitions_def: One run per partition; default: the upstream asset's.
        backfill_policy: ``BackfillPolicy.single_run()`` folds a backfill of many
            partitions into one Dagster run (still one batchor run per partition).
        group_name: Dagster asset group of both assets.
        owners: Owners of both assets (``team:support``, an email address).
        tags: Tags of both assets.
        code_version: Both assets' code version. Bump it when ``build_prompt`` changes
            in a way the data does not show; it is part of the run id.
        automation_condition: The submit asset's, e.g. ``AutomationCondition.eager()``:
            new upstream data starts a new run (the same data resumes the same run).
            The sensor, not a condition, requests the results asset: see the docs.
        pool: The submit asset's concurrency pool: a pool limit caps how many
            submissions run at once.
        retry_policy: Dagster's op retry policy of both assets (each is idempotent).
        item_retry_policy: batchor's per-item retries (:class:`batchor.RetryPolicy`).
        chunk_policy: As in :class:`batchor.BatchJob`.
        artifact_policy: As in :class:`batchor.BatchJob`.
        max_failure_rate: The ``failure_rate`` check fails above this fraction of
            failed items.
        failure_rate_blocking: Make the ``failure_rate`` check blocking: downstream
            assets in the same run do not run when it fails.
        coverage_check: Add the ``coverage`` check (one result row per upstream row).
        max_cost_usd: Add the ``cost_budget`` check with this budget per
            materialization, at batch prices.
        results_wait_seconds: How long the results asset drives a run that is not
            terminal yet before giving up without materializing (0: do not wait;
            the sensor requests the results when the run finishes).
        resource_key: Key of the :class:`~batchor_dagster.BatchorResource`.
        io_manager_key: IO manager of the results asset (by default a
            :class:`~batchor_dagster.BatchorParquetIOManager`).
        sensor_interval_seconds: The sensor's minimum interval between ticks.
        runs_per_tick: How many in-flight runs the sensor steps per tick (round robin).
        sensor_default_status: Whether the sensor starts on (``RUNNING``) or off.
        translator: The assets' specs (see :class:`BatchorTranslator`).
        execute: Replaces the submit asset's body; it receives ``(context, batchor
            resource, upstream value)`` and usually delegates to
            :meth:`BatchorAssets.submit`.
    """
    if not name or not name.replace("_", "").isalnum() or not name.isascii():
        raise ConfigurationError(
            f"batchor_assets name {name!r} must be letters, digits and '_' (it names assets "
            "and a sensor)"
        )
    if results_wait_seconds < 0:
        raise ConfigurationError(f"results_wait_seconds must be >= 0, got {results_wait_seconds}")
    if isinstance(retry_policy, RetryPolicy):
        raise ConfigurationError(
            "retry_policy is Dagster's op retry policy (dagster.RetryPolicy), as in @asset; "
            "pass batchor's per-item RetryPolicy as item_retry_policy="
        )
    checks = ResultChecks(
        max_failure_rate=max_failure_rate,
        failure_rate_blocking=failure_rate_blocking,
        coverage=coverage_check,
        max_cost_usd=max_cost_usd,
    )
    upstream_key = (
        upstream.key
        if isinstance(upstream, AssetSpec)
        else AssetKey.from_coercible_or_definition(upstream)
    )
    if partitions_def is None and isinstance(upstream, (AssetsDefinition, AssetSpec)):
        partitions_def = upstream.partitions_def
    translator = translator or BatchorTranslator()

    def props(role: AssetRole) -> BatchorAssetProps:
        return BatchorAssetProps(
            name=name,
            role=role,
            upstream_key=upstream_key,
            provider=provider_config.kind,
            model=provider_config.model,
            endpoint=getattr(provider_config, "endpoint", None),
            structured_output=structured_output,
            group_name=group_name,
            owners=tuple(owners or ()),
            tags=dict(tags or {}),
            code_version=code_version,
            automation_condition=automation_condition if role == "submit" else None,
            partitions_def=partitions_def,
        )

    # The submit asset loads the upstream; the results asset only follows it.
    submit_spec = _with_structural_deps(
        translator.get_asset_spec(props("submit")), AssetDep(upstream_key)
    )
    results_spec = _with_structural_deps(
        translator.get_asset_spec(props("results")), AssetDep(submit_spec.key)
    ).replace_attributes(skippable=True)
    job = _Job(
        name=name,
        upstream_key=upstream_key,
        submit_key=submit_spec.key,
        results_key=results_spec.key,
        results_output_name=results_spec.key.to_python_identifier(),
        sensor_name=f"{name}_sensor",
        item_id_column=item_id_column,
        build_prompt=build_prompt,
        provider_config=provider_config,
        structured_output=structured_output,
        item_retry_policy=item_retry_policy or RetryPolicy(),
        chunk_policy=chunk_policy or ChunkPolicy(),
        artifact_policy=artifact_policy or ArtifactPolicy(),
        code_version=submit_spec.code_version,
        layout=ResultsTableLayout(structured_output, provider_config.output_kind),
        wait_seconds=results_wait_seconds,
        checks=checks,
    )
    submit_body: SubmitFn = execute or job.submit

    @multi_asset(
        name=submit_spec.key.to_python_identifier(),
        specs=[submit_spec],
        ins={"upstream": AssetIn(key=upstream_key)},
        backfill_policy=backfill_policy,
        pool=pool,
        retry_policy=retry_policy,
        required_resource_keys={resource_key},
        # several upstream partitions as {partition key: table} (BatchorParquetIOManager)
        op_tags={PARTITIONS_AS_MAPPING: "true"},
    )
    def submit_asset(context: AssetExecutionContext, upstream: Any) -> Iterator[Any]:
        resource: BatchorResource = getattr(context.resources, resource_key)
        yield from submit_body(context, resource, upstream)

    # A multi_asset because the output is skippable (a run still in flight writes
    # nothing) and, with can_subset, so are its checks.
    @multi_asset(
        name=job.results_output_name,
        specs=[results_spec.with_io_manager_key(io_manager_key)],
        check_specs=checks.specs(results_spec.key),
        backfill_policy=backfill_policy,
        retry_policy=retry_policy,
        required_resource_keys={resource_key},
        can_subset=True,
    )
    def results_asset(
        context: AssetExecutionContext, config: BatchorResultsConfig
    ) -> Iterator[Any]:
        resource: BatchorResource = getattr(context.resources, resource_key)
        yield from job.collect(context, resource, config)

    sensor_def = build_batchor_sensor(
        name=job.sensor_name,
        submit_key=submit_spec.key,
        results_key=results_spec.key,
        results_op_name=results_asset.op.name,
        resource_key=resource_key,
        runs_per_tick=runs_per_tick,
        minimum_interval_seconds=sensor_interval_seconds,
        default_status=sensor_default_status,
    )
    return BatchorAssets(
        submit_asset=submit_asset, results_asset=results_asset, sensor=sensor_def, _job=job
    )


def _with_structural_deps(spec: AssetSpec, dependency: AssetDep) -> AssetSpec:
    """``spec`` depending on ``dependency``; the deps it already had stay as extra ones."""
    extra = [dep for dep in spec.deps if dep.asset_key != dependency.asset_key]
    return spec.replace_attributes(deps=[dependency, *extra])


def _partition_keys(context: AssetExecutionContext) -> list[str | None]:
    """The partitions this Dagster run materializes (``[None]``: unpartitioned)."""
    if context.has_partition_key or context.has_partition_key_range:
        return list(context.partition_keys)
    return [None]


def _drive(run: Run, wait_seconds: float) -> RunSummary:
    """Step a run once, then keep driving it for up to ``wait_seconds``."""
    if wait_seconds <= 0:
        return run.refresh()
    try:
        return run.wait(timeout=wait_seconds)
    except RunTimeoutError:
        return run.summary()


def _submit_metadata(run: _Started) -> dict[str, Any]:
    plan = run.plan
    metadata: dict[str, Any] = {
        RUN_ID_METADATA_KEY: run.run_id,
        "resumed": run.resumed,
        "status": run.summary.status.value,
        "items": plan.item_count,
        "estimated_input_tokens": plan.estimated_input_tokens,
        "estimated_output_tokens": plan.estimated_output_tokens,
        "provider": plan.provider,
        "model": plan.model,
        "upstream_kind": run.upstream_kind,
        "batches_submitted": run.summary.batches_total,
    }
    if plan.estimated_cost_usd is not None:
        metadata["estimated_cost_usd"] = plan.estimated_cost_usd
    return metadata


def _range_submit_metadata(runs: Sequence[_Started]) -> dict[str, Any]:
    """One materialization covers every partition of a single-run backfill: it holds
    each partition's run id and item count, and the totals."""
    plans = [run.plan for run in runs]
    metadata: dict[str, Any] = {
        RUN_IDS_METADATA_KEY: MetadataValue.json({str(run.partition): run.run_id for run in runs}),
        "items_by_partition": MetadataValue.json(
            {str(run.partition): run.plan.item_count for run in runs}
        ),
        "partitions": len(runs),
        "resumed_partitions": sum(run.resumed for run in runs),
        "items": sum(plan.item_count for plan in plans),
        "estimated_input_tokens": sum(plan.estimated_input_tokens for plan in plans),
        "estimated_output_tokens": sum(plan.estimated_output_tokens for plan in plans),
        "provider": plans[0].provider,
        "model": plans[0].model,
        "upstream_kind": runs[0].upstream_kind,
        "batches_submitted": sum(run.summary.batches_total for run in runs),
    }
    costs = [plan.estimated_cost_usd for plan in plans]
    if all(cost is not None for cost in costs):
        metadata["estimated_cost_usd"] = sum(cost for cost in costs if cost is not None)
    return metadata
