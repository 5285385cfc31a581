"""``BatchorComponent``: a batch job declared in a ``defs.yaml``, without Python.

.. code-block:: yaml

    type: batchor_dagster.BatchorComponent
    attributes:
      name: ticket_triage
      upstream: support_tickets
      item_id_column: ticket_id
      prompt_template: "Triage this ticket: {text}"
      system_prompt: "You triage support tickets."
      provider: {kind: openai, model: gpt-4.1-mini}
      structured_output: my_package.models:TicketTriage
      storage: sqlite:///.batchor/runs.sqlite3

It builds what :func:`~batchor_dagster.batchor_assets` builds (the submit and
results assets, the sensor, the checks), with defaults that deliver results
without more settings: the sensor is on, and the results asset waits a little
for a run that finishes quickly. Subclass it and override :meth:`execute` or
:meth:`get_asset_spec`, as with Dagster's own integration components.

Resources are bound per component, so two components never collide: with
``storage`` the component binds its own :class:`~batchor_dagster.BatchorResource`
at ``batchor_<name>`` (key from ``api_key_env``); without it, it uses the
``batchor`` resource the code location binds once. Its Parquet IO manager is
``batchor_parquet_io_manager_<name>`` unless ``io_manager_key`` names one the
code location binds.

Every value is checked when the code location loads, and a bad one is reported
in Dagster's format, naming the file, line and attribute.
"""

import importlib
import re
import traceback
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import dagster as dg
import pydantic
from dagster.components.core.component_tree import TestComponentTree
from dagster.components.core.context import ComponentDeclLoadContext
from dagster.components.core.decl import PythonFileDecl
from dagster.components.resolved.core_models import (
    DailyPartitionsDefinitionModel,
    HourlyPartitionsDefinitionModel,
    MultiRunBackfillPolicyModel,
    SingleRunBackfillPolicyModel,
    StaticPartitionsDefinitionModel,
    TimeWindowPartitionsDefinitionModel,
    WeeklyPartitionsDefinitionModel,
    resolve_backfill_policy,
    resolve_partitions_def,
)
from dagster.components.utils.translation import (
    ComponentTranslator,
    TranslationFn,
    TranslationFnResolver,
    create_component_translator_cls,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    TypeAdapter,
    field_validator,
    model_validator,
)

from batchor import (
    AnyProviderConfig,
    BatchItem,
    ConfigurationError,
    PromptBuilder,
    PromptParts,
    ProviderConfig,
    import_model,
)
from batchor_dagster.assets import BatchorAssets, batchor_assets
from batchor_dagster.inputs import ACCEPTED_UPSTREAM
from batchor_dagster.io_manager import BatchorParquetIOManager
from batchor_dagster.resource import BatchorResource
from batchor_dagster.scaffolder import BatchorComponentScaffolder
from batchor_dagster.translator import BatchorAssetProps, BatchorTranslator

DEFAULT_API_KEY_ENV = {"azure": "AZURE_OPENAI_API_KEY"}
"""The variable each provider's key is read from when ``api_key_env`` is not set;
other kinds use ``<KIND>_API_KEY`` (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``...)."""

_JINJA_FIELD = re.compile(r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}")
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_TABLE_TYPES = {
    "pyarrow.lib.Table",
    "pyarrow.lib.RecordBatch",
    "pandas.core.frame.DataFrame",
    "polars.dataframe.frame.DataFrame",
    "builtins.str",
    "builtins.list",
    "pathlib.Path",
    "pathlib._local.Path",
    "os.PathLike",
}


# -- resolvers: each checks its value, so a bad one is reported at its line ---------------


def _resolve_name(context: dg.ResolutionContext, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"name {name!r} must be letters, digits and '_': it names the assets, the sensor "
            "and the run ids"
        )
    return name


def _resolve_upstream(context: dg.ResolutionContext, value: str | dg.AssetKey) -> dg.AssetKey:
    key = dg.AssetKey.from_user_string(value) if isinstance(value, str) else value
    produced = _upstream_type(context, key)
    if produced is not None:
        raise ValueError(
            f"the upstream asset {key.to_user_string()} returns {produced}; batchor reads "
            f"{ACCEPTED_UPSTREAM}"
        )
    return key


def _upstream_type(context: dg.ResolutionContext, key: dg.AssetKey) -> str | None:
    """The declared output type of the upstream asset when it is found among the code
    location's Python modules and cannot hold rows; None when it can, or is not found
    (defined elsewhere, e.g. in definitions.py or by another component)."""
    try:
        tree = ComponentDeclLoadContext.from_resolution_context(context).component_tree
    except Exception:  # resolved outside a code location (from_attributes_dict, tests)
        return None
    if isinstance(tree, TestComponentTree):
        return None
    for loc, decl in tree.find_root_decl().iterate_loc_component_decl_pairs():
        if not isinstance(decl, PythonFileDecl):
            continue
        for assets_def in tree.build_defs_at_path(loc).assets or []:
            if not isinstance(assets_def, dg.AssetsDefinition) or key not in assets_def.keys:
                continue
            if not assets_def.is_executable:
                return None
            output = assets_def.get_output_name_for_asset_key(key)
            typing_type = assets_def.op.output_def_named(output).dagster_type.typing_type
            if typing_type is typing.Any or typing_type is type(None):
                return None  # unannotated: no way to tell before it runs
            origin = typing.get_origin(typing_type) or typing_type
            name = f"{getattr(origin, '__module__', '')}.{getattr(origin, '__qualname__', origin)}"
            return None if name in _TABLE_TYPES else name
    return None


def _resolve_prompt_template(context: dg.ResolutionContext, template: str) -> str:
    if _JINJA_FIELD.search(template):
        raise ValueError(
            "prompt_template fields are written {column} (str.format), not {{ column }}: "
            "Dagster renders {{ }} as a template when it loads the file, and an unknown name "
            "there becomes empty text"
        )
    PromptBuilder.from_template(template)  # the fields must be column names
    return template


def _resolve_build_prompt(
    context: dg.ResolutionContext, reference: str
) -> Callable[[BatchItem], PromptParts]:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"build_prompt must be module:function, got {reference!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{reference!r} is not callable")
    function: Callable[[BatchItem], PromptParts] = target
    return function


def _resolve_structured_output(context: dg.ResolutionContext, reference: str) -> type[BaseModel]:
    return import_model(reference)


def _resolve_provider(context: dg.ResolutionContext, value: Mapping[str, Any]) -> ProviderConfig:
    values = dict(context.resolve_value(value))
    if "api_key" in values:
        raise ValueError(
            "provider.api_key would put a secret in the file: keep the key in an environment "
            "variable and name it with api_key_env (default: <KIND>_API_KEY)"
        )
    if "kind" not in values:
        raise ValueError(f"provider needs a kind: one of {', '.join(provider_kinds())}")
    config: ProviderConfig = TypeAdapter(AnyProviderConfig).validate_python(values)
    return config


def _resolve_retry_policy(context: dg.ResolutionContext, model: Any) -> dg.RetryPolicy | None:
    if model is None:
        return None
    return dg.RetryPolicy(max_retries=model.max_retries, delay=model.delay)


def provider_kinds() -> list[str]:
    """The ``kind`` of every provider config batchor has (``AnyProviderConfig``)."""
    union = typing.get_args(AnyProviderConfig)[0]
    members = typing.get_args(union) or (union,)
    return [str(member.model_fields["kind"].default) for member in members]


# -- nested blocks ------------------------------------------------------------------------


class BatchorChecksModel(dg.Model, dg.Resolvable):
    """The ``checks:`` block: the results asset's checks."""

    max_failure_rate: float = 0.05
    blocking: bool = False
    coverage: bool = True
    max_cost_usd: float | None = None


class BatchorSensorModel(dg.Model, dg.Resolvable):
    """The ``sensor:`` block: how the sensor that steps runs and requests results ticks."""

    interval_seconds: int = 30
    runs_per_tick: int = 10
    default_status: Literal["running", "stopped"] = "running"


class RetryPolicyModel(dg.Model, dg.Resolvable):
    """The ``retry_policy:`` block: Dagster's op retries of both assets."""

    max_retries: int = 1
    delay: float | None = None


# -- the component ------------------------------------------------------------------------


@dg.scaffold_with(BatchorComponentScaffolder)
class BatchorComponent(dg.Component, dg.Resolvable, dg.Model):
    """Send each row of an upstream table or file through a provider's batch API, durably.

    Builds a submit asset (starts or resumes one batchor run per partition), a sensor
    (steps the runs, records their progress, requests the results) and a results
    asset (Parquet, with failure-rate, coverage and cost-budget checks).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: Annotated[
        str,
        dg.Resolver(
            _resolve_name,
            model_field_type=str,
            description="The job's name: its assets are <name>_batch and <name>_results.",
            examples=["ticket_triage"],
        ),
    ]
    upstream: Annotated[
        dg.AssetKey,
        dg.Resolver(
            _resolve_upstream,
            model_field_type=str,
            description=(
                "Asset key of the rows: a pyarrow Table, a pandas or polars DataFrame, a list "
                "of dicts, or a .parquet/.csv/.jsonl path ('a/b' for a key with a prefix)."
            ),
            examples=["support_tickets"],
        ),
    ]
    item_id_column: str
    prompt_template: Annotated[
        str | None,
        dg.Resolver(
            _resolve_prompt_template,
            model_field_type=str,
            inject_before_resolve=False,
            description="The prompt, with {column} fields (str.format) filled from each row.",
            examples=["Triage this ticket: {text}"],
        ),
    ] = None
    prompt_column: str | None = None
    build_prompt: Annotated[
        Callable[[BatchItem], PromptParts] | None,
        dg.Resolver(
            _resolve_build_prompt,
            model_field_type=str,
            description="module:function taking a batchor.BatchItem, returning PromptParts.",
            examples=["my_package.prompts:build_prompt"],
        ),
    ] = None
    system_prompt: str | None = None
    # Typed Any for Dagster's model derivation (it refuses a pydantic class it cannot
    # resolve field by field); _provider_config makes it a ProviderConfig.
    provider: Annotated[
        Any,
        dg.Resolver(
            _resolve_provider,
            model_field_type=dict[str, Any],
            description=(
                "A provider config as batchor.AnyProviderConfig takes it: kind, model and "
                "that provider's settings (endpoint, request_options, base_url, ...)."
            ),
            examples=[{"kind": "openai", "model": "gpt-4.1-mini"}],
        ),
    ]
    api_key_env: str | None = None
    structured_output: Annotated[
        type[BaseModel] | None,
        dg.Resolver(
            _resolve_structured_output,
            model_field_type=str,
            description="module:Class of a Pydantic model: one results column per field.",
            examples=["my_package.models:TicketTriage"],
        ),
    ] = None
    storage: str | None = None
    artifact_root: str | None = None
    results_dir: str | None = None
    io_manager_key: str | None = None
    group_name: str | None = None
    code_version: str | None = None
    pool: str | None = None
    partitions_def: Annotated[
        dg.PartitionsDefinition[Any] | None,
        dg.Resolver(
            resolve_partitions_def,
            model_field_type=HourlyPartitionsDefinitionModel
            | DailyPartitionsDefinitionModel
            | WeeklyPartitionsDefinitionModel
            | TimeWindowPartitionsDefinitionModel
            | StaticPartitionsDefinitionModel,
        ),
    ] = None
    backfill_policy: Annotated[
        dg.BackfillPolicy | None,
        dg.Resolver(
            resolve_backfill_policy,
            model_field_type=SingleRunBackfillPolicyModel | MultiRunBackfillPolicyModel,
        ),
    ] = None
    automation_condition: Annotated[
        dg.AutomationCondition[Any] | None,
        dg.Resolver.default(
            model_field_type=str,
            description="The submit asset's, e.g. {{ dg.AutomationCondition.eager() }}.",
        ),
    ] = None
    retry_policy: Annotated[
        dg.RetryPolicy | None,
        dg.Resolver(_resolve_retry_policy, model_field_type=RetryPolicyModel),
    ] = None
    checks: BatchorChecksModel = BatchorChecksModel()
    sensor: BatchorSensorModel = BatchorSensorModel()
    results_wait_seconds: float = 30.0
    translation: Annotated[
        TranslationFn[BatchorAssetProps] | None,
        TranslationFnResolver(template_vars_for_translation_fn=lambda props: {"props": props}),
    ] = None

    _assets: BatchorAssets | None = PrivateAttr(default=None)

    @field_validator("provider", mode="before")
    @classmethod
    def _provider_config(cls, value: Any) -> ProviderConfig:
        if isinstance(value, ProviderConfig):
            return value
        config: ProviderConfig = TypeAdapter(AnyProviderConfig).validate_python(value)
        return config

    @property
    def provider_config(self) -> ProviderConfig:
        """The ``provider`` block, validated as one of batchor's provider configs."""
        config: ProviderConfig = self.provider
        return config

    @model_validator(mode="after")
    def _one_prompt_source(self) -> "BatchorComponent":
        given = [
            field
            for field in ("prompt_template", "prompt_column", "build_prompt")
            if getattr(self, field) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of prompt_template, prompt_column or build_prompt "
                f"(got {', '.join(given) or 'none'})"
            )
        return self

    @classmethod
    def resolve_from_model(cls, context: dg.ResolutionContext, model: BaseModel) -> Any:
        """Report the component's own validation errors (a value of the wrong type, two
        prompt sources) at their line, as Dagster reports the YAML schema's."""
        try:
            return super().resolve_from_model(context, model)
        except pydantic.ValidationError as exc:
            location = exc.errors()[0]["loc"]
            field = str(location[0]) if location else None
            where = context.at_path(field) if field else context
            raise where.build_resolve_fn_exc(
                traceback.format_exception_only(exc),
                field_name=field or "attributes",
                model=model,
            ) from None

    # -- override points, as in Dagster's integration components ------------------------

    def get_asset_spec(self, props: BatchorAssetProps) -> dg.AssetSpec:
        """The spec of the submit (``props.role == "submit"``) or results asset, before
        ``translation`` applies. Override in a subclass to change it."""
        return BatchorTranslator().get_asset_spec(props)

    def execute(
        self, context: dg.AssetExecutionContext, batchor: BatchorResource, upstream: Any
    ) -> Iterator[dg.MaterializeResult[Any]]:
        """The submit asset's body: start or resume one batchor run per partition of
        this materialization. Override in a subclass to add to it, e.g. to log or to
        yield from ``super().execute(...)`` with a filtered ``upstream``."""
        if self._assets is None:
            raise ConfigurationError("BatchorComponent.execute runs after build_defs")
        yield from self._assets.submit(context, batchor, upstream)

    # -- what it builds -----------------------------------------------------------------

    @property
    def resource_key(self) -> str:
        """The :class:`BatchorResource` key: its own with ``storage``, else ``batchor``."""
        return f"batchor_{self.name}" if self.storage else "batchor"

    @property
    def results_io_manager_key(self) -> str:
        return self.io_manager_key or f"batchor_parquet_io_manager_{self.name}"

    @property
    def api_key_variable(self) -> str:
        """The environment variable the component's resource reads the API key from."""
        kind = self.provider_config.kind
        return self.api_key_env or DEFAULT_API_KEY_ENV.get(kind, f"{kind.upper()}_API_KEY")

    def prompt_builder(self) -> Callable[[BatchItem], PromptParts]:
        if self.build_prompt is not None:
            return self.build_prompt
        if self.prompt_column is not None:
            return PromptBuilder.from_column(self.prompt_column, self.system_prompt)
        assert self.prompt_template is not None
        return PromptBuilder.from_template(self.prompt_template, self.system_prompt)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        root = Path(context.project_root)
        checks = self.checks
        self._assets = batchor_assets(
            name=self.name,
            upstream=self.upstream,
            item_id_column=self.item_id_column,
            build_prompt=self.prompt_builder(),
            provider_config=self.provider_config,
            structured_output=self.structured_output,
            partitions_def=self.partitions_def,
            backfill_policy=self.backfill_policy,
            group_name=self.group_name,
            code_version=self.code_version,
            automation_condition=self.automation_condition,
            pool=self.pool,
            retry_policy=self.retry_policy,
            max_failure_rate=checks.max_failure_rate,
            failure_rate_blocking=checks.blocking,
            coverage_check=checks.coverage,
            max_cost_usd=checks.max_cost_usd,
            results_wait_seconds=self.results_wait_seconds,
            resource_key=self.resource_key,
            io_manager_key=self.results_io_manager_key,
            sensor_interval_seconds=self.sensor.interval_seconds,
            runs_per_tick=self.sensor.runs_per_tick,
            sensor_default_status=(
                dg.DefaultSensorStatus.RUNNING
                if self.sensor.default_status == "running"
                else dg.DefaultSensorStatus.STOPPED
            ),
            translator=_ComponentTranslator(self),
            execute=self.execute,
        )
        resources: dict[str, Any] = {}
        if self.storage:
            resources[self.resource_key] = BatchorResource(
                storage=storage_location(self.storage, root),
                artifact_root=(
                    _local_path(self.artifact_root, root) if self.artifact_root else None
                ),
                api_key=dg.EnvVar(self.api_key_variable),
            )
        if self.io_manager_key is None:
            resources[self.results_io_manager_key] = BatchorParquetIOManager(
                base_dir=_local_path(self.results_dir, root) if self.results_dir else None
            )
        return dg.Definitions(
            assets=self._assets.assets, sensors=[self._assets.sensor], resources=resources
        )


class _ComponentTranslator(
    create_component_translator_cls(BatchorComponent, BatchorTranslator),  # type: ignore[misc]
    ComponentTranslator[BatchorComponent],
):
    """The component's :meth:`~BatchorComponent.get_asset_spec` (when a subclass
    overrides it, else :class:`BatchorTranslator`'s), then its ``translation``."""

    def __init__(self, component: BatchorComponent) -> None:
        self._component = component

    def get_asset_spec(self, props: BatchorAssetProps) -> dg.AssetSpec:
        spec: dg.AssetSpec = super().get_asset_spec(props)
        if self._component.translation is not None:
            spec = self._component.translation(spec, props)
        return spec


def storage_location(storage: str, root: Path) -> str:
    """``storage`` with a relative SQLite path made absolute against ``root`` (the
    project), so the code server, the daemon and run workers find one file."""
    text = storage.strip()
    if text.startswith("sqlite:///") and not text.startswith("sqlite:////"):
        return "sqlite:///" + str(root / text.removeprefix("sqlite:///"))
    if "://" not in text and text != "memory":
        return _local_path(text, root)
    return text


def _local_path(location: str, root: Path) -> str:
    if "://" in location:
        return location
    path = Path(location).expanduser()
    return str(path if path.is_absolute() else root / path)
