"""Checking a reply against the JSON schema its request asked for, without the class.

A run stores the provider-shaped JSON schema of its structured output
(``RunConfig.response_schema``). A process that cannot import the output class
(it was defined in another program's ``__main__``, or moved), or that sees a
class changed since the run started, still checks every reply against that
schema: what the requests asked for is what a reply must satisfy.

:func:`schema_problem` understands the subset of JSON Schema that structured
output uses: ``type`` (one or a list; OpenAPI's upper-case names and
``nullable`` too), ``enum``, ``const``, ``properties``/``required``/
``additionalProperties``, ``items``, ``anyOf``/``oneOf``/``allOf``, ``$ref`` into
the same document (recursion included), numeric bounds, ``multipleOf``, string
``minLength``/``maxLength``/``pattern`` and ``minItems``/``maxItems``. Other
keywords (``format``, descriptions) are not checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_MAX_REF_HOPS = 64


def schema_problem(schema: Mapping[str, Any], value: Any) -> str | None:
    """The first way ``value`` (parsed JSON) breaks ``schema``, as
    ``"location: problem"`` (the location a dotted path of field names and list
    indexes, ``reply`` for the whole value), or None when it satisfies it."""
    try:
        found = _Checker(schema).problem(schema, value, (), 0)
    except RecursionError:
        return "reply: nested too deeply to check"
    if found is None:
        return None
    location, problem = found
    return f"{'.'.join(str(part) for part in location) or 'reply'}: {problem}"


_JSON_TYPES = {
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: (
        (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer())
    ),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "null": lambda value: value is None,
}

Location = tuple[str | int, ...]


class _Checker:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, reference: str) -> Mapping[str, Any] | None:
        """The node a local ``$ref`` (``#``, ``#/$defs/Name``, any JSON pointer) names."""
        if not reference.startswith("#"):
            return None
        node: Any = self.root
        for part in reference[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node if isinstance(node, Mapping) else None

    def problem(
        self, schema: Any, value: Any, location: Location, hops: int
    ) -> tuple[Location, str] | None:
        if not isinstance(schema, Mapping):
            return None  # true / {} / anything unreadable accepts every value
        reference = schema.get("$ref")
        if isinstance(reference, str):
            if hops >= _MAX_REF_HOPS:
                return location, f"the schema's $ref {reference!r} never reaches a type"
            target = self.resolve(reference)
            if target is None:
                return location, f"the schema's $ref {reference!r} names nothing"
            found = self.problem(target, value, location, hops + 1)
            if found is not None:
                return found
        for keyword in ("anyOf", "oneOf"):
            options = schema.get(keyword)
            if isinstance(options, list) and options:
                problems = [self.problem(option, value, location, hops) for option in options]
                if all(found is not None for found in problems):
                    deepest = max(problems, key=lambda found: len(found[0]) if found else -1)
                    assert deepest is not None
                    if len(deepest[0]) > len(location):
                        return deepest
                    return location, f"matches none of the {len(options)} allowed shapes"
        for option in schema.get("allOf") or []:
            found = self.problem(option, value, location, hops)
            if found is not None:
                return found
        found = self._type_problem(schema, value, location)
        if found is not None:
            return found
        if "const" in schema and not _json_equal(value, schema["const"]):
            return location, f"must be {schema['const']!r}, got {value!r}"
        allowed = schema.get("enum")
        if isinstance(allowed, list) and not any(_json_equal(value, item) for item in allowed):
            shown = ", ".join(repr(item) for item in allowed[:10])
            return location, f"must be one of {shown}{', ...' if len(allowed) > 10 else ''}"
        if isinstance(value, dict):
            return self._object_problem(schema, value, location)
        if isinstance(value, list):
            return self._array_problem(schema, value, location)
        if isinstance(value, str):
            return _string_problem(schema, value, location)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _number_problem(schema, value, location)
        return None

    def _type_problem(
        self, schema: Mapping[str, Any], value: Any, location: Location
    ) -> tuple[Location, str] | None:
        declared = schema.get("type")
        if declared is None:
            return None
        names = [declared] if isinstance(declared, str) else list(declared)
        names = [str(name).lower() for name in names]
        if schema.get("nullable") is True:
            names.append("null")
        if any(_JSON_TYPES.get(name, lambda _value: True)(value) for name in names):
            return None
        expected = " or ".join(names)
        return location, f"must be {expected}, got {_json_type_name(value)}"

    def _object_problem(
        self, schema: Mapping[str, Any], value: dict[str, Any], location: Location
    ) -> tuple[Location, str] | None:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        for name in schema.get("required") or []:
            if name not in value:
                return (*location, name), "field required"
        additional = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                found = self.problem(properties[name], item, (*location, name), 0)
            elif additional is False:
                return (*location, name), "unexpected field (the schema allows no other fields)"
            else:
                found = self.problem(additional, item, (*location, name), 0)
            if found is not None:
                return found
        return None

    def _array_problem(
        self, schema: Mapping[str, Any], value: list[Any], location: Location
    ) -> tuple[Location, str] | None:
        least, most = schema.get("minItems"), schema.get("maxItems")
        if isinstance(least, int) and len(value) < least:
            return location, f"must have at least {least} item(s), got {len(value)}"
        if isinstance(most, int) and len(value) > most:
            return location, f"must have at most {most} item(s), got {len(value)}"
        items = schema.get("items")
        if items is not None:
            for index, item in enumerate(value):
                found = self.problem(items, item, (*location, index), 0)
                if found is not None:
                    return found
        return None


def _string_problem(
    schema: Mapping[str, Any], value: str, location: Location
) -> tuple[Location, str] | None:
    least, most = schema.get("minLength"), schema.get("maxLength")
    if isinstance(least, int) and len(value) < least:
        return location, f"must be at least {least} character(s) long"
    if isinstance(most, int) and len(value) > most:
        return location, f"must be at most {most} character(s) long"
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            matched = True  # a pattern Python cannot read is not ours to judge
        if not matched:
            return location, f"must match the pattern {pattern!r}"
    return None


_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def _number_problem(
    schema: Mapping[str, Any], value: float, location: Location
) -> tuple[Location, str] | None:
    for keyword, sign in _BOUNDS.items():
        limit = schema.get(keyword)
        if isinstance(limit, int | float) and not isinstance(limit, bool):
            holds = {
                ">=": value >= limit,
                "<=": value <= limit,
                ">": value > limit,
                "<": value < limit,
            }[sign]
            if not holds:
                return location, f"must be {sign} {limit}, got {value}"
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
        quotient = value / step
        if not math.isclose(quotient, round(quotient), rel_tol=1e-9, abs_tol=1e-9):
            return location, f"must be a multiple of {step}, got {value}"
    return None


def _json_type_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return type(value).__name__


def _json_equal(left: Any, right: Any) -> bool:
    """Equality as JSON sees it (``True`` is not ``1``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return bool(left == right)
