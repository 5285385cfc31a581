"""Structured-output replies: deterministic JSON instances that satisfy the schema."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from pydantic import BaseModel, Field

from batchor.testing import generate_schema_instance


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str
    postcode: Annotated[str, Field(min_length=5, max_length=5)]


class Person(BaseModel):
    name: str
    age: Annotated[int, Field(ge=18, le=120)]
    height: Annotated[float, Field(gt=0.5, lt=2.5)]
    favourite: Colour
    mood: Literal["calm", "busy"]
    email_verified: bool
    nickname: str | None
    address: Address
    previous: list[Address]
    tags: Annotated[list[str], Field(min_length=2, max_length=3)]
    born: date
    updated: datetime
    key: UUID
    kind: Literal["person"] = "person"


class Node(BaseModel):
    label: str
    children: list[Node]
    parent: Node | None


@pytest.mark.parametrize("model", [Person, Address, Node])
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31])
def test_instances_of_pydantic_schemas_validate(model: type[BaseModel], seed: int) -> None:
    instance = generate_schema_instance(model.model_json_schema(), seed)

    model.model_validate(instance)


def test_the_same_schema_and_seed_give_the_same_instance_and_seeds_vary_it() -> None:
    schema = Person.model_json_schema()

    assert generate_schema_instance(schema, 7) == generate_schema_instance(schema, 7)
    assert len({str(generate_schema_instance(schema, seed)) for seed in range(10)}) > 1


HANDWRITTEN: list[dict[str, Any]] = [
    {"const": 42},
    {"type": "object", "required": ["undeclared"]},
    {"enum": ["a", 1, None]},
    {"type": ["string", "null"]},
    {"type": "integer", "multipleOf": 5, "minimum": 12, "maximum": 40},
    {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 5},
    {"type": "number", "minimum": -1, "maximum": -0.5},
    {"type": "string", "format": "email"},
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2},
    {"type": "array", "items": {"type": "boolean"}, "minItems": 3, "maxItems": 3},
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"$ref": "#/definitions/b"},
        ],
        "definitions": {
            "b": {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}
        },
    },
    {
        "type": "object",
        "properties": {"choice": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/leaf"}]}},
        "required": ["choice"],
        "additionalProperties": False,
        "$defs": {"leaf": {"type": "object", "properties": {"x": {"const": "y"}}}},
    },
    {
        "$ref": "#/$defs/tree",
        "$defs": {
            "tree": {
                "type": "object",
                "properties": {
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/tree"}},
                    "up": {"anyOf": [{"$ref": "#/$defs/tree"}, {"type": "null"}]},
                },
                "required": ["kids", "up"],
            }
        },
    },
]


@pytest.mark.parametrize("schema", HANDWRITTEN)
def test_instances_of_handwritten_schemas_validate(schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")

    for seed in range(5):
        jsonschema.validate(generate_schema_instance(schema, seed), schema)
