"""Structured output for Anthropic: the JSON schema of a Pydantic model, as its API takes it.

Anthropic's structured outputs (``output_config.format`` of type ``json_schema``)
accept a subset of JSON Schema. :func:`anthropic_json_schema` shapes a model's
schema the way the ``anthropic`` SDK's ``transform_schema`` does, so the request
asks for what the SDK would ask for:

- every object gets ``additionalProperties: false``;
- ``oneOf`` becomes ``anyOf``;
- keywords the API does not take (``minimum``, ``maxLength``, ``pattern``,
  ``default``, a string ``format`` it does not know, ``minItems`` above 1, ...)
  move into the node's ``description`` (``"... {minimum: 1, maximum: 5}"``), so
  the model still reads them. batchor validates every reply against the model
  class itself, so those constraints still hold for what it returns.

What cannot be expressed raises :class:`~batchor.StructuredOutputSchemaError` with
the JSON pointer of the node: an object open to extra properties (a ``dict``
field, ``extra="allow"``), a recursive model, an ``enum`` or ``const`` that is not
a primitive, ``allOf`` beside a ``$ref``, a reference outside the schema.

This is batchor's own code, not the SDK's, so the schema a run stores (and its
fingerprint) does not change with the installed SDK version.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from batchor.errors import StructuredOutputSchemaError

SUPPORTED_STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
"""String ``format`` values Anthropic's structured outputs take."""

_KEPT = frozenset({"type", "description", "title", "required", "additionalProperties"})
"""Keywords carried over as they are (the structural ones are handled one by one)."""

_TYPED = frozenset({"type", "anyOf", "allOf", "enum", "const", "$ref"})
"""A node needs one of these: Anthropic takes no schema that allows anything."""


def anthropic_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema of ``model`` as Anthropic's structured outputs take it, or a
    :class:`StructuredOutputSchemaError` naming the offending node."""
    source = model.model_json_schema()
    _reject_recursion(source, model.__name__)
    return _Transformer(model.__name__).node(source, "#")


class _Transformer:
    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def fail(self, problem: str, path: str) -> StructuredOutputSchemaError:
        return StructuredOutputSchemaError(f"{self.model_name}: {problem} at {path}", path=path)

    def node(self, schema: Any, path: str) -> dict[str, Any]:
        if not isinstance(schema, dict):
            raise self.fail(f"expected a schema object, got {schema!r}", path)
        rest = dict(schema)
        shaped: dict[str, Any] = {}
        definitions = {**rest.pop("$defs", {}), **rest.pop("definitions", {})}
        if definitions:
            shaped["$defs"] = {
                name: self.node(child, f"{path}/$defs/{name}")
                for name, child in definitions.items()
            }
        reference = rest.pop("$ref", None)
        if reference is not None:
            if not isinstance(reference, str) or not reference.startswith("#/"):
                raise self.fail(f"only local references are supported, not {reference!r}", path)
            if "allOf" in rest:
                raise self.fail("allOf beside $ref is not supported", path)
            # as the SDK does: a reference stands alone (its siblings are dropped)
            shaped["$ref"] = reference.replace("#/definitions/", "#/$defs/")
            return shaped
        for keyword in ("enum", "const"):
            values = rest.get(keyword)
            if values is None:
                continue
            listed = values if keyword == "enum" else [values]
            if not isinstance(listed, list) or not all(_primitive(value) for value in listed):
                raise self.fail(f"{keyword} may hold only strings, numbers, booleans or null", path)
            shaped[keyword] = rest.pop(keyword)
            rest.pop("type", None)  # the literals say it (as the SDK sends them)
        variants = rest.pop("anyOf", None) or rest.pop("oneOf", None)
        if variants is not None:
            shaped["anyOf"] = [
                self.node(child, f"{path}/anyOf/{index}") for index, child in enumerate(variants)
            ]
        branches = rest.pop("allOf", None)
        if branches is not None:
            shaped["allOf"] = [
                self.node(child, f"{path}/allOf/{index}") for index, child in enumerate(branches)
            ]
        kind = rest.get("type")
        if kind == "object" or "properties" in rest:
            self._object(shaped, rest, path)
        elif kind == "array":
            self._array(shaped, rest, path)
        elif kind == "string" and rest.get("format") in SUPPORTED_STRING_FORMATS:
            shaped["format"] = rest.pop("format")
        self._describe(shaped, rest, keep=_KEPT)
        if not _TYPED.intersection(shaped):
            raise self.fail("every value needs a type (a field typed Any is not supported)", path)
        return shaped

    def _object(self, shaped: dict[str, Any], rest: dict[str, Any], path: str) -> None:
        extra = rest.pop("additionalProperties", False)
        if extra is not False:
            raise self.fail(
                "objects must be closed (additionalProperties: false); Anthropic takes no "
                "dict-typed fields or extra='allow'",
                path,
            )
        properties = rest.pop("properties", {})
        shaped["type"] = rest.pop("type", "object")
        shaped["properties"] = {
            name: self.node(child, f"{path}/properties/{name}")
            for name, child in properties.items()
        }
        shaped["additionalProperties"] = False
        if "required" in rest:
            shaped["required"] = list(rest.pop("required"))

    def _array(self, shaped: dict[str, Any], rest: dict[str, Any], path: str) -> None:
        shaped["type"] = rest.pop("type")
        if "items" in rest:
            shaped["items"] = self.node(rest.pop("items"), f"{path}/items")
        if "minItems" in rest:
            minimum = rest.pop("minItems")
            if minimum in (0, 1):
                shaped["minItems"] = minimum
            else:
                rest["minItems"] = minimum  # described last, as the SDK describes it

    @staticmethod
    def _describe(shaped: dict[str, Any], rest: dict[str, Any], *, keep: Any) -> None:
        """Carry over ``keep`` keywords; append every other one to the description."""
        for keyword in list(rest):
            if keyword in keep:
                shaped.setdefault(keyword, rest.pop(keyword))
        if rest:
            moved = "{" + ", ".join(f"{key}: {value}" for key, value in rest.items()) + "}"
            description = shaped.get("description")
            shaped["description"] = f"{description}\n\n{moved}" if description else moved


def _primitive(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _reject_recursion(schema: dict[str, Any], model_name: str) -> None:
    """Anthropic takes no recursive schema: a ``$ref`` reachable from its own definition."""
    definitions = {**schema.get("$defs", {}), **schema.get("definitions", {})}

    def references(node: Any, path: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/"):
                found.append((reference.rsplit("/", 1)[-1], path))
            for key, child in node.items():
                if key not in ("$defs", "definitions"):
                    found += references(child, f"{path}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                found += references(child, f"{path}/{index}")
        return found

    def visit(name: str, trail: tuple[str, ...]) -> None:
        for target, path in references(definitions.get(name), f"#/$defs/{name}"):
            if target in trail or target == name:
                raise StructuredOutputSchemaError(
                    f"{model_name}: recursive schemas are not supported ({target} refers to "
                    f"itself) at {path}",
                    path=path,
                )
            visit(target, (*trail, name))

    for name in definitions:
        visit(name, ())
