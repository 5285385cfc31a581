"""Artifacts in an object store (S3, GCS, Azure, ...) or any filesystem fsspec knows."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO, cast

from batchor.errors import ConfigurationError


class FsspecArtifactStore:
    """Artifacts under ``url`` (``s3://bucket/prefix``, ``gs://bucket/prefix``,
    ``memory://prefix``, ``file:///dir`` ...), through fsspec.

    ``storage_options`` go to the filesystem as they are: for S3 (``s3fs``) for
    example ``key=``, ``secret=``, ``client_kwargs={"endpoint_url": ...}``; they
    are never shown in ``repr`` or ``location``. Needs ``batchor-core[fsspec]``,
    plus the filesystem's own package (``batchor-core[s3]`` brings ``s3fs``).

    A write goes to a local temporary file and is uploaded in one piece when the
    ``with`` block ends (a single PUT, or a multipart upload completed at the
    end), so a reader sees the whole object or none of it, and a write that
    raises leaves nothing behind. On a local filesystem the file is written
    under a hidden name and renamed. Reads are seekable (ranged GETs).
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        try:
            from fsspec.core import url_to_fs
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ConfigurationError(
                "FsspecArtifactStore needs fsspec: pip install 'batchor-core[fsspec]' "
                "(or 'batchor-core[s3]' for S3)"
            ) from exc
        try:
            filesystem, root = url_to_fs(url, **storage_options)
        except (ImportError, ValueError) as exc:
            raise ConfigurationError(f"cannot open artifact store {url!r}: {exc}") from exc
        self.url = url.rstrip("/")
        self.fs = filesystem
        self.root = root.rstrip("/")
        protocols = filesystem.protocol
        names = set(protocols) if isinstance(protocols, tuple | list) else {protocols}
        self._is_local = bool(names & {"file", "local"})

    def __repr__(self) -> str:
        return f"FsspecArtifactStore({self.url!r})"

    @property
    def location(self) -> str:
        return self.url

    def path(self, key: str) -> str:
        """The filesystem path of ``key``; keys are relative and may not climb out."""
        parts = key.split("/")
        if (
            not key
            or key.startswith("/")
            or "\\" in key
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise ConfigurationError(f"artifact key {key!r} is not a plain relative path")
        return f"{self.root}/{key}"

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        target = self.path(key)
        fd, local_name = tempfile.mkstemp(prefix="batchor-artifact-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
            if self._is_local:
                directory, _, name = target.rpartition("/")
                hidden = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
                self.fs.makedirs(directory, exist_ok=True)
                self.fs.put_file(local_name, hidden)
                self.fs.mv(hidden, target)
            else:
                self.fs.put_file(local_name, target)
            self.fs.invalidate_cache(target)
        finally:
            os.unlink(local_name)

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        path = self.path(key)
        self.fs.invalidate_cache(path)
        with self.fs.open(path, "rb") as handle:
            yield cast(BinaryIO, handle)

    def exists(self, key: str) -> bool:
        path = self.path(key)
        self.fs.invalidate_cache(path)
        return bool(self.fs.isfile(path))

    def size(self, key: str) -> int:
        path = self.path(key)
        self.fs.invalidate_cache(path)
        return int(self.fs.size(path))

    def delete(self, key: str) -> None:
        path = self.path(key)
        with suppress(FileNotFoundError):
            self.fs.rm_file(path)
        self.fs.invalidate_cache(path)

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (a key prefix such as ``runs/<id>/``), sorted;
        hidden names (a part starting with ``.``) are left out."""
        base = self.path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        self.fs.invalidate_cache(base)
        try:
            paths = self.fs.find(base)
        except FileNotFoundError:
            return
        start = len(self.root) + 1
        for path in sorted(paths):
            key = path[start:] if path.startswith(self.root + "/") else None
            if key and not any(part.startswith(".") for part in key.split("/")):
                yield key
