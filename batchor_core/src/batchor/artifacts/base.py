"""The artifact store protocol and artifact naming.

Artifacts are files a run keeps outside the database: request JSONL segments
(every item's request line, written once at ingestion and read back to build
batches and retries) and raw provider output/error files. Keys are relative
POSIX paths built only from run ids and counters, never from user data.

Both kinds are gzip-compressed JSONL (``.jsonl.gz``): request lines repeat the
same model settings and JSON schema, so they shrink about forty-fold, and
:func:`open_jsonl_read` hands back the plain lines. Exports write them out as
plain JSONL again. Runs stored before compression keep plain ``.jsonl`` keys,
which the readers still take.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO, Protocol, cast

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


COMPRESSED_SUFFIX = ".gz"
COMPRESS_LEVEL = 1
"""gzip's fastest level: repeated request settings compress nearly as well at 1 as at 9."""


def request_segment_key(run_id: str, segment: int) -> str:
    return f"{run_prefix(run_id)}requests/{segment:06d}.jsonl{COMPRESSED_SUFFIX}"


def raw_output_key(run_id: str, batch_number: int, kind: str) -> str:
    """Key of a batch's raw ``output`` or ``error`` file."""
    return f"{run_prefix(run_id)}outputs/batch-{batch_number:06d}.{kind}.jsonl{COMPRESSED_SUFFIX}"


def plain_name(key: str) -> str:
    """``key`` without its compression suffix: the name of its plain export."""
    return key.removesuffix(COMPRESSED_SUFFIX)


@contextmanager
def open_jsonl_write(store: ArtifactStore, key: str) -> Iterator[BinaryIO]:
    """Write the plain JSONL of ``key`` (compressed when the key says so)."""
    with store.open_write(key) as handle:
        if not key.endswith(COMPRESSED_SUFFIX):
            yield handle
            return
        with gzip.GzipFile(
            fileobj=handle, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0
        ) as zipped:
            yield cast(BinaryIO, zipped)


@contextmanager
def open_jsonl_read(store: ArtifactStore, key: str) -> Iterator[BinaryIO]:
    """Read the plain JSONL of ``key``: decompressed, and from the plain ``.jsonl``
    a run stored before compression kept instead."""
    if key.endswith(COMPRESSED_SUFFIX) and not store.exists(key):
        legacy = plain_name(key)
        if store.exists(legacy):
            with store.open_read(legacy) as handle:
                yield handle
            return
    with store.open_read(key) as handle:
        if not key.endswith(COMPRESSED_SUFFIX):
            yield handle
            return
        with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
            yield cast(BinaryIO, unzipped)
