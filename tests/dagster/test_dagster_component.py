"""``BatchorComponent`` in a defs folder, loaded the way ``dg`` and the code server load
it (Dagster's ``create_defs_folder_sandbox``): it builds the factory's assets, sensor
and checks, runs end to end against the local server, keeps two components apart,
applies ``translation`` and ``post_processing``, and reports bad YAML in Dagster's
own format, naming the file, line and attribute."""

import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster.components.testing import (
    DefsFolderSandbox,
    copy_code_to_file,
    create_defs_folder_sandbox,
)
from dagster.components.testing.test_cases import TestTranslation, test_cases

from batchor.testing import LocalBatchServer
from batchor_dagster import (
    COST_BUDGET_CHECK,
    COVERAGE_CHECK,
    FAILURE_RATE_CHECK,
    RUN_ID_METADATA_KEY,
    BatchorComponent,
    BatchorResource,
)

KEY_VARIABLE = "BATCHOR_COMPONENT_TEST_KEY"


def tickets_module() -> None:
    import dagster as dg
    import pyarrow as pa

    @dg.asset
    def support_tickets() -> pa.Table:
        return pa.table(
            {
                "ticket_id": ["T1", "T2", "T3"],
                "text": ["Where is my parcel?", "I was charged twice.", "Love it!"],
            }
        )

    @dg.asset
    def ticket_count() -> int:
        return 3


def models_module() -> None:
    from typing import Literal

    from pydantic import BaseModel

    class TicketTriage(BaseModel):
        topic: Literal["billing", "shipping", "other"]
        urgency: int


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[DefsFolderSandbox]:
    monkeypatch.setenv(KEY_VARIABLE, "sk-component-test")
    with create_defs_folder_sandbox() as folder:
        copy_code_to_file(tickets_module, folder.defs_folder_path / "tickets.py")
        copy_code_to_file(
            models_module, folder.project_root / "src" / folder.project_name / "models.py"
        )
        yield folder


def attributes(server: LocalBatchServer, **overrides: Any) -> dict[str, Any]:
    """The issue's example job, pointed at the local server."""
    return {
        "name": "ticket_triage",
        "upstream": "support_tickets",
        "item_id_column": "ticket_id",
        "prompt_template": "Triage this ticket: {text}",
        "system_prompt": "You triage support tickets.",
        "provider": {"kind": "openai", "model": "gpt-4.1-mini", "base_url": server.base_url},
        "api_key_env": KEY_VARIABLE,
        "storage": "sqlite:///batchor/runs.sqlite3",
        "results_dir": "batchor/parquet",
        "group_name": "support",
        **overrides,
    }


def write_component(
    sandbox: DefsFolderSandbox, path: str, attrs: dict[str, Any], **top_level: Any
) -> Path:
    return sandbox.scaffold_component(
        component_cls=BatchorComponent,
        defs_path=path,
        defs_yaml_contents={
            "type": "batchor_dagster.BatchorComponent",
            "attributes": attrs,
            **top_level,
        },
    )


def structured(sandbox: DefsFolderSandbox) -> str:
    return f"{sandbox.project_name}.models:TicketTriage"


def test_a_defs_yaml_job_materializes_end_to_end(
    sandbox: DefsFolderSandbox, server: LocalBatchServer
) -> None:
    write_component(
        sandbox, "ticket_triage", attributes(server, structured_output=structured(sandbox))
    )

    with sandbox.build_all_defs() as defs, dg.instance_for_test() as instance:
        result = defs.get_implicit_global_asset_job_def().execute_in_process(instance=instance)

    assert result.success
    (submitted,) = result.asset_materializations_for_node("ticket_triage_batch")
    (written,) = result.asset_materializations_for_node("ticket_triage_results")
    run_id = submitted.metadata[RUN_ID_METADATA_KEY].value
    assert written.metadata[RUN_ID_METADATA_KEY].value == run_id
    table = pq.read_table(written.metadata["path"].value)
    assert sorted(table.column("item_id").to_pylist()) == ["T1", "T2", "T3"]
    assert {"topic", "urgency"} <= set(table.column_names)
    assert Path(written.metadata["path"].value).is_relative_to(sandbox.project_root / "batchor")
    assert (sandbox.project_root / "batchor" / "runs.sqlite3").is_file()
    checks = {check.check_name: check.passed for check in result.get_asset_check_evaluations()}
    assert checks == {FAILURE_RATE_CHECK: True, COVERAGE_CHECK: True}


def test_the_component_builds_the_factorys_assets_sensor_checks_and_resources(
    sandbox: DefsFolderSandbox, server: LocalBatchServer
) -> None:
    write_component(sandbox, "ticket_triage", attributes(server, checks={"max_cost_usd": 5}))

    with sandbox.build_all_defs() as defs:
        keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
        sensor = defs.get_sensor_def("ticket_triage_sensor")
        results = defs.get_assets_def("ticket_triage_results")
        resource = defs.resources["batchor_ticket_triage"]

    assert keys == {
        "support_tickets",
        "ticket_count",
        "ticket_triage_batch",
        "ticket_triage_results",
    }
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {key.name for key in results.check_keys} == {
        FAILURE_RATE_CHECK,
        COVERAGE_CHECK,
        COST_BUDGET_CHECK,
    }
    assert isinstance(resource, BatchorResource)
    assert resource.storage == f"sqlite:///{sandbox.project_root}/batchor/runs.sqlite3"
    assert "sk-component-test" not in repr(resource)


def test_two_components_in_one_location_do_not_collide_on_resources(
    sandbox: DefsFolderSandbox, server: LocalBatchServer
) -> None:
    write_component(sandbox, "ticket_triage", attributes(server))
    write_component(sandbox, "ticket_summary", attributes(server, name="ticket_summary"))

    with sandbox.build_all_defs() as defs:
        resource_keys = set(defs.resources)

    assert {
        "batchor_ticket_triage",
        "batchor_parquet_io_manager_ticket_triage",
        "batchor_ticket_summary",
        "batchor_parquet_io_manager_ticket_summary",
    } <= resource_keys


def test_without_storage_it_uses_the_locations_batchor_resource(
    sandbox: DefsFolderSandbox, server: LocalBatchServer
) -> None:
    write_component(sandbox, "ticket_triage", attributes(server, storage=None))

    with sandbox.build_all_defs() as defs:
        submit = defs.get_assets_def("ticket_triage_batch")

    assert "batchor" in submit.required_resource_keys
    assert "batchor_ticket_triage" not in submit.required_resource_keys
    assert "batchor" not in (defs.resources or {})


def test_translation_and_post_processing_apply_to_both_assets(
    sandbox: DefsFolderSandbox, server: LocalBatchServer
) -> None:
    write_component(
        sandbox,
        "ticket_triage",
        attributes(
            server,
            translation={
                "key_prefix": "llm",
                "tags": {"team": "support"},
                "description": "{{ props.role }} asset of {{ props.name }}",
            },
        ),
        post_processing={"assets": [{"target": "*", "attributes": {"owners": ["team:support"]}}]},
    )

    with sandbox.build_all_defs() as defs:
        specs = {
            spec.key.to_user_string(): spec
            for spec in defs.resolve_all_asset_specs()
            if spec.key.has_prefix(["llm"])
        }
        sensor = defs.get_sensor_def("ticket_triage_sensor")

    assert sorted(specs) == ["llm/ticket_triage_batch", "llm/ticket_triage_results"]
    assert specs["llm/ticket_triage_batch"].description == "submit asset of ticket_triage"
    assert specs["llm/ticket_triage_results"].description == "results asset of ticket_triage"
    assert all(spec.tags["team"] == "support" for spec in specs.values())
    assert all(spec.owners == ["team:support"] for spec in specs.values())
    assert dg.AssetKey(["llm", "ticket_triage_results"]) in (
        sensor.asset_selection.resolve(defs.resolve_asset_graph())
    )


class ShoutingComponent(BatchorComponent):
    """A subclass that changes the spec and wraps the submit body."""

    def get_asset_spec(self, props: Any) -> dg.AssetSpec:
        return super().get_asset_spec(props).merge_attributes(tags={"role": props.role})

    def execute(self, context: Any, batchor: Any, upstream: Any) -> Iterator[Any]:
        context.log.info("SUBMITTING FROM A SUBCLASS")
        for result in super().execute(context, batchor, upstream):
            yield dg.MaterializeResult(
                metadata={**(result.metadata or {}), "wrapped": True},
                data_version=result.data_version,
            )


def test_a_subclass_overrides_get_asset_spec_and_execute(
    server: LocalBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "sk-component-test")
    monkeypatch.chdir(tmp_path)  # a test component tree's project root is the cwd
    component = ShoutingComponent.resolve_from_dict(attributes(server))

    defs = component.build_defs(dg.ComponentTree.for_test().load_context)
    assets = [*defs.assets, *sandbox_tickets()]  # type: ignore[list-item]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            assets,
            instance=instance,
            resources=defs.resources,
            selection=["support_tickets", "ticket_triage_batch"],
        )

    (event,) = result.asset_materializations_for_node("ticket_triage_batch")
    assert event.metadata["wrapped"].value is True
    submit = defs.get_assets_def("ticket_triage_batch")
    assert submit.specs_by_key[submit.key].tags["role"] == "submit"


def sandbox_tickets() -> list[dg.AssetsDefinition]:
    namespace: dict[str, Any] = {}
    exec(
        "import pyarrow as pa\nimport dagster as dg\n"
        "@dg.asset\ndef support_tickets() -> pa.Table:\n"
        "    return pa.table({'ticket_id': ['T1', 'T2'], 'text': ['a', 'b']})\n",
        namespace,
    )
    return [namespace["support_tickets"]]


BAD_YAML = [
    pytest.param(
        {"itm_id_column": "ticket_id"},
        "attributes.itm_id_column at",
        "Extra inputs are not permitted",
        id="unknown-attribute",
    ),
    pytest.param(
        {"item_id_column": None},
        "attributes.item_id_column at",
        "Field required",
        id="missing-item-id-column",
    ),
    pytest.param(
        {"structured_output": "no_such_package.models:TicketTriage"},
        "attributes.structured_output",
        "cannot import the structured-output class",
        id="structured-output-not-importable",
    ),
    pytest.param(
        {"upstream": "ticket_count"},
        "attributes.upstream",
        "ticket_count returns builtins.int",
        id="upstream-not-a-table",
    ),
    pytest.param(
        {"prompt_template": "Triage: {{ text }}"},
        "attributes.prompt_template",
        "not {{ column }}",
        id="jinja-in-the-prompt",
    ),
    pytest.param(
        {"prompt_column": "text"},
        "attributes",
        "give exactly one of prompt_template, prompt_column or build_prompt",
        id="two-prompt-sources",
    ),
    pytest.param(
        {"provider": {"kind": "openai", "model": "gpt-4.1-mini", "api_key": "sk-secret"}},
        "attributes.provider",
        "name it with api_key_env",
        id="api-key-in-the-file",
    ),
    pytest.param(
        {"provider": {"kind": "no_such_provider", "model": "m"}},
        "attributes.provider",
        "no_such_provider",
        id="unknown-provider-kind",
    ),
    pytest.param(
        {"sensor": {"interval_seconds": "soon"}},
        "attributes.sensor",
        "interval_seconds",
        id="wrong-type",
    ),
    pytest.param(
        {"name": "ticket-triage"},
        "attributes.name",
        "must be letters, digits and '_'",
        id="bad-name",
    ),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_YAML)
def test_bad_yaml_fails_at_load_naming_the_file_line_and_field(
    sandbox: DefsFolderSandbox,
    server: LocalBatchServer,
    change: dict[str, Any],
    field: str,
    message: str,
) -> None:
    attrs = {**attributes(server), **change}
    attrs = {name: value for name, value in attrs.items() if value is not None}
    write_component(sandbox, "ticket_triage", attrs)

    with pytest.raises(Exception) as failure, sandbox.build_all_defs():
        pass

    report = "".join(traceback.format_exception(failure.value))
    assert "ticket_triage/defs.yaml:" in report
    assert field in report
    assert message in report


class TestBatchorComponentTranslation(TestTranslation):
    """Dagster's own translation cases, on both assets. ``deps`` is left out: a spec's
    deps are kept as extra dependencies next to the structural ones (upstream, submit)."""

    @pytest.fixture(
        params=[case for case in test_cases if case.name != "deps"],
        ids=[case.name for case in test_cases if case.name != "deps"],
    )
    def translation_test_case(self, request: pytest.FixtureRequest) -> Any:
        return request.param

    def test_translation(
        self, attributes: dict[str, Any], assertion: Any, key_modifier: Any
    ) -> None:
        component = BatchorComponent.resolve_from_dict(
            {
                "name": "triage",
                "upstream": "support_tickets",
                "item_id_column": "ticket_id",
                "prompt_column": "text",
                "provider": {"kind": "openai", "model": "gpt-4.1-mini"},
                "translation": attributes,
            }
        )
        defs = component.build_defs(dg.ComponentTree.for_test().load_context)
        for name in ("triage_batch", "triage_results"):
            key = dg.AssetKey(name)
            if key_modifier is not None:
                key = key_modifier(key)
            assets_def = defs.get_assets_def(key)
            assert assertion(assets_def.specs_by_key[key]), name
