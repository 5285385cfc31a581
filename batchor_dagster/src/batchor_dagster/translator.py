"""``BatchorTranslator``: the asset keys, descriptions and metadata a batchor job gets.

Subclass it and override a ``get_*`` method to change one thing (as with
dagster-dbt's ``DagsterDbtTranslator``); :meth:`BatchorTranslator.get_asset_spec`
puts the answers together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from dagster import AssetKey, AssetSpec
from pydantic import BaseModel

AssetRole = Literal["submit", "results"]


@dataclass(frozen=True)
class BatchorAssetProps:
    """What the translator knows about one of a job's assets.

    ``role`` is ``"submit"`` (starts or resumes the run) or ``"results"`` (the
    Parquet results of a terminal run).
    """

    name: str
    role: AssetRole
    upstream_key: AssetKey
    model: str
    endpoint: str
    structured_output: type[BaseModel] | None
    group_name: str | None


class BatchorTranslator:
    """Names and describes the assets :func:`~batchor_dagster.batchor_assets` builds.

    Defaults: ``<name>_batch`` for the submit asset and ``<name>_results`` for the
    results asset, both in the factory's ``group_name``.
    """

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
        if props.role == "submit":
            return (
                f"Starts (or resumes) the batchor run that sends each row of "
                f"{props.upstream_key.to_user_string()} to {props.model} through the OpenAI "
                f"Batch API ({props.endpoint}, {output}). Its metadata holds the run id."
            )
        return (
            f"Terminal results of the {props.name} batchor run as Parquet: one row per item "
            f"with its status, {output}, error, attempts, tokens and lineage."
        )

    def get_metadata(self, props: BatchorAssetProps) -> dict[str, Any]:
        return {"batchor/model": props.model, "batchor/endpoint": props.endpoint}

    def get_tags(self, props: BatchorAssetProps) -> dict[str, str]:
        return {}

    def get_kinds(self, props: BatchorAssetProps) -> set[str]:
        return {"openai"} if props.role == "submit" else {"openai", "parquet"}

    def get_asset_spec(self, props: BatchorAssetProps) -> AssetSpec:
        """Everything above, as one :class:`~dagster.AssetSpec`."""
        return AssetSpec(
            key=self.get_asset_key(props),
            group_name=self.get_group_name(props),
            description=self.get_description(props),
            metadata=self.get_metadata(props),
            tags=self.get_tags(props),
            kinds=self.get_kinds(props),
        )
