"""Structured-output schemas are checked against OpenAI strict mode before submission."""

import pytest
from pydantic import BaseModel, ConfigDict

from batchor import StructuredOutputSchemaError
from batchor.providers.schema import strict_json_schema


class Label(BaseModel):
    name: str
    score: float


class Nested(BaseModel):
    labels: list[Label]
    note: str | None


class WithDefault(BaseModel):
    label: str
    score: float = 0.0


class OpenObject(BaseModel):
    model_config = ConfigDict(extra="allow")
    label: str


class FreeForm(BaseModel):
    attributes: dict[str, str]


def test_models_are_closed_and_accepted() -> None:
    schema = strict_json_schema(Nested)
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Label"]["additionalProperties"] is False
    assert schema["required"] == ["labels", "note"]


def test_a_field_with_a_default_is_rejected_with_its_path() -> None:
    with pytest.raises(StructuredOutputSchemaError, match="must be required") as error:
        strict_json_schema(WithDefault)
    assert error.value.path == "#/properties/score"


def test_an_open_object_is_rejected() -> None:
    with pytest.raises(StructuredOutputSchemaError, match="must be closed"):
        strict_json_schema(OpenObject)


def test_a_free_form_mapping_is_rejected_with_its_path() -> None:
    with pytest.raises(StructuredOutputSchemaError) as error:
        strict_json_schema(FreeForm)
    assert error.value.path == "#/properties/attributes"
