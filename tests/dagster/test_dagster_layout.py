"""The pure parts: run ids, the results table layout, where Parquet files go, the
checks' arithmetic and the token keys."""

import datetime as dt
import decimal
import enum
import json
import re
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pytest
from dagster import Definitions, asset
from pydantic import BaseModel

from batchor import (
    ConfigurationError,
    ItemError,
    ItemResult,
    ItemStatus,
    OpenAIProviderConfig,
    PromptParts,
    RunControlState,
    RunStatus,
    RunSummary,
    TokenUsage,
)
from batchor.providers.base import OutputKind
from batchor.results_table import ResultsTableLayout, arrow_type_for
from batchor_dagster import BatchorParquetIOManager, BatchorResource, batchor_assets
from batchor_dagster.checks import ResultChecks, RunResults, coverage
from batchor_dagster.inputs import deterministic_run_id, json_safe
from batchor_dagster.io_manager import ParquetTableIOManager
from batchor_dagster.metadata import usage_metadata

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    city: str
    zip_code: int | None


class Extraction(BaseModel):
    name: str
    age: int
    score: float
    active: bool
    color: Color
    label: Literal["a", "b"]
    tags: list[str]
    address: Address
    extra: dict[str, Any]
    status: str


def run_id(**overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "name": "triage",
        "partition_key": None,
        "job": {"model": "gpt-4.1"},
        "source_identity": None,
        "items_digest": "abc",
    }
    return deterministic_run_id(**{**arguments, **overrides})


def test_run_ids_are_deterministic_and_valid() -> None:
    assert run_id() == run_id()
    assert RUN_ID.match(run_id())
    assert run_id(items_digest="abd") != run_id()
    assert run_id(job={"model": "gpt-4.1-mini"}) != run_id()


@pytest.mark.parametrize(
    "partition", ["2024-01-01", "emea|2024-01-01", "ünïcode/with spaces", "x" * 300, "..."]
)
def test_run_ids_name_the_partition_and_stay_valid(partition: str) -> None:
    identifier = run_id(partition_key=partition)

    assert RUN_ID.match(identifier), identifier
    assert identifier != run_id(partition_key=partition + "!")


def test_run_ids_of_partitions_that_look_alike_differ() -> None:
    assert run_id(partition_key="a/b") != run_id(partition_key="a b")


def test_json_safe_converts_what_json_cannot_hold() -> None:
    value = {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5),
        "day": dt.date(2024, 1, 2),
        "amount": decimal.Decimal("1.50"),
        "raw": b"\x00\x01",
        "nested": [dt.time(1, 2)],
    }

    assert json_safe(value) == {
        "when": "2024-01-02T03:04:05",
        "day": "2024-01-02",
        "amount": "1.50",
        "raw": "AAE=",
        "nested": ["01:02:00"],
    }


def test_structured_fields_become_typed_columns() -> None:
    layout = ResultsTableLayout(Extraction)

    types = {field.name: field.type for field in layout.schema}

    assert types["name"] == pa.string()
    assert types["age"] == pa.int64()
    assert types["score"] == pa.float64()
    assert types["active"] == pa.bool_()
    assert types["color"] == pa.string()
    assert types["label"] == pa.string()
    assert types["tags"] == pa.list_(pa.string())
    assert types["address"] == pa.struct([("city", pa.string()), ("zip_code", pa.int64())])
    assert types["extra"] == pa.string()
    assert types["output_status"] == pa.string()
    assert types["status"] == pa.string()


def test_a_result_row_holds_output_error_usage_and_lineage() -> None:
    layout = ResultsTableLayout(Extraction)
    output = Extraction(
        name="Ada",
        age=36,
        score=0.5,
        active=True,
        color=Color.RED,
        label="a",
        tags=["x"],
        address=Address(city="London", zip_code=None),
        extra={"k": [1]},
        status="ok",
    )
    completed = ItemResult(
        item_id="i1",
        status=ItemStatus.COMPLETED,
        output=output,
        output_text=output.model_dump_json(),
        error=None,
        attempts=1,
        usage=TokenUsage(10, 5),
        metadata={"batchor_lineage": {"source_ref": "s", "source_item_index": 0}, "team": "a"},
        sequence=1,
    )
    failed = ItemResult(
        item_id="i2",
        status=ItemStatus.FAILED,
        output=None,
        output_text=None,
        error=ItemError("invalid_prompt", "rejected", False),
        attempts=2,
        usage=TokenUsage(),
        metadata={},
        sequence=2,
    )

    rows = layout.table([completed, failed], partition_key="p1").to_pylist()

    assert rows[0]["address"] == {"city": "London", "zip_code": None}
    assert rows[0]["extra"] == '{"k": [1]}'
    assert rows[0]["output_status"] == "ok" and rows[0]["status"] == "completed"
    assert rows[0]["lineage"]["partition_id"] == "p1"
    assert rows[0]["metadata"] == '{"team": "a"}'
    assert rows[1]["name"] is None and rows[1]["error_code"] == "invalid_prompt"
    assert rows[1]["attempts"] == 2 and rows[1]["metadata"] is None


def test_embedding_jobs_write_a_vector_column() -> None:
    layout = ResultsTableLayout(None, OutputKind.EMBEDDING)

    assert layout.schema.field("embedding").type == pa.list_(pa.float64())


def test_unions_of_several_types_are_json_text() -> None:
    assert arrow_type_for(int | str) is None
    assert arrow_type_for(int | None) == pa.int64()


@pytest.mark.parametrize(
    ("key", "partition", "expected"),
    [
        (["triage_results"], None, "triage_results.parquet"),
        (["team", "triage_results"], None, "team/triage_results.parquet"),
        (["triage_results"], "2024-01-01", "triage_results/2024-01-01.parquet"),
        (["triage_results"], "emea|2024/01", "triage_results/emea%7C2024%2F01.parquet"),
        (["triage_results"], "..", "triage_results/%2E%2E.parquet"),
    ],
)
def test_parquet_files_are_named_after_key_and_partition(
    key: list[str], partition: str | None, expected: str
) -> None:
    manager = ParquetTableIOManager(Path("/base"))

    assert manager.path_for(key, partition) == Path("/base") / expected


def test_the_resource_repr_hides_the_api_key() -> None:
    resource = BatchorResource(storage="runs.sqlite3", api_key="sk-very-secret")

    assert "sk-very-secret" not in repr(resource) and "sk-very-secret" not in str(resource)


@pytest.mark.parametrize(
    ("storage", "artifact_root", "message"),
    [
        ("memory", None, "cannot be 'memory'"),
        ("postgresql+psycopg://db/batchor", None, "artifact_root is required with PostgreSQL"),
        ("mysql://db/batchor", None, "unsupported storage scheme 'mysql'"),
    ],
)
def test_the_resource_rejects_storage_other_processes_cannot_share(
    storage: str, artifact_root: str | None, message: str
) -> None:
    resource = BatchorResource(storage=storage, artifact_root=artifact_root)

    with pytest.raises(ConfigurationError, match=message):
        resource.get_runner()


def test_the_resource_fills_in_key_and_base_url_but_never_stores_the_key() -> None:
    resource = BatchorResource(
        storage="runs.sqlite3", api_key="sk-very-secret", base_url="http://proxy/v1"
    )

    config = resource.provider_config(OpenAIProviderConfig(model="gpt-4.1-mini"))

    assert config.api_key == "sk-very-secret" and config.base_url == "http://proxy/v1"
    assert "sk-very-secret" not in json.dumps(config.model_dump(mode="json"))


def test_the_factory_output_merges_into_definitions() -> None:
    @asset
    def rows() -> list[dict[str, str]]:
        return [{"id": "1", "text": "hi"}]

    job = batchor_assets(
        name="merge_check",
        upstream=rows,
        item_id_column="id",
        build_prompt=lambda item: PromptParts(prompt=item.payload["text"]),
        provider_config=OpenAIProviderConfig(model="gpt-4.1-mini"),
    )

    resources = {
        "batchor": BatchorResource(storage="runs.sqlite3"),
        "batchor_parquet_io_manager": BatchorParquetIOManager(),
    }
    defs = Definitions.merge(Definitions(assets=[rows], resources=resources), job.to_definitions())

    assert [sensor.name for sensor in defs.sensors or []] == ["merge_check_sensor"]
    assert {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()} == {
        "rows",
        "merge_check_batch",
        "merge_check_results",
    }


@pytest.mark.parametrize("name", ["", "has space", "dash-ed", "ünï"])
def test_job_names_must_be_usable_as_asset_and_sensor_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="must be letters, digits and '_'"):
        batchor_assets(
            name=name,
            upstream="rows",
            item_id_column="id",
            build_prompt=lambda item: PromptParts(prompt="x"),
            provider_config=OpenAIProviderConfig(model="gpt-4.1-mini"),
        )


def terminal_summary(total: int, failed: int = 0, cost: float | None = 0.5) -> RunSummary:
    return RunSummary(
        run_id="r",
        status=RunStatus.COMPLETED,
        control_state=RunControlState.RUNNING,
        model="gpt-4.1-mini",
        total_items=total,
        pending_items=0,
        submitted_items=0,
        completed_items=total - failed,
        failed_items=failed,
        batches_in_flight=0,
        batches_total=1,
        input_tokens=10,
        output_tokens=5,
        estimated_cost_usd=cost,
        ingest_complete=True,
    )


def test_the_coverage_check_fails_when_an_upstream_row_has_no_result() -> None:
    table = pa.table({"item_id": ["a", "b", "b"]})
    run = RunResults(run_id="r", summary=terminal_summary(3), table=table, upstream_rows=4)

    check = coverage([run])

    assert not check.passed
    assert check.metadata["missing_items"].value == 2
    assert check.metadata["duplicate_items"].value == 1


@pytest.mark.parametrize(("cost", "passed"), [(0.5, True), (1.5, False), (None, False)])
def test_the_cost_budget_check_fails_over_budget_or_without_a_price(
    cost: float | None, passed: bool
) -> None:
    run = RunResults(
        run_id="r", summary=terminal_summary(1, cost=cost), table=pa.table({}), upstream_rows=1
    )

    assert ResultChecks(max_cost_usd=1.0).cost_budget([run]).passed is passed


@pytest.mark.parametrize(
    ("provider", "keys"),
    [
        ("openai", {"openai.m.calls", "openai.m.prompt_tokens", "openai.m.completion_tokens"}),
        ("anthropic", {"anthropic.calls", "anthropic.input_tokens", "anthropic.output_tokens"}),
        ("gemini", {"gemini.calls", "gemini.prompt_token_count", "gemini.total_token_count"}),
        ("other", {"other.m.calls", "other.m.input_tokens", "other.m.output_tokens"}),
    ],
)
def test_token_usage_uses_the_keys_of_each_providers_dagster_integration(
    provider: str, keys: set[str]
) -> None:
    usage = usage_metadata(provider, "m", calls=2, input_tokens=10, output_tokens=5)

    assert keys <= set(usage)
