"""Structured output for OpenAI: the strict-mode JSON schema of a Pydantic model.

OpenAI's strict mode accepts a subset of JSON Schema, and refuses a batch whose
requests break it only once the batch runs. :func:`strict_json_schema` closes
the objects Pydantic leaves open, then checks the whole rule set up front,
raising :class:`StructuredOutputSchemaError` with the JSON pointer of the first
node that breaks one and what to change:

- the root is an object (a recursive root model is inlined, its ``$defs`` kept);
- every node has a ``type`` (one of ``string``, ``number``, ``integer``,
  ``boolean``, ``object``, ``array``, ``null``, or a list of them), unless it is an
  ``anyOf``, a ``$ref``, an ``enum`` or a ``const``: ``typing.Any`` has none;
- every object sets ``additionalProperties: false`` and lists all its properties
  in ``required``; every array has ``items``;
- only the supported keywords appear, and ``format`` is one of the supported
  formats;
- ``$ref`` points into the schema's own ``$defs`` (or ``#`` for the root);
  recursion through it is allowed;
- at most 10 levels of nesting (through ``$ref``, recursion aside), 5,000 object
  properties in all, 1,000 enum values in all, 120,000 characters of property
  names, definition names, enum and const values, and 15,000 characters of
  values in any enum of more than 250 strings.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, PydanticUserError

from batchor.errors import StructuredOutputSchemaError

_ALLOWED_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "anyOf", "$ref", "$defs", "definitions", "description", "title",
        "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "multipleOf", "minItems", "maxItems", "minLength", "maxLength",
    }
)  # fmt: skip
_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_PLAIN_UNION = "use a plain union (A | B) without a discriminator: strict mode takes anyOf only"
_KEYWORD_HINTS = {
    "default": "a field with a default is optional; strict mode needs every field required",
    "oneOf": _PLAIN_UNION,
    "discriminator": _PLAIN_UNION,
    "allOf": "strict mode takes no allOf: write the fields out in one model",
    "prefixItems": "tuples are not supported: use list[T]",
    "uniqueItems": "sets are not supported: use list[T]",
    "examples": "remove the examples (json_schema_extra or Field(examples=...))",
    "patternProperties": "free-form mappings are not supported: use a model with named fields",
    "propertyNames": "free-form mappings are not supported: use a model with named fields",
    "not": "strict mode takes no 'not'",
}
MAX_NESTING_DEPTH = 10
MAX_PROPERTIES = 5_000
MAX_ENUM_VALUES = 1_000
MAX_SCHEMA_STRING_CHARS = 120_000
LARGE_ENUM_VALUES = 250
MAX_LARGE_ENUM_CHARS = 15_000


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The strict-mode JSON schema of ``model``, or a :class:`StructuredOutputSchemaError`."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or model is BaseModel:
        raise StructuredOutputSchemaError(
            f"the structured output must be a subclass of pydantic.BaseModel with fields, "
            f"got {model!r}"
        )
    name = model.__name__
    try:
        schema = model.model_json_schema()
    except PydanticUserError as exc:
        first = str(exc).splitlines()[0]
        raise StructuredOutputSchemaError(
            f"{name}: Pydantic cannot give its JSON schema ({first}); use JSON-compatible "
            "field types (str, int, float, bool, lists, nested models)"
        ) from None
    schema = _root_inlined(schema, name)
    _close_objects(schema)
    if schema.get("type") != "object":
        what = "a union (anyOf)" if "anyOf" in schema else repr(schema.get("type"))
        raise StructuredOutputSchemaError(
            f"{name}: the root schema must be an object, got {what}; wrap the value in a "
            "model with one field",
            path="#",
        )
    rules = _StrictRules(schema, name)
    rules.check_node(schema, "#", 0, ())
    rules.check_totals()
    return schema


def _root_inlined(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A root that is only a ``$ref`` (Pydantic's form for a recursive model) replaced
    by the definition it names; ``$defs`` stay, so references to it still resolve."""
    reference = schema.get("$ref")
    if not isinstance(reference, str) or "type" in schema:
        return schema
    target = _resolve(schema, reference)
    if target is None:
        raise StructuredOutputSchemaError(
            f"{name}: the root $ref {reference!r} names no definition", path="#"
        )
    inlined = {key: value for key, value in schema.items() if key != "$ref"}
    inlined.update(copy.deepcopy(target))
    return inlined


def _resolve(root: dict[str, Any], reference: str) -> dict[str, Any] | None:
    """The node a local ``$ref`` names (``#``, ``#/$defs/Name``), or None."""
    if reference == "#":
        return root
    if not reference.startswith("#/"):
        return None
    node: Any = root
    for part in reference[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


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


def _where(path: str) -> str:
    """``field 'score' (#/properties/score)`` for a property, else the pointer."""
    parent, _, last = path.rpartition("/")
    if parent.endswith("/properties") or parent == "#/properties":
        return f"field {last!r} ({path})"
    return path


class _StrictRules:
    """One check of a schema: the per-node rules while walking it through its
    references, then the totals over the schema as written."""

    def __init__(self, root: dict[str, Any], model_name: str) -> None:
        self.root = root
        self.model_name = model_name
        self._checked: set[tuple[int, int]] = set()

    def fail(self, message: str, path: str) -> StructuredOutputSchemaError:
        return StructuredOutputSchemaError(f"{self.model_name}: {message}", path=path)

    def check_node(self, node: Any, path: str, depth: int, refs: tuple[str, ...]) -> None:
        """Check ``node`` at ``depth`` levels of nesting; ``refs`` are the references
        being followed (a reference to one of them is recursion, which is allowed)."""
        if not isinstance(node, dict):
            raise self.fail(f"{path} is not a schema object; give the field a type", path)
        if depth > MAX_NESTING_DEPTH:
            raise self.fail(
                f"the schema nests deeper than {MAX_NESTING_DEPTH} levels at {path}; "
                "flatten the model",
                path,
            )
        key = (id(node), depth)
        if key in self._checked:
            return
        self._checked.add(key)
        self._check_keywords(node, path)
        reference = node.get("$ref")
        if reference is not None:
            self._check_reference(reference, path, depth, refs)
        if "anyOf" in node:
            options = node["anyOf"]
            if not isinstance(options, list) or not options:
                raise self.fail(f"anyOf at {path} must list at least one schema", path)
            for index, option in enumerate(options):
                self.check_node(option, f"{path}/anyOf/{index}", depth, refs)
        if reference is None and "anyOf" not in node:
            self._check_type(node, path, depth, refs)
        for defs_key in ("$defs", "definitions"):
            for name, child in (node.get(defs_key) or {}).items():
                self.check_node(child, f"{path}/{defs_key}/{name}", depth, refs)

    def _check_keywords(self, node: dict[str, Any], path: str) -> None:
        unsupported = sorted(set(node) - _ALLOWED_KEYWORDS)
        if unsupported:
            hints = dict.fromkeys(
                _KEYWORD_HINTS[keyword] for keyword in unsupported if keyword in _KEYWORD_HINTS
            )
            hint = f" ({'; '.join(hints)})" if hints else ""
            raise self.fail(
                f"unsupported keyword(s) {', '.join(unsupported)} at {path}{hint}", path
            )
        fmt = node.get("format")
        if fmt is not None and fmt not in _FORMATS:
            raise self.fail(
                f"format {fmt!r} at {_where(path)} is not supported in strict mode (supported: "
                f"{', '.join(sorted(_FORMATS))}); make the field a plain str and check it "
                "after reading the results",
                path,
            )

    def _check_reference(
        self, reference: Any, path: str, depth: int, refs: tuple[str, ...]
    ) -> None:
        target = _resolve(self.root, reference) if isinstance(reference, str) else None
        if target is None:
            raise self.fail(
                f"$ref {reference!r} at {path} must point into this schema's $defs", path
            )
        if reference in refs or reference == "#":
            return  # recursion: allowed, and checked where the definition is
        self.check_node(target, reference, depth, (*refs, reference))

    def _check_type(
        self, node: dict[str, Any], path: str, depth: int, refs: tuple[str, ...]
    ) -> None:
        declared = node.get("type")
        if declared is None:
            if "enum" in node or "const" in node:
                return
            raise self.fail(
                f"{_where(path)} has no type (typing.Any, object, or an unparameterised "
                "list or dict give none); strict mode needs one: use a concrete type such "
                "as str, int, float, bool, list[T] or a nested model",
                path,
            )
        names = [declared] if isinstance(declared, str) else declared
        if not isinstance(names, list) or not names or any(name not in _TYPES for name in names):
            raise self.fail(
                f"type {declared!r} at {path} is not one of {', '.join(sorted(_TYPES))}", path
            )
        if "object" in names or "properties" in node:
            self._check_object(node, path, depth, refs)
        if "array" in names:
            if not isinstance(node.get("items"), dict):
                raise self.fail(
                    f"the list at {_where(path)} has no item type; use list[T] with a concrete T",
                    path,
                )
            self.check_node(node["items"], f"{path}/items", depth + 1, refs)

    def _check_object(
        self, node: dict[str, Any], path: str, depth: int, refs: tuple[str, ...]
    ) -> None:
        if node.get("additionalProperties") is not False:
            raise self.fail(
                f"object at {path} must be closed (additionalProperties: false); "
                "remove extra='allow' or dict-typed fields",
                path,
            )
        properties = node.get("properties", {})
        missing = [name for name in properties if name not in node.get("required", [])]
        if missing:
            missing_path = f"{path}/properties/{missing[0]}"
            raise self.fail(
                f"property {missing[0]!r} at {missing_path} must be required "
                "(strict mode has no optional fields); use `field: T | None` without a default",
                missing_path,
            )
        for name, child in properties.items():
            self.check_node(child, f"{path}/properties/{name}", depth + 1, refs)

    def check_totals(self) -> None:
        """The size limits, over the schema as written (each definition once)."""
        properties = enum_values = characters = 0
        for path, node in _nodes(self.root, "#"):
            names = node.get("properties")
            if isinstance(names, dict):
                properties += len(names)
                characters += sum(len(str(name)) for name in names)
            for defs_key in ("$defs", "definitions"):
                characters += sum(len(str(name)) for name in node.get(defs_key) or {})
            if "const" in node:
                characters += len(str(node["const"]))
            values = node.get("enum")
            if isinstance(values, list):
                enum_values += len(values)
                enum_chars = sum(len(str(value)) for value in values)
                characters += enum_chars
                strings = [value for value in values if isinstance(value, str)]
                if len(strings) > LARGE_ENUM_VALUES and enum_chars > MAX_LARGE_ENUM_CHARS:
                    raise self.fail(
                        f"the enum at {path} has {len(values):,} values of {enum_chars:,} "
                        f"characters; strict mode allows {MAX_LARGE_ENUM_CHARS:,} characters "
                        f"in an enum of more than {LARGE_ENUM_VALUES} values: shorten or split it",
                        path,
                    )
        if properties > MAX_PROPERTIES:
            raise self.fail(
                f"the schema has {properties:,} object properties; strict mode allows "
                f"{MAX_PROPERTIES:,}: flatten or split the model",
                "#",
            )
        if enum_values > MAX_ENUM_VALUES:
            raise self.fail(
                f"the schema has {enum_values:,} enum values; strict mode allows "
                f"{MAX_ENUM_VALUES:,} in all: use fewer choices, or a plain str",
                "#",
            )
        if characters > MAX_SCHEMA_STRING_CHARS:
            raise self.fail(
                f"the schema's property names, definition names, enum and const values add "
                f"up to {characters:,} characters; strict mode allows "
                f"{MAX_SCHEMA_STRING_CHARS:,}: shorten them",
                "#",
            )


def _nodes(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object in ``node`` as written, with its pointer."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _nodes(child, f"{path}/properties/{name}")
    for defs_key in ("$defs", "definitions"):
        for name, child in (node.get(defs_key) or {}).items():
            yield from _nodes(child, f"{path}/{defs_key}/{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}/items")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}/additionalProperties")
    for index, child in enumerate(node.get("anyOf") or []):
        yield from _nodes(child, f"{path}/anyOf/{index}")
