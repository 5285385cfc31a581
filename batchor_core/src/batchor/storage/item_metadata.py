"""How an item's metadata is stored: its canonical JSON, or a short form for lineage.

Most items carry one piece of metadata, the :class:`~batchor.types.Lineage` a
built-in source wrote, and most of it is known from the item itself: its keys,
the ``null`` partition, and the primary key and namespace, which the item id
repeats (``id``, or ``namespace:id`` under a composite source). Stored as
canonical JSON that is about 125 bytes per item before the file name; the short
form keeps only what the id does not say::

    [source_item_index, source_ref]              # item_id == source_primary_key
    [source_item_index, source_ref, namespace]   # item_id == f"{namespace}:{source_primary_key}"

Every other metadata is stored as its canonical JSON object, so the two forms
are told apart by their first character; rows written before the short form
existed read as they always did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from batchor.types import LINEAGE_FIELDS, LINEAGE_KEY, canonical_json, parse_json

_LINEAGE_KEYS = frozenset(LINEAGE_FIELDS)


def encode_metadata(item_id: str, metadata: Mapping[str, Any]) -> str | None:
    """The stored text of an item's ``metadata`` (None when it is empty). Raises
    :class:`TypeError` or :class:`ValueError` for metadata that is not JSON."""
    if not metadata:
        return None
    if len(metadata) == 1:
        lineage = metadata.get(LINEAGE_KEY)
        if type(lineage) is dict and lineage.keys() == _LINEAGE_KEYS:
            short = _short_lineage(item_id, lineage)
            if short is not None:
                return short
    return canonical_json(dict(metadata))


def file_lineage_encoder(source_ref: str) -> Callable[[int], str] | None:
    """For rows of one file whose ids are their primary keys: the stored metadata of
    the row at an index, :func:`encode_metadata`'s short form built without a dict
    per row. None when the short form cannot hold ``source_ref``."""
    try:
        ref = orjson.dumps(source_ref).decode()
    except orjson.JSONEncodeError:  # e.g. a file name that is not valid Unicode
        return None
    return lambda index: f"[{index},{ref}]"


def decode_metadata(item_id: str, text: str | None) -> dict[str, Any]:
    """The ``metadata`` an item's stored text stands for (see :func:`encode_metadata`)."""
    if not text:
        return {}
    value = parse_json(text)
    if type(value) is dict:
        return value
    index, ref, *namespace = value
    key = item_id[len(namespace[0]) + 1 :] if namespace else item_id
    return {
        LINEAGE_KEY: {
            "partition_id": None,
            "source_item_index": index,
            "source_namespace": namespace[0] if namespace else None,
            "source_primary_key": key,
            "source_ref": ref,
        }
    }


def _short_lineage(item_id: str, lineage: dict[str, Any]) -> str | None:
    index = lineage["source_item_index"]
    ref = lineage["source_ref"]
    namespace = lineage["source_namespace"]
    if lineage["partition_id"] is not None or type(index) is not int or type(ref) is not str:
        return None
    key = lineage["source_primary_key"]
    if namespace is None and key == item_id:
        short = [index, ref]
    elif type(namespace) is str and type(key) is str and item_id == f"{namespace}:{key}":
        short = [index, ref, namespace]
    else:
        return None
    try:
        return orjson.dumps(short).decode()
    except orjson.JSONEncodeError:  # e.g. a file name that is not valid Unicode
        return None
