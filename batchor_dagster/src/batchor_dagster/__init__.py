"""Dagster integration for batchor: a component for ``defs.yaml``, a resource, an
asset factory with its sensor, a Parquet IO manager and a run-control job.

In YAML (see :class:`BatchorComponent`):

.. code-block:: yaml

    type: batchor_dagster.BatchorComponent
    attributes:
      name: ticket_triage
      upstream: support_tickets
      item_id_column: ticket_id
      prompt_template: "Triage this ticket: {text}"
      provider: {kind: openai, model: gpt-4.1-mini}
      storage: sqlite:///.batchor/runs.sqlite3

In Python:

.. code-block:: python

    from dagster import Definitions, EnvVar
    from batchor_dagster import BatchorParquetIOManager, BatchorResource, batchor_assets

    triage = batchor_assets(
        name="ticket_triage",
        upstream=support_tickets,
        item_id_column="ticket_id",
        build_prompt=build_prompt,
        provider_config=OpenAIProviderConfig(model="gpt-4.1-mini"),
        structured_output=TicketTriage,
    )
    defs = Definitions(
        assets=[support_tickets, *triage.assets],
        sensors=[triage.sensor],
        resources={
            "batchor": BatchorResource(storage="runs.sqlite3", api_key=EnvVar("OPENAI_API_KEY")),
            "batchor_parquet_io_manager": BatchorParquetIOManager(),
        },
    )
"""

# Only BatchorComponent may be a Component here: dg lists every Component reachable
# as an attribute of this module (the dagster_dg_cli.registry_modules entry point).
from batchor_dagster.assets import (
    BatchorAssets,
    BatchorResultsConfig,
    batchor_assets,
)
from batchor_dagster.checks import COST_BUDGET_CHECK, COVERAGE_CHECK, FAILURE_RATE_CHECK
from batchor_dagster.component import BatchorComponent
from batchor_dagster.control import (
    BatchorRunControlConfig,
    batchor_run_control_job,
    build_run_control_job,
)
from batchor_dagster.io_manager import BatchorParquetIOManager
from batchor_dagster.materializations import RUN_ID_METADATA_KEY, RUN_ID_TAG, RUN_IDS_METADATA_KEY
from batchor_dagster.resource import BatchorResource
from batchor_dagster.translator import BatchorAssetProps, BatchorTranslator

__all__ = [
    "COST_BUDGET_CHECK",
    "COVERAGE_CHECK",
    "FAILURE_RATE_CHECK",
    "RUN_IDS_METADATA_KEY",
    "RUN_ID_METADATA_KEY",
    "RUN_ID_TAG",
    "BatchorAssetProps",
    "BatchorAssets",
    "BatchorComponent",
    "BatchorParquetIOManager",
    "BatchorResource",
    "BatchorResultsConfig",
    "BatchorRunControlConfig",
    "BatchorTranslator",
    "batchor_assets",
    "batchor_run_control_job",
    "build_run_control_job",
]
