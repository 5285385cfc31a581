"""``dg scaffold defs batchor_dagster.BatchorComponent NAME``: a ``defs.yaml`` that loads.

.. code-block:: bash

    dg scaffold defs batchor_dagster.BatchorComponent ticket_triage \\
        --upstream support_tickets --item-id-column ticket_id --prompt-column text

writes ``defs/ticket_triage/defs.yaml`` with its own SQLite storage under
``.batchor/`` in the project, so ``dg check defs`` passes once the upstream
asset exists; edit the prompt, the model and the structured output from there.
"""

import dagster as dg
from pydantic import BaseModel, Field


class BatchorScaffoldParams(BaseModel):
    """The options of ``dg scaffold defs batchor_dagster.BatchorComponent NAME``."""

    upstream: str | None = Field(default=None, description="Asset key of the rows to send")
    item_id_column: str | None = Field(default=None, description="Column holding each row's id")
    prompt_column: str | None = Field(
        default=None, description="Column holding each prompt (default: a template over 'text')"
    )
    provider: str = Field(default="openai", description="Provider kind")
    model: str = Field(default="gpt-4.1-mini", description="Model name")


class BatchorComponentScaffolder(dg.Scaffolder[BatchorScaffoldParams]):
    """Writes a ``defs.yaml`` for one batch job."""

    @classmethod
    def get_scaffold_params(cls) -> type[BatchorScaffoldParams]:
        return BatchorScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[BatchorScaffoldParams]) -> None:
        params = request.params or BatchorScaffoldParams()
        name = "".join(ch if ch.isalnum() else "_" for ch in request.target_path.name)
        prompt = (
            {"prompt_column": params.prompt_column}
            if params.prompt_column
            else {"prompt_template": "Classify this text: {text}"}
        )
        dg.scaffold_component(
            request,
            {
                "name": name,
                "upstream": params.upstream or "my_upstream_table",
                "item_id_column": params.item_id_column or "id",
                **prompt,
                "system_prompt": "Answer briefly.",
                "provider": {"kind": params.provider, "model": params.model},
                "storage": "sqlite:///.batchor/runs.sqlite3",
                "results_dir": ".batchor/parquet",
            },
        )
