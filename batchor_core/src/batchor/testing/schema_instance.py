"""Deterministic JSON instances of a JSON schema, for structured-output replies.

:func:`generate_schema_instance` compiles a schema once (cached, see
:class:`EqualityCache`) into a tree of small generator functions, then produces an instance
from a ``seed``: the same schema and seed always give the same value, different
seeds vary strings, numbers, booleans and enum picks.

Supported: ``type`` (one or a list), ``properties``/``required`` (every declared
property is emitted), ``items``/``prefixItems``/``minItems``/``maxItems``,
``$ref`` into the same document (``#/$defs/...``, ``#/definitions/...``, ``#``),
recursion (bounded: optional branches turn ``null``/empty past a depth),
``anyOf``/``oneOf`` (the first non-null branch), ``allOf`` (object branches
merged), ``enum``, ``const``, ``minimum``/``maximum`` (and exclusive forms),
``multipleOf`` for integers, ``minLength``/``maxLength`` and the common string
``format`` values. ``pattern`` is not honoured.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

Generator = Callable[[int, int], Any]
"""A compiled schema node: ``(seed, depth) -> instance``."""

RECURSION_SOFT_LIMIT = 4
"""Past this many ``$ref`` hops, optional structure collapses (null branch, minimum items)."""

RECURSION_HARD_LIMIT = 24
"""Past this many ``$ref`` hops the generator gives up and emits ``null``."""

_FORMAT_EXAMPLES: dict[str, str] = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _salt(path: str) -> int:
    return zlib.crc32(path.encode("utf-8"))


def _const(value: Any) -> Generator:
    return lambda seed, depth: value


class _Compiler:
    """Turns one root schema into generator functions, resolving ``$ref`` lazily."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root
        self._refs: dict[str, Generator] = {}

    def compile(self, schema: object, path: str, hint: str) -> Generator:
        if schema is True or not isinstance(schema, Mapping):
            return _const(None)
        if "const" in schema:
            return _const(schema["const"])
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._enum(schema["enum"], path)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref(ref)
        for keyword in ("anyOf", "oneOf"):
            branches = schema.get(keyword)
            if isinstance(branches, list) and branches:
                return self._any_of(branches, f"{path}/{keyword}", hint)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            return self.compile(self._merge_all_of(schema, all_of), path, hint)
        return self._typed(schema, path, hint)

    def _enum(self, values: list[Any], path: str) -> Generator:
        salt = _salt(path)
        count = len(values)
        return lambda seed, depth: values[(seed + salt) % count]

    def _ref(self, ref: str) -> Generator:
        cache = self._refs

        def generate(seed: int, depth: int) -> Any:
            if depth >= RECURSION_HARD_LIMIT:
                return None
            target = cache.get(ref)
            if target is None:
                target = self.compile(self._resolve(ref), ref, ref.rsplit("/", 1)[-1])
                cache[ref] = target
            return target(seed, depth + 1)

        return generate

    def _resolve(self, ref: str) -> object:
        if not ref.startswith("#"):
            return True
        node: object = self._root
        for raw in ref[1:].split("/"):
            if not raw:
                continue
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping):
                node = node.get(key, True)
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return True
        return node

    def _any_of(self, branches: list[Any], path: str, hint: str) -> Generator:
        null_index = next(
            (
                i
                for i, b in enumerate(branches)
                if isinstance(b, Mapping) and b.get("type") == "null"
            ),
            None,
        )
        preferred = next((i for i in range(len(branches)) if i != null_index), 0)
        main = self.compile(branches[preferred], f"{path}/{preferred}", hint)
        if null_index is None:
            return main

        def generate(seed: int, depth: int) -> Any:
            if depth > RECURSION_SOFT_LIMIT:
                return None
            return main(seed, depth)

        return generate

    def _merge_all_of(self, schema: Mapping[str, Any], branches: list[Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties") or {})
        required: list[str] = list(merged.get("required") or [])
        for branch in branches:
            resolved = branch
            while isinstance(resolved, Mapping) and isinstance(resolved.get("$ref"), str):
                resolved = self._resolve(resolved["$ref"])
            if not isinstance(resolved, Mapping):
                continue
            for key, value in resolved.items():
                if key == "properties" and isinstance(value, Mapping):
                    properties.update(value)
                elif key == "required" and isinstance(value, list):
                    required.extend(r for r in value if r not in required)
                else:
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
            merged.setdefault("type", "object")
        if required:
            merged["required"] = required
        return merged

    def _typed(self, schema: Mapping[str, Any], path: str, hint: str) -> Generator:
        declared = schema.get("type")
        if isinstance(declared, list):
            non_null = [t for t in declared if t != "null"]
            chosen = non_null[0] if non_null else "null"
            nullable = "null" in declared
        else:
            chosen = declared if isinstance(declared, str) else self._infer_type(schema)
            nullable = False
        main = self._for_type(chosen, schema, path, hint)
        if not nullable:
            return main

        def generate(seed: int, depth: int) -> Any:
            if depth > RECURSION_SOFT_LIMIT:
                return None
            return main(seed, depth)

        return generate

    @staticmethod
    def _infer_type(schema: Mapping[str, Any]) -> str:
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "multipleOf")):
            return "number"
        return "string"

    def _for_type(self, kind: str, schema: Mapping[str, Any], path: str, hint: str) -> Generator:
        if kind == "object":
            return self._object(schema, path)
        if kind == "array":
            return self._array(schema, path, hint)
        if kind == "integer":
            return self._integer(schema, path)
        if kind == "number":
            return self._number(schema, path)
        if kind == "boolean":
            salt = _salt(path)
            return lambda seed, depth: ((seed + salt) & 1) == 1
        if kind == "null":
            return _const(None)
        return self._string(schema, path, hint)

    def _object(self, schema: Mapping[str, Any], path: str) -> Generator:
        properties = schema.get("properties")
        fields: list[tuple[str, Generator]] = []
        if isinstance(properties, Mapping):
            for name, sub in properties.items():
                fields.append((name, self.compile(sub, f"{path}/{name}", name)))
        required = schema.get("required")
        if isinstance(required, list):
            declared = {name for name, _ in fields}
            for name in required:
                if isinstance(name, str) and name not in declared:
                    fields.append((name, self._string({}, f"{path}/{name}", name)))

        def generate(seed: int, depth: int) -> Any:
            return {name: field(seed, depth) for name, field in fields}

        return generate

    def _array(self, schema: Mapping[str, Any], path: str, hint: str) -> Generator:
        prefix_schemas = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft-4 tuple form
            prefix_schemas, items = items, schema.get("additionalItems", True)
        prefix = [
            self.compile(sub, f"{path}/prefixItems/{i}", hint)
            for i, sub in enumerate(prefix_schemas if isinstance(prefix_schemas, list) else [])
        ]
        item = self.compile(items if items is not None else {}, f"{path}/items", hint)
        min_items = int(schema.get("minItems", 0) or 0)
        max_items = schema.get("maxItems")
        usual = max(min_items, 1, len(prefix))
        if isinstance(max_items, int):
            usual = min(usual, max_items)
        least = min_items

        def generate(seed: int, depth: int) -> Any:
            count = least if depth > RECURSION_SOFT_LIMIT else usual
            values = [make(seed + i, depth) for i, make in enumerate(prefix[:count])]
            values.extend(item(seed + i, depth) for i in range(len(values), count))
            return values

        return generate

    @staticmethod
    def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, bool, float | None, bool]:
        low: float | None = None
        high: float | None = None
        low_exclusive = high_exclusive = False
        if isinstance(schema.get("minimum"), int | float):
            low = schema["minimum"]
        if isinstance(schema.get("exclusiveMinimum"), int | float) and not isinstance(
            schema.get("exclusiveMinimum"), bool
        ):
            low, low_exclusive = schema["exclusiveMinimum"], True
        elif schema.get("exclusiveMinimum") is True:
            low_exclusive = True
        if isinstance(schema.get("maximum"), int | float):
            high = schema["maximum"]
        if isinstance(schema.get("exclusiveMaximum"), int | float) and not isinstance(
            schema.get("exclusiveMaximum"), bool
        ):
            high, high_exclusive = schema["exclusiveMaximum"], True
        elif schema.get("exclusiveMaximum") is True:
            high_exclusive = True
        return low, low_exclusive, high, high_exclusive

    def _integer(self, schema: Mapping[str, Any], path: str) -> Generator:
        low, low_exclusive, high, high_exclusive = self._bounds(schema)
        lo = None if low is None else (math.floor(low) + 1 if low_exclusive else math.ceil(low))
        hi = None if high is None else (math.ceil(high) - 1 if high_exclusive else math.floor(high))
        multiple = schema.get("multipleOf")
        step = multiple if isinstance(multiple, int) and multiple > 0 else 1
        salt = _salt(path)

        def generate(seed: int, depth: int) -> Any:
            base = (seed + salt) % 100
            if lo is not None and hi is not None:
                value = lo + base % (hi - lo + 1) if hi >= lo else lo
            elif lo is not None:
                value = lo + base
            elif hi is not None:
                value = hi - base
            else:
                value = base
            if step != 1:
                value = (value // step) * step
                if lo is not None and value < lo:
                    value += step
            return value

        return generate

    def _number(self, schema: Mapping[str, Any], path: str) -> Generator:
        low, _, high, _ = self._bounds(schema)
        salt = _salt(path)

        def generate(seed: int, depth: int) -> Any:
            fraction = ((seed + salt) % 98 + 1) / 100  # strictly inside (0, 1)
            if low is not None and high is not None:
                return low + fraction * (high - low)
            if low is not None:
                return low + fraction
            if high is not None:
                return high - fraction
            return fraction

        return generate

    def _string(self, schema: Mapping[str, Any], path: str, hint: str) -> Generator:
        min_length = schema.get("minLength")
        max_length = schema.get("maxLength")
        example = _FORMAT_EXAMPLES.get(str(schema.get("format", "")))
        salt = _salt(path)
        label = hint or "text"

        def generate(seed: int, depth: int) -> Any:
            text = example if example is not None else f"{label}-{(seed + salt) % 65536:04x}"
            if isinstance(min_length, int) and len(text) < min_length:
                text += "x" * (min_length - len(text))
            if isinstance(max_length, int) and len(text) > max_length:
                text = text[:max_length]
            return text

        return generate


class EqualityCache(Generic[K, V]):
    """A small cache for unhashable keys (parsed JSON), found by ``==``.

    Requests of one batch usually share one schema: comparing a freshly parsed
    schema with the few most recent ones is much cheaper than serialising it to
    make a hashable key. Misses fall back to ``make(key)``.
    """

    def __init__(self, make: Callable[[K], V], size: int = 8) -> None:
        self._make = make
        self._size = size
        self._recent: list[tuple[K, V]] = []
        self._lock = threading.Lock()

    def get(self, key: K) -> V:
        recent = self._recent
        for cached_key, value in recent:
            if cached_key == key:
                return value
        value = self._make(key)
        with self._lock:
            self._recent = [(key, value), *self._recent[: self._size - 1]]
        return value


def _compile_root(schema: Mapping[str, Any]) -> Generator:
    return _Compiler(schema).compile(schema, "#", "")


_GENERATORS: EqualityCache[Mapping[str, Any], Generator] = EqualityCache(_compile_root, size=64)


def generate_schema_instance(schema: Mapping[str, Any], seed: int = 0) -> Any:
    """Return a JSON value that satisfies ``schema``, deterministic in ``(schema, seed)``."""
    return _GENERATORS.get(schema)(seed, 0)
