"""Stored item metadata reads back exactly as it was given, in its short or full form."""

from typing import Any

import pytest

from batchor import LINEAGE_KEY
from batchor.storage.item_metadata import decode_metadata, encode_metadata


def lineage(**fields: Any) -> dict[str, Any]:
    base = {
        "partition_id": None,
        "source_item_index": 7,
        "source_namespace": None,
        "source_primary_key": "a-7",
        "source_ref": "/data/tickets.parquet",
    }
    return {LINEAGE_KEY: base | fields}


@pytest.mark.parametrize(
    ("item_id", "metadata", "short"),
    [
        ("a-7", lineage(), True),
        ("0-b:a-7", lineage(source_namespace="0-b"), True),
        ("x:y:a-7", lineage(source_namespace="x:y"), True),
        ("a-7", lineage(source_ref="/données/tickets ☃.csv"), True),
        # anything the item id does not say is kept whole
        ("other", lineage(), False),
        ("a-7", lineage(partition_id="2026-12-01"), False),
        ("zz:a-7", lineage(source_namespace="0-b"), False),
        ("a-7", lineage(source_ref=None, source_item_index=None), False),
        ("a-7", {**lineage(), "team": "support"}, False),
        ("a-7", {"team": "support"}, False),
        ("a-7", {"batchor_lineage": {"source_ref": "x"}}, False),
    ],
)
def test_metadata_reads_back_as_given(item_id: str, metadata: dict[str, Any], short: bool) -> None:
    text = encode_metadata(item_id, metadata)
    assert text is not None
    assert text.startswith("[") is short
    assert decode_metadata(item_id, text) == metadata


def test_short_form_keeps_only_what_the_id_does_not_say() -> None:
    assert encode_metadata("a-7", lineage()) == '[7,"/data/tickets.parquet"]'
    assert encode_metadata("0-b:a-7", lineage(source_namespace="0-b")) == (
        '[7,"/data/tickets.parquet","0-b"]'
    )


def test_no_metadata_is_stored_as_nothing() -> None:
    assert encode_metadata("a", {}) is None
    assert decode_metadata("a", None) == {}
