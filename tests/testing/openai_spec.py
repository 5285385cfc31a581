"""OpenAI's published OpenAPI document, as the conformance test validates against it.

The vendored subset (``openapi/``, see its README) is used as published, with the
adaptations :func:`adapted_document` lists, each where the document is silent or
looser than api.openai.com. :class:`SpecValidator` validates a payload against
the schema the document declares for an operation's reply (or a named schema)
and tallies what it validated, for the test's summary line.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).with_name("openapi") / "openai-batch-subset.json"
_BASE_URI = "urn:openai-openapi"

TALLY: Counter[str] = Counter()
VALIDATED_PROPERTY = "openai_spec_validated"
"""The test property carrying the tally to the summary (tests may run in workers)."""
"""Everything validated in this test session, by kind (printed in the summary)."""

CLOSED_SCHEMAS = (
    "Batch",
    "BatchRequestCounts",
    "OpenAIFile",
    "DeleteFileResponse",
    "ListBatchesResponse",
    "ListFilesResponse",
    "BatchRequestOutput",
    "ErrorResponse",
    "Error",
)
"""Objects the emulator builds itself: checked to carry no property the spec does not
declare (the spec leaves ``additionalProperties`` open; this is our own strictness)."""


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _allow_null(schema: dict[str, Any], properties: list[str] | None = None) -> None:
    """Let ``properties`` (default: every property the schema does not require) be null."""
    required = set(schema.get("required", ()))
    names = properties or [p for p in schema["properties"] if p not in required]
    for name in names:
        schema["properties"][name] = {"anyOf": [schema["properties"][name], {"type": "null"}]}


def adapted_document() -> dict[str, Any]:
    """The vendored document, with these adaptations (and nothing else changed):

    1. ``nullable: true`` (OpenAPI 3.0, used by the line schemas, which come from an
       older version of the document) becomes "or null" in JSON Schema terms.
    2. ``Batch`` and ``OpenAIFile`` declare no property nullable, yet the spec's own
       examples, like api.openai.com, send ``null`` for every property with no value
       yet (``output_file_id`` of a ``validating`` batch, ``expires_at`` of a file kept
       forever, ``status_details``): their non-required properties may be null.
    3. The same holds for ``user`` of a Responses ``response`` (the spec's example
       reply shows ``"user": null``).
    4. ``first_id``/``last_id`` of a list: an empty page has no object to name and
       api.openai.com sends ``null``; ``ListFilesResponse`` types them as required
       strings.
    5. :data:`CLOSED_SCHEMAS` get ``additionalProperties: false``.
    """
    document = copy.deepcopy(json.loads(SPEC_PATH.read_text(encoding="utf-8")))
    schemas: dict[str, Any] = document["components"]["schemas"]
    for node in list(_walk(schemas)):
        if node.pop("nullable", False):
            original = dict(node)
            node.clear()
            node["anyOf"] = [original, {"type": "null"}]
    _allow_null(schemas["Batch"])
    _allow_null(schemas["OpenAIFile"])
    _allow_null(schemas["ModelResponseProperties"], ["user"])
    _allow_null(schemas["ListFilesResponse"], ["first_id", "last_id"])
    _allow_null(schemas["ListBatchesResponse"], ["first_id", "last_id"])
    for name in CLOSED_SCHEMAS:
        schemas[name]["additionalProperties"] = False
    return document


def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", template) + "$")


class SpecValidator:
    """Validates payloads against the adapted document, counting each validation."""

    def __init__(self) -> None:
        self.document = adapted_document()
        resource = Resource(contents=self.document, specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)
        self._validators: dict[str, Draft202012Validator] = {}
        self._templates = [(t, _template_pattern(t)) for t in self.document["paths"]]

    def _validator(self, pointer: str) -> Draft202012Validator:
        if pointer not in self._validators:
            schema = {"$ref": f"{_BASE_URI}#{pointer}"}
            self._validators[pointer] = Draft202012Validator(schema, registry=self._registry)
        return self._validators[pointer]

    def _check(self, pointer: str, payload: Any, kind: str, where: str) -> None:
        errors = sorted(self._validator(pointer).iter_errors(payload), key=lambda e: e.path)
        if errors:
            problems = "\n".join(
                f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
                for e in errors[:10]
            )
            raise AssertionError(f"{where} does not match {pointer}:\n{problems}")
        TALLY[kind] += 1

    def template_of(self, path: str) -> str:
        """The spec's path template of a concrete path: ``/files/f-1`` -> ``/files/{file_id}``."""
        for template, pattern in self._templates:
            if pattern.match(path):
                return template
        raise KeyError(f"the vendored spec has no path matching {path!r}")

    def reply_pointer(self, method: str, template: str, status: int = 200) -> str:
        """Where the schema of an operation's JSON reply is, as a JSON pointer."""
        operation = self.document["paths"][template][method.lower()]
        schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        reference: str = schema["$ref"]
        return reference.removeprefix("#")

    def reply(self, method: str, path: str, status: int, payload: Any) -> None:
        """Validate an HTTP reply: a 2xx against the operation's declared schema, an error
        against ``ErrorResponse`` (the spec declares no error replies for these
        operations; api.openai.com answers every error with that envelope)."""
        where = f"{method} {path} -> {status}"
        if status >= 400:
            self._check("/components/schemas/ErrorResponse", payload, "error replies", where)
            return
        pointer = self.reply_pointer(method, self.template_of(path))
        self._check(pointer, payload, "JSON replies", where)

    def schema(self, name: str, payload: Any, kind: str, where: str) -> None:
        self._check(f"/components/schemas/{name}", payload, kind, where)

    def endpoint_body(self, endpoint: str, payload: Any, where: str) -> None:
        """Validate a batch output line's ``response.body`` against the reply schema the spec
        declares for ``endpoint`` (``/v1/responses`` -> ``POST /responses`` 200)."""
        pointer = self.reply_pointer("post", endpoint.removeprefix("/v1"))
        self._check(pointer, payload, "response bodies", where)
