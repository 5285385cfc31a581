"""Deterministic, resumable item sources: CSV, JSONL, Parquet, Composite, and the
:class:`CheckpointedItemSource` protocol for custom formats."""

from batchor.sources.base import CheckpointedItem, CheckpointedItemSource
from batchor.sources.composite import CompositeItemSource
from batchor.sources.csv_file import CsvItemSource
from batchor.sources.jsonl_file import JsonlItemSource
from batchor.sources.parquet_file import ParquetItemSource

__all__ = [
    "CheckpointedItem",
    "CheckpointedItemSource",
    "CompositeItemSource",
    "CsvItemSource",
    "JsonlItemSource",
    "ParquetItemSource",
]
