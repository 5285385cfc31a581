"""What the Dagster tests share: a structured-output model, upstream assets, a job
factory with test defaults, and a helper that ticks a sensor like the daemon does.

The model lives here, at module level, because batchor imports it by module path
when it reads results back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import pyarrow as pa
from dagster import (
    AssetsDefinition,
    DagsterInstance,
    Definitions,
    RunRequest,
    SensorDefinition,
    build_sensor_context,
)
from pydantic import BaseModel

from batchor import BatchItem, OpenAIProviderConfig, PromptParts
from batchor_dagster import BatchorAssets, batchor_assets

TOPICS = ["billing", "shipping", "returns"]
TEST_API_KEY = "sk-test-dagster-secret-5f4e3d2c1b"


class TicketTriage(BaseModel):
    """The structured output the tests ask for."""

    topic: Literal["billing", "shipping", "returns"]
    urgency: int
    summary: str


def ticket_rows(count: int, *, prefix: str = "t") -> list[dict[str, Any]]:
    return [
        {
            "ticket_id": f"{prefix}{number:03d}",
            "text": f"Ticket {number} is about {TOPICS[number % len(TOPICS)]}.",
            "priority": number % 4,
        }
        for number in range(count)
    ]


def ticket_table(count: int, *, prefix: str = "t") -> pa.Table:
    return pa.Table.from_pylist(ticket_rows(count, prefix=prefix))


def build_prompt(item: BatchItem) -> PromptParts:
    return PromptParts(
        prompt=item.payload["text"], system_prompt="Classify the ticket: topic, urgency, summary."
    )


def triage_job(
    upstream: AssetsDefinition,
    *,
    name: str = "triage",
    structured: bool = True,
    **options: Any,
) -> BatchorAssets:
    """``batchor_assets`` over ``upstream`` with the tests' prompt and model."""
    return batchor_assets(
        name=name,
        upstream=upstream,
        item_id_column="ticket_id",
        build_prompt=build_prompt,
        provider_config=OpenAIProviderConfig(model="gpt-4.1-mini"),
        structured_output=TicketTriage if structured else None,
        **options,
    )


def tick(
    sensor: SensorDefinition,
    *,
    instance: DagsterInstance,
    resources: dict[str, Any],
    definitions: Definitions,
    cursor: str | None,
) -> tuple[list[RunRequest], str | None, str | None]:
    """One evaluation: ``(run requests, new cursor, skip message)``."""
    with build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, definitions=definitions
    ) as context:
        data = sensor.evaluate_tick(context)
    return list(data.run_requests or []), data.cursor, data.skip_message


def tick_until_requested(
    sensor: SensorDefinition,
    *,
    instance: DagsterInstance,
    resources: dict[str, Any],
    definitions: Definitions,
    cursor: str | None = None,
    expected: int = 1,
    max_ticks: int = 20,
    between_ticks: Callable[[], None] | None = None,
) -> tuple[list[RunRequest], str | None]:
    """Tick until ``expected`` run requests have been made in total; returns them and
    the cursor after the tick that made the last one."""
    requests: list[RunRequest] = []
    for _ in range(max_ticks):
        made, cursor, _skip = tick(
            sensor, instance=instance, resources=resources, definitions=definitions, cursor=cursor
        )
        requests += made
        if len(requests) >= expected:
            return requests, cursor
        if between_ticks is not None:
            between_ticks()
    raise AssertionError(f"{len(requests)} run requests after {max_ticks} ticks: {requests}")


def keys(assets: Sequence[AssetsDefinition]) -> list[str]:
    return [asset.key.to_user_string() for asset in assets]
