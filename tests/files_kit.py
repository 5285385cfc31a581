"""Reading what batchor wrote, as a person searching it would: a gzip-compressed
artifact is read as the text it holds, so a search for a secret cannot miss one."""

from __future__ import annotations

import gzip
from pathlib import Path


def readable_bytes(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it is a gzip file."""
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
