"""Structured output for OpenAI: the strict-mode JSON schema of a Pydantic model.

OpenAI's strict mode accepts a subset of JSON Schema: the root is an object,
every object lists all its properties in ``required`` and sets
``additionalProperties: false``, and only some keywords are allowed. Pydantic
models do not close their objects by default, so :func:`strict_json_schema`
closes them and then checks every rule, raising
:class:`StructuredOutputSchemaError` with the JSON pointer of the first node
that breaks one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from batchor.errors import StructuredOutputSchemaError

_ALLOWED_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "anyOf", "$ref", "$defs", "definitions", "description", "title",
        "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "multipleOf", "minItems", "maxItems", "minLength", "maxLength",
    }
)  # fmt: skip
_MAX_NESTING_DEPTH = 10


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The strict-mode JSON schema of ``model``, or a :class:`StructuredOutputSchemaError`."""
    schema = model.model_json_schema()
    _close_objects(schema)
    if schema.get("type") != "object":
        raise StructuredOutputSchemaError(
            f"{model.__name__}: the root schema must be an object, got {schema.get('type')!r}",
            path="#",
        )
    _check_node(schema, "#", 0, model.__name__)
    return schema


def _close_objects(node: Any) -> None:
    """Add ``additionalProperties: false`` where a model left it unset."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for value in node:
            _close_objects(value)


def _check_node(node: Any, path: str, depth: int, model_name: str) -> None:
    if not isinstance(node, dict):
        return
    if depth > _MAX_NESTING_DEPTH:
        raise StructuredOutputSchemaError(
            f"{model_name}: schema nests deeper than {_MAX_NESTING_DEPTH} levels at {path}",
            path=path,
        )
    unsupported = sorted(set(node) - _ALLOWED_KEYWORDS)
    if unsupported:
        hint = ""
        if "default" in unsupported:
            hint = " (a field with a default is optional; strict mode needs every field required)"
        raise StructuredOutputSchemaError(
            f"{model_name}: unsupported keyword(s) {', '.join(unsupported)} at {path}{hint}",
            path=path,
        )
    if node.get("type") == "object" or "properties" in node:
        if node.get("additionalProperties") is not False:
            raise StructuredOutputSchemaError(
                f"{model_name}: object at {path} must be closed (additionalProperties: false); "
                "remove extra='allow' or dict-typed fields",
                path=path,
            )
        properties = node.get("properties", {})
        missing = [name for name in properties if name not in node.get("required", [])]
        if missing:
            missing_path = f"{path}/properties/{missing[0]}"
            raise StructuredOutputSchemaError(
                f"{model_name}: property {missing[0]!r} at {missing_path} must be required "
                "(strict mode has no optional fields); use `field: T | None` without a default",
                path=missing_path,
            )
        for name, child in properties.items():
            _check_node(child, f"{path}/properties/{name}", depth + 1, model_name)
    for key in ("$defs", "definitions"):
        for name, child in node.get(key, {}).items():
            _check_node(child, f"{path}/{key}/{name}", depth, model_name)
    if "items" in node:
        _check_node(node["items"], f"{path}/items", depth + 1, model_name)
    for index, child in enumerate(node.get("anyOf", [])):
        _check_node(child, f"{path}/anyOf/{index}", depth, model_name)
