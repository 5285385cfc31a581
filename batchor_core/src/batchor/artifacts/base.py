"""The artifact store protocol and artifact naming.

Artifacts are files a run keeps outside the database: request JSONL segments
(every item's request line, written once at ingestion and read back to build
batches and retries) and raw provider output/error files. Keys are relative
POSIX paths built only from run ids and counters, never from user data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol

from batchor.types import check_run_id


class ArtifactStore(Protocol):
    """Where artifacts live. Writes are atomic: a reader never sees half a file."""

    @property
    def location(self) -> str:
        """Where the store is (a directory or URL), for messages and manifests."""
        ...

    def open_write(self, key: str) -> AbstractContextManager[BinaryIO]: ...

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def list_keys(self, prefix: str) -> Iterator[str]: ...


def run_prefix(run_id: str) -> str:
    return f"runs/{check_run_id(run_id)}/"


def request_segment_key(run_id: str, segment: int) -> str:
    return f"{run_prefix(run_id)}requests/{segment:06d}.jsonl"


def raw_output_key(run_id: str, batch_number: int, kind: str) -> str:
    """Key of a batch's raw ``output`` or ``error`` file."""
    return f"{run_prefix(run_id)}outputs/batch-{batch_number:06d}.{kind}.jsonl"
