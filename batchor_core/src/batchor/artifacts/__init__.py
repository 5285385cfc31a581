"""Artifact stores: request segments and raw provider files kept outside the database."""

from __future__ import annotations

from batchor.artifacts.base import ArtifactStore
from batchor.artifacts.fsspec import FsspecArtifactStore
from batchor.artifacts.local import LocalArtifactStore


def open_artifact_store(location: str) -> ArtifactStore:
    """The store ``location`` names: an fsspec URL (``s3://bucket/prefix``,
    ``memory://...``) or a local directory."""
    if "://" in location:
        return FsspecArtifactStore(location)
    return LocalArtifactStore(location)


__all__ = ["ArtifactStore", "FsspecArtifactStore", "LocalArtifactStore", "open_artifact_store"]
