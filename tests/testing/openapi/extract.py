"""Regenerate ``openai-batch-subset.json`` from a clone of ``openai/openai-openapi``.

    python tests/testing/openapi/extract.py PATH_TO_CLONE

The subset holds the operations the local server emulates (Files, Batches) and
the ``200`` reply of every endpoint a batch can target, with every schema they
reference, at :data:`SPEC_COMMIT`. The per-line schemas of batch input and
output files (``BatchRequestInput``, ``BatchRequestOutput``) were dropped from
the document after :data:`LINE_SCHEMAS_COMMIT`, so they come from that commit.
Documentation-only keywords (descriptions, examples, ``x-oaiMeta``) are left out;
nothing that affects validation is changed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

SPEC_COMMIT = "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
LINE_SCHEMAS_COMMIT = "498c71ddf6f1c45b983f972ccabca795da211a3e"
OUTPUT = Path(__file__).with_name("openai-batch-subset.json")

BATCH_AND_FILE_PATHS = (
    "/batches",
    "/batches/{batch_id}",
    "/batches/{batch_id}/cancel",
    "/files",
    "/files/{file_id}",
    "/files/{file_id}/content",
)
BATCH_TARGET_PATHS = (
    "/responses",
    "/chat/completions",
    "/embeddings",
    "/completions",
    "/moderations",
    "/images/generations",
    "/images/edits",
    "/videos",
)
EXTRA_SCHEMAS = ("ErrorResponse",)
LINE_SCHEMAS = ("BatchRequestInput", "BatchRequestOutput")
DOCUMENTATION_KEYWORDS = frozenset({"description", "summary", "example", "examples", "x-oaiMeta"})
NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
_REFERENCE = re.compile(r'"#/components/schemas/([^"]+)"')


def _show(clone: Path, commit: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(clone), "show", f"{commit}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _without_documentation(node: Any, *, names: bool = False) -> Any:
    """Drop documentation keywords; keys of ``properties`` and the like are names, kept."""
    if isinstance(node, dict):
        return {
            key: _without_documentation(value, names=key in NAME_MAPS and not names)
            for key, value in node.items()
            if names or key not in DOCUMENTATION_KEYWORDS
        }
    if isinstance(node, list):
        return [_without_documentation(item) for item in node]
    return node


def _json_replies_only(operation: dict[str, Any]) -> dict[str, Any]:
    """An operation's ``200`` JSON reply, nothing else (batch targets)."""
    reply = operation["responses"]["200"]["content"]["application/json"]
    return {"responses": {"200": {"content": {"application/json": reply}}}}


def _closure(schemas: dict[str, Any], document: Any) -> dict[str, Any]:
    wanted = set(_REFERENCE.findall(json.dumps(document)))
    found: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name in found:
            continue
        found[name] = schemas[name]
        wanted |= set(_REFERENCE.findall(json.dumps(schemas[name]))) - set(found)
    return dict(sorted(found.items()))


def main(clone: Path) -> None:
    spec = json.loads(_show(clone, SPEC_COMMIT, "openapi.json"))
    old = yaml.safe_load(_show(clone, LINE_SCHEMAS_COMMIT, "openapi.yaml"))
    paths: dict[str, Any] = {}
    for path in BATCH_AND_FILE_PATHS:
        paths[path] = {
            method: {key: value for key, value in operation.items() if key != "x-oaiMeta"}
            for method, operation in spec["paths"][path].items()
        }
    for path in BATCH_TARGET_PATHS:
        paths[path] = {"post": _json_replies_only(spec["paths"][path]["post"])}
    schemas = spec["components"]["schemas"]
    roots = {"paths": paths, "extra": [f"#/components/schemas/{n}" for n in EXTRA_SCHEMAS]}
    subset_schemas = _closure(schemas, roots)
    for name in LINE_SCHEMAS:
        subset_schemas[name] = old["components"]["schemas"][name]
    document = {
        "openapi": spec["openapi"],
        "info": {
            "title": spec["info"]["title"],
            "version": spec["info"]["version"],
            "x-source": {
                "repository": "https://github.com/openai/openai-openapi",
                "commit": SPEC_COMMIT,
                "line-schemas-commit": LINE_SCHEMAS_COMMIT,
            },
        },
        "paths": _without_documentation(paths),
        "components": {"schemas": _without_documentation(subset_schemas, names=True)},
    }
    OUTPUT.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
