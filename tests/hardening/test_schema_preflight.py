"""Structured-output classes are checked against the whole strict-mode rule set before
anything is stored, with the offending node and what to change; what the rules
allow, recursion included, runs."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, HttpUrl, create_model

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ItemStatus,
    OpenAIProviderConfig,
    PromptParts,
    StructuredOutputSchemaError,
)


class Untyped(BaseModel):
    value: Any


class BareList(BaseModel):
    tags: list  # type: ignore[type-arg]


class Link(BaseModel):
    url: HttpUrl


class Cat(BaseModel):
    kind: Literal["cat"]


class Dog(BaseModel):
    kind: Literal["dog"]


class Tagged(BaseModel):
    pet: Cat | Dog = Field(discriminator="kind")


def nested(depth: int) -> type[BaseModel]:
    model: type[BaseModel] = create_model("Level0", leaf=(str, ...))
    for level in range(1, depth):
        model = create_model(f"Level{level}", inner=(model, ...))
    return model


Wide = create_model("Wide", **{f"field{number}": (int, ...) for number in range(5_001)})  # type: ignore[call-overload]
Choices = create_model("Choices", pick=(Literal[tuple(f"c{n}" for n in range(1_001))], ...))  # type: ignore[call-overload,misc]

REFUSED: list[tuple[type[BaseModel], str, str]] = [
    (Untyped, "#/properties/value", "field 'value' (#/properties/value) has no type"),
    (BareList, "#/properties/tags/items", "use a concrete type"),
    (Link, "#/properties/url", "format 'uri' at field 'url' (#/properties/url) is not supported"),
    (Tagged, "#/properties/pet", "use a plain union (A | B) without a discriminator"),
    (nested(12), "#/$defs/Level1/properties/inner", "nests deeper than 10 levels"),
    (Wide, "#", "5,001 object properties; strict mode allows 5,000"),
    (Choices, "#", "1,001 enum values; strict mode allows 1,000"),
]


@pytest.mark.parametrize(
    ("model", "path", "message"), REFUSED, ids=[model.__name__ for model, _, _ in REFUSED]
)
def test_a_class_strict_mode_refuses_is_refused_naming_the_node(
    model: type[BaseModel], path: str, message: str
) -> None:
    config = OpenAIProviderConfig(model="gpt-4.1", api_key="sk-test")

    with pytest.raises(StructuredOutputSchemaError) as refused:
        config.output_schema(model)

    assert message in str(refused.value)
    assert refused.value.path.startswith(path)


class Node(BaseModel):
    name: str
    children: list[Node]


def test_a_recursive_class_runs_and_validates(provider_config: OpenAIProviderConfig) -> None:
    run = BatchRunner(storage="memory").run_and_wait(
        BatchJob(
            items=[BatchItem("tree", "draw a tree")],
            build_prompt=lambda item: PromptParts(prompt=item.payload),
            provider_config=provider_config,
            structured_output=Node,
        )
    )

    (result,) = run.results()
    assert result.status is ItemStatus.COMPLETED and isinstance(result.output, Node)
