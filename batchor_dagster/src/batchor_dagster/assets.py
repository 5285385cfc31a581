"""``batchor_assets``: a batch job declared as Dagster assets.

One call builds, for one job:

- the **submit asset** ``<name>_batch``: reads the upstream asset, starts the
  batchor run (or resumes it: the run id is derived from the data, the
  prompts and the job settings, see :mod:`batchor_dagster.inputs`), submits
  its first batches and records the run id, item count and estimated tokens
  and cost in its metadata;
- the **sensor** ``<name>_sensor``: steps in-flight runs and requests the
  results asset when one is terminal (see :mod:`batchor_dagster.sensor`);
- the **results asset** ``<name>_results``: the terminal results as a
  ``pyarrow.Table`` (see :mod:`batchor_dagster.results_table`), stored by the
  ``batchor_parquet_io_manager``, with counts, tokens, cost and a preview in its
  metadata and an asset check on the failure rate.

With a ``partitions_def`` (inherited from a partitioned upstream by default)
each partition is its own run.
"""

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
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
    TableColumn,
    TableSchema,
    asset,
    multi_asset,
)
from pydantic import BaseModel, Field

from batchor import (
    ArtifactPolicy,
    BatchItem,
    BatchJob,
    ChunkPolicy,
    ConfigurationError,
    OpenAIProviderConfig,
    PromptParts,
    ResultsTableLayout,
    RetryPolicy,
    Run,
    RunNotFoundError,
    RunSummary,
    RunTimeoutError,
)
from batchor_dagster.inputs import deterministic_run_id, read_upstream
from batchor_dagster.materializations import RUN_ID_METADATA_KEY, latest_run_id
from batchor_dagster.resource import BatchorResource
from batchor_dagster.sensor import build_batchor_sensor
from batchor_dagster.translator import AssetRole, BatchorAssetProps, BatchorTranslator

FAILURE_RATE_CHECK = "failure_rate"
"""Name of the asset check on the results asset."""

DEFAULT_RESOURCE_KEY = "batchor"
DEFAULT_IO_MANAGER_KEY = "batchor_parquet_io_manager"


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
class BatchorAssets:
    """The definitions :func:`batchor_assets` builds for one job."""

    submit_asset: AssetsDefinition
    results_asset: AssetsDefinition
    sensor: SensorDefinition

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


@dataclass(frozen=True)
class _JobSettings:
    name: str
    upstream_key: AssetKey
    item_id_column: str
    build_prompt: Callable[[BatchItem], PromptParts]
    provider_config: OpenAIProviderConfig
    structured_output: type[BaseModel] | None
    retry_policy: RetryPolicy
    chunk_policy: ChunkPolicy
    artifact_policy: ArtifactPolicy
    code_version: str | None

    def job(self, items: Any, provider_config: OpenAIProviderConfig) -> BatchJob:
        return BatchJob(
            items=items,
            build_prompt=self.build_prompt,
            provider_config=provider_config,
            structured_output=self.structured_output,
            retry_policy=self.retry_policy,
            chunk_policy=self.chunk_policy,
            artifact_policy=self.artifact_policy,
            batch_metadata={"dagster_job": self.name[:512]},
        )


@dataclass(frozen=True)
class _ResultsSettings:
    submit_key: AssetKey
    results_key: AssetKey
    output_name: str
    check_key: AssetCheckKey
    sensor_name: str
    layout: ResultsTableLayout
    wait_seconds: float
    max_failure_rate: float


def batchor_assets(
    *,
    name: str,
    upstream: AssetKey | str | AssetsDefinition | AssetSpec,
    item_id_column: str,
    build_prompt: Callable[[BatchItem], PromptParts],
    provider_config: OpenAIProviderConfig,
    structured_output: type[BaseModel] | None = None,
    partitions_def: PartitionsDefinition | None = None,
    group_name: str | None = None,
    retry_policy: RetryPolicy | None = None,
    chunk_policy: ChunkPolicy | None = None,
    artifact_policy: ArtifactPolicy | None = None,
    max_failure_rate: float = 0.05,
    results_wait_seconds: float = 0.0,
    resource_key: str = DEFAULT_RESOURCE_KEY,
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY,
    sensor_interval_seconds: int = 30,
    runs_per_tick: int = 10,
    sensor_default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
    code_version: str | None = None,
    translator: BatchorTranslator | None = None,
) -> BatchorAssets:
    """Declare a batch job over an upstream asset: submit asset, sensor, results asset.

    Args:
        name: The job's name (letters, digits, ``_``): prefix of its asset keys, its
            sensor's name and its run ids.
        upstream: The asset whose rows become items: its value is a ``pyarrow.Table``,
            a pandas ``DataFrame``, a list of row dicts, or the path of a
            ``.parquet`` / ``.csv`` / ``.jsonl`` file.
        item_id_column: The column holding each row's unique id.
        build_prompt: ``item -> PromptParts``; ``item.payload`` is the row as a dict.
            Must be deterministic: it is called again when a run resumes.
        provider_config: Model, endpoint and request options. ``api_key`` and
            ``base_url`` come from the resource when it sets them.
        structured_output: A module-level Pydantic model; each of its fields becomes a
            column of the results.
        partitions_def: One run per partition; default: the upstream asset's.
        group_name: Dagster asset group of both assets.
        retry_policy: As in :class:`batchor.BatchJob`.
        chunk_policy: As in :class:`batchor.BatchJob`.
        artifact_policy: As in :class:`batchor.BatchJob`.
        max_failure_rate: The results asset's ``failure_rate`` check fails above this
            fraction of failed items.
        results_wait_seconds: How long the results asset drives a run that is not
            terminal yet before giving up without materializing (0: do not wait;
            the sensor requests the results when the run finishes).
        resource_key: Key of the :class:`~batchor_dagster.BatchorResource`.
        io_manager_key: IO manager of the results asset (by default a
            :class:`~batchor_dagster.BatchorParquetIOManager`).
        sensor_interval_seconds: The sensor's minimum interval between ticks.
        runs_per_tick: How many in-flight runs the sensor steps per tick (round robin).
        sensor_default_status: Whether the sensor starts on (``RUNNING``) or off.
        code_version: Bump it when ``build_prompt`` changes in a way the data does not
            show; it is part of the run id.
        translator: Names, descriptions and metadata of the assets.
    """
    if not name or not name.replace("_", "").isalnum() or not name.isascii():
        raise ConfigurationError(
            f"batchor_assets name {name!r} must be letters, digits and '_' (it names assets "
            "and a sensor)"
        )
    if not 0 <= max_failure_rate <= 1:
        raise ConfigurationError(f"max_failure_rate must be within 0-1, got {max_failure_rate}")
    if results_wait_seconds < 0:
        raise ConfigurationError(f"results_wait_seconds must be >= 0, got {results_wait_seconds}")
    upstream_key = (
        upstream.key
        if isinstance(upstream, AssetSpec)
        else AssetKey.from_coercible_or_definition(upstream)
    )
    if partitions_def is None and isinstance(upstream, (AssetsDefinition, AssetSpec)):
        partitions_def = upstream.partitions_def
    translator = translator or BatchorTranslator()
    settings = _JobSettings(
        name=name,
        upstream_key=upstream_key,
        item_id_column=item_id_column,
        build_prompt=build_prompt,
        provider_config=provider_config,
        structured_output=structured_output,
        retry_policy=retry_policy or RetryPolicy(),
        chunk_policy=chunk_policy or ChunkPolicy(),
        artifact_policy=artifact_policy or ArtifactPolicy(),
        code_version=code_version,
    )

    def props(role: AssetRole) -> BatchorAssetProps:
        return BatchorAssetProps(
            name=name,
            role=role,
            upstream_key=upstream_key,
            model=provider_config.model,
            endpoint=provider_config.endpoint,
            structured_output=structured_output,
            group_name=group_name,
        )

    submit_spec = translator.get_asset_spec(props("submit"))
    results_spec = translator.get_asset_spec(props("results"))
    sensor_name = f"{name}_sensor"

    @asset(
        key=submit_spec.key,
        ins={"upstream": AssetIn(key=upstream_key)},
        partitions_def=partitions_def,
        group_name=submit_spec.group_name,
        description=submit_spec.description,
        metadata=submit_spec.metadata,
        tags=submit_spec.tags,
        kinds=submit_spec.kinds,
        code_version=code_version,
        required_resource_keys={resource_key},
    )
    def submit_asset(context: AssetExecutionContext, upstream: Any) -> MaterializeResult[None]:
        resource: BatchorResource = getattr(context.resources, resource_key)
        partition = context.partition_key if context.has_partition_key else None
        return _submit(context, resource, settings, upstream, partition)

    failure_rate_check = AssetCheckSpec(
        FAILURE_RATE_CHECK,
        asset=results_spec.key,
        description=f"At most {max_failure_rate:.1%} of the items failed.",
    )
    results = _ResultsSettings(
        submit_key=submit_spec.key,
        results_key=results_spec.key,
        output_name=results_spec.key.to_python_identifier(),
        check_key=failure_rate_check.key,
        sensor_name=sensor_name,
        layout=ResultsTableLayout(structured_output, provider_config.output_kind),
        wait_seconds=results_wait_seconds,
        max_failure_rate=max_failure_rate,
    )

    # A multi_asset because the output is skippable (a run still in flight writes
    # nothing) and, with can_subset, so is its check.
    @multi_asset(
        specs=[
            results_spec.replace_attributes(
                deps=[submit_spec.key], skippable=True
            ).with_io_manager_key(io_manager_key)
        ],
        check_specs=[failure_rate_check],
        partitions_def=partitions_def,
        required_resource_keys={resource_key},
        can_subset=True,
        name=results.output_name,
    )
    def results_asset(
        context: AssetExecutionContext, config: BatchorResultsConfig
    ) -> Iterator[Any]:
        resource: BatchorResource = getattr(context.resources, resource_key)
        yield from _write_results(context, resource, config, results)

    sensor_def = build_batchor_sensor(
        name=sensor_name,
        submit_key=submit_spec.key,
        results_key=results_spec.key,
        results_op_name=results_asset.op.name,
        resource_key=resource_key,
        runs_per_tick=runs_per_tick,
        minimum_interval_seconds=sensor_interval_seconds,
        default_status=sensor_default_status,
    )
    return BatchorAssets(submit_asset=submit_asset, results_asset=results_asset, sensor=sensor_def)


def _submit(
    context: AssetExecutionContext,
    resource: BatchorResource,
    settings: _JobSettings,
    value: object,
    partition: str | None,
) -> MaterializeResult[None]:
    upstream = read_upstream(
        value,
        item_id_column=settings.item_id_column,
        source_ref=settings.upstream_key.to_user_string(),
        partition_key=partition,
    )
    provider_config = resource.provider_config(settings.provider_config)
    job = settings.job(upstream.items, provider_config)
    runner = resource.get_runner()
    plan = runner.plan(job)  # builds every request as start() will: the run id follows them
    run_id = deterministic_run_id(
        name=settings.name,
        partition_key=partition,
        job={"code_version": settings.code_version},
        source_identity=upstream.identity,
        items_digest=plan.fingerprint,
    )
    try:
        runner.get_run(run_id)
        resumed = True
    except RunNotFoundError:
        resumed = False
    context.log.info(
        f"{'resuming' if resumed else 'starting'} batchor run {run_id}: {plan.item_count} "
        f"items from {upstream.kind} upstream {settings.upstream_key.to_user_string()}"
    )

    def report(stored: int) -> None:
        context.log.info(f"batchor run {run_id}: {stored}/{plan.item_count} items stored")

    run = runner.start(job, run_id=run_id, progress=report)
    summary = run.summary()
    if not summary.status.is_terminal:
        summary = run.refresh()
    metadata: dict[str, Any] = {
        RUN_ID_METADATA_KEY: run_id,
        "resumed": resumed,
        "status": summary.status.value,
        "items": plan.item_count,
        "estimated_input_tokens": plan.estimated_input_tokens,
        "model": provider_config.model,
        "upstream_kind": upstream.kind,
        "batches_submitted": summary.batches_total,
    }
    if plan.estimated_cost_usd is not None:
        metadata["estimated_cost_usd"] = plan.estimated_cost_usd
    return MaterializeResult(metadata=metadata, data_version=DataVersion(run_id))


def _write_results(
    context: AssetExecutionContext,
    resource: BatchorResource,
    config: BatchorResultsConfig,
    settings: _ResultsSettings,
) -> Iterator[Any]:
    """The results asset's body: the terminal run's table and its failure-rate check,
    or nothing while the run is still in flight."""
    partition = context.partition_key if context.has_partition_key else None
    run_id = config.batchor_run_id or latest_run_id(
        context.instance, settings.submit_key, partition
    )
    if run_id is None:
        where = f" for partition {partition!r}" if partition is not None else ""
        raise Failure(
            description=(
                f"{settings.submit_key.to_user_string()} has no materialization{where} yet: "
                "materialize it first, it starts the batchor run these results come from"
            )
        )
    try:
        run = resource.get_run(run_id)
    except RunNotFoundError as exc:
        raise Failure(description=str(exc)) from exc
    summary = run.summary()
    if not summary.status.is_terminal:
        wait = config.wait_seconds if config.wait_seconds is not None else settings.wait_seconds
        summary = _drive(run, wait)
    if not summary.status.is_terminal:
        context.log.warning(
            f"batchor run {run_id} is still running ({summary.terminal_items}/"
            f"{summary.total_items} items terminal), so "
            f"{settings.results_key.to_user_string()} is not materialized now; the sensor "
            f"{settings.sensor_name} requests it when the run finishes"
        )
        return
    table = settings.layout.table(run.iter_results(), partition_key=partition)
    failure_rate = summary.failed_items / summary.total_items if summary.total_items else 0.0
    yield Output(
        table,
        output_name=settings.output_name,
        metadata=_results_metadata(run_id, summary, table, failure_rate),
    )
    if settings.check_key in context.selected_asset_check_keys:
        yield AssetCheckResult(
            check_name=FAILURE_RATE_CHECK,
            passed=failure_rate <= settings.max_failure_rate,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "failure_rate": failure_rate,
                "max_failure_rate": settings.max_failure_rate,
                "failed": summary.failed_items,
                "total": summary.total_items,
                RUN_ID_METADATA_KEY: run_id,
            },
        )


def _drive(run: Run, wait_seconds: float) -> RunSummary:
    """Step a run once, then keep driving it for up to ``wait_seconds``."""
    summary = run.refresh()
    if summary.status.is_terminal or wait_seconds <= 0:
        return summary
    try:
        return run.wait(timeout=wait_seconds)
    except RunTimeoutError:
        return run.summary()


def _results_metadata(
    run_id: str, summary: RunSummary, table: Any, failure_rate: float
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        RUN_ID_METADATA_KEY: run_id,
        "status": summary.status.value,
        "rows": table.num_rows,
        "completed": summary.completed_items,
        "failed": summary.failed_items,
        "failure_rate": failure_rate,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "preview": MetadataValue.md(preview_markdown(table)),
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(field.name, str(field.type)) for field in table.schema]
        ),
    }
    cost = summary.estimated_cost_usd
    if cost is not None and math.isfinite(cost):
        metadata["estimated_cost_usd"] = cost
    return metadata


def preview_markdown(table: pa.Table, *, rows: int = 10, width: int = 60) -> str:
    """The first ``rows`` rows as a Markdown table (long cells shortened to ``width``)."""
    shown = [name for name in table.column_names if name not in ("lineage", "metadata")]
    head = table.select(shown).slice(0, rows).to_pylist()
    lines = [
        "| " + " | ".join(shown) + " |",
        "| " + " | ".join("---" for _ in shown) + " |",
    ]
    for row in head:
        lines.append("| " + " | ".join(_cell(row[name], width) for name in shown) + " |")
    if table.num_rows > rows:
        lines.append(f"\n_{rows} of {table.num_rows} rows_")
    return "\n".join(lines)


def _cell(value: Any, width: int) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"
