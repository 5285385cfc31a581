"""``BatchorTranslator``: the asset spec each of a job's two assets gets.

:meth:`BatchorTranslator.get_asset_spec` is the one override point (as
dagster-dbt's and dagster-sling's translators): it receives the job's
:class:`BatchorAssetProps` and returns an :class:`~dagster.AssetSpec`. The
``get_*`` methods are conveniences it calls, so overriding one of them changes
one attribute. The factory then adds what is structural: the submit asset
depends on the upstream asset, the results asset on the submit asset (a
spec's other ``deps`` are kept as extra dependencies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dagster import AssetKey, AssetSpec, AutomationCondition, PartitionsDefinition
from pydantic import BaseModel

AssetRole = Literal["submit", "results"]


@dataclass(frozen=True)
class BatchorAssetProps:
    """What the translator knows about one of a job's assets.

    ``role`` is ``"submit"`` (starts or resumes the run) or ``"results"`` (the
    Parquet results of a terminal run). ``provider`` is the provider config's
    ``kind`` (``openai``, ...); ``endpoint`` is None for providers without one.
    ``automation_condition`` is the factory's, for the submit asset only.
    """

    name: str
    role: AssetRole
    upstream_key: AssetKey
    provider: str
    model: str
    endpoint: str | None
    structured_output: type[BaseModel] | None
    group_name: str | None
    owners: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    code_version: str | None = None
    automation_condition: AutomationCondition[Any] | None = None
    partitions_def: PartitionsDefinition[Any] | None = None


class BatchorTranslator:
    """Names and describes the assets :func:`~batchor_dagster.batchor_assets` builds.

    Defaults: ``<name>_batch`` for the submit asset and ``<name>_results`` for the
    results asset, both in the factory's ``group_name``, with its ``owners``,
    ``tags``, ``code_version`` and ``partitions_def``.
    """

    def get_asset_spec(self, props: BatchorAssetProps) -> AssetSpec:
        """The spec of one asset: override this to change anything about it."""
        return AssetSpec(
            key=self.get_asset_key(props),
            group_name=self.get_group_name(props),
            description=self.get_description(props),
            metadata=self.get_metadata(props),
            tags=self.get_tags(props),
            kinds=self.get_kinds(props),
            owners=list(props.owners),
            code_version=props.code_version,
            automation_condition=props.automation_condition,
            partitions_def=props.partitions_def,
        )

    def get_asset_key(self, props: BatchorAssetProps) -> AssetKey:
        suffix = "batch" if props.role == "submit" else "results"
        return AssetKey(f"{props.name}_{suffix}")

    def get_group_name(self, props: BatchorAssetProps) -> str | None:
        return props.group_name

    def get_description(self, props: BatchorAssetProps) -> str:
        output = (
            f"structured output {props.structured_output.__name__}"
            if props.structured_output is not None
            else "text output"
        )
        via = f"{props.provider} batch API" + (f" ({props.endpoint})" if props.endpoint else "")
        if props.role == "submit":
            return (
                f"Starts (or resumes) the batchor run that sends each row of "
                f"{props.upstream_key.to_user_string()} to {props.model} through the {via}, "
                f"{output}. Its metadata holds the run id; its observations the run's progress."
            )
        return (
            f"Terminal results of the {props.name} batchor run as Parquet: one row per item "
            f"with its status, {output}, error, attempts, tokens and lineage."
        )

    def get_metadata(self, props: BatchorAssetProps) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "batchor/provider": props.provider,
            "batchor/model": props.model,
        }
        if props.endpoint:
            metadata["batchor/endpoint"] = props.endpoint
        return metadata

    def get_tags(self, props: BatchorAssetProps) -> dict[str, str]:
        return dict(props.tags)

    def get_kinds(self, props: BatchorAssetProps) -> set[str]:
        return {props.provider} if props.role == "submit" else {props.provider, "parquet"}
