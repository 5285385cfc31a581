"""``FsspecArtifactStore`` keeps artifacts in an object store: tested against a local
S3 server (moto), fsspec's in-memory filesystem and a local directory, and with
whole runs whose artifacts live in S3."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    ConfigurationError,
    FsspecArtifactStore,
    OpenAIProviderConfig,
    PromptParts,
    RunStatus,
    Storage,
    run_worker,
)
from batchor.testing import LocalBatchServer

S3_KEY = "moto-access-key"
S3_SECRET = "moto-secret-never-shown"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_options(s3_endpoint: str) -> dict[str, Any]:
    """A fresh bucket; returns the storage options that reach it (``bucket`` included)."""
    bucket = f"batchor-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    return {
        "bucket": bucket,
        "key": S3_KEY,
        "secret": S3_SECRET,
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }


def s3_store(options: dict[str, Any]) -> FsspecArtifactStore:
    settings = dict(options)
    bucket = settings.pop("bucket")
    return FsspecArtifactStore(f"s3://{bucket}/team/batchor", **settings)


@pytest.fixture(params=["s3", "memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FsspecArtifactStore:
    if request.param == "s3":
        return s3_store(request.getfixturevalue("s3_options"))
    if request.param == "memory":
        return FsspecArtifactStore(f"memory://batchor-{uuid.uuid4().hex[:8]}")
    return FsspecArtifactStore(f"file://{tmp_path / 'artifacts'}")


def write(store: FsspecArtifactStore, key: str, data: bytes) -> None:
    with store.open_write(key) as handle:
        handle.write(data)


def test_a_written_artifact_reads_back_with_seek(store: FsspecArtifactStore) -> None:
    write(store, "runs/r1/requests/000000.jsonl", b"first line\nsecond line\n")

    with store.open_read("runs/r1/requests/000000.jsonl") as handle:
        handle.seek(11)
        assert handle.read(6) == b"second"
        handle.seek(0)
        assert handle.read(5) == b"first"
    assert store.exists("runs/r1/requests/000000.jsonl")
    assert store.size("runs/r1/requests/000000.jsonl") == 23


def test_keys_are_listed_under_a_prefix_in_order(store: FsspecArtifactStore) -> None:
    for key in ("runs/r1/outputs/b.jsonl", "runs/r1/requests/a.jsonl", "runs/r2/requests/a.jsonl"):
        write(store, key, b"x")

    assert list(store.list_keys("runs/r1/")) == [
        "runs/r1/outputs/b.jsonl",
        "runs/r1/requests/a.jsonl",
    ]
    assert list(store.list_keys("runs/none/")) == []
    assert len(list(store.list_keys(""))) == 3


def test_deleting_removes_the_artifact_and_a_missing_one_is_no_error(
    store: FsspecArtifactStore,
) -> None:
    write(store, "runs/r1/a.jsonl", b"x")

    store.delete("runs/r1/a.jsonl")
    store.delete("runs/r1/a.jsonl")

    assert not store.exists("runs/r1/a.jsonl")
    assert list(store.list_keys("runs/r1/")) == []


def test_a_write_that_fails_leaves_nothing_behind(store: FsspecArtifactStore) -> None:
    write(store, "runs/r1/kept.jsonl", b"old")
    with pytest.raises(RuntimeError), store.open_write("runs/r1/kept.jsonl") as handle:
        handle.write(b"half of the new content")
        raise RuntimeError("interrupted")

    with store.open_read("runs/r1/kept.jsonl") as reader:
        assert reader.read() == b"old"
    assert list(store.list_keys("runs/")) == ["runs/r1/kept.jsonl"]


@pytest.mark.parametrize("key", ["../escape", "runs/../../x", "/absolute", "runs//x", ""])
def test_keys_that_are_not_plain_relative_paths_are_rejected(
    store: FsspecArtifactStore, key: str
) -> None:
    with pytest.raises(ConfigurationError, match="plain relative path"):
        store.exists(key)


def test_location_and_repr_name_the_url_but_never_the_credentials(
    s3_options: dict[str, Any],
) -> None:
    store = s3_store(s3_options)

    assert store.location == f"s3://{s3_options['bucket']}/team/batchor"
    assert S3_SECRET not in repr(store) and S3_SECRET not in store.location


def test_an_unknown_protocol_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="nosuchfs://"):
        FsspecArtifactStore("nosuchfs://bucket/prefix")


def job(server: LocalBatchServer, count: int) -> BatchJob:
    return BatchJob(
        items=[BatchItem(item_id=f"doc-{n}", payload=f"document {n}") for n in range(count)],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=OpenAIProviderConfig(
            model="gpt-4.1-mini", api_key="sk-s3-test", base_url=server.base_url
        ),
    )


def test_a_run_keeps_its_artifacts_in_s3_and_exports_them(
    storage: Storage, s3_options: dict[str, Any], server: LocalBatchServer, tmp_path: Path
) -> None:
    artifacts = s3_store(s3_options)
    runner = BatchRunner(storage, artifacts)

    run = runner.run_and_wait(job(server, 40), timeout=60)

    assert run.status is RunStatus.COMPLETED
    assert len(run.results()) == 40
    keys = list(artifacts.list_keys(f"runs/{run.run_id}/"))
    assert any("/requests/" in key for key in keys) and any("/outputs/" in key for key in keys)
    exported = run.export_artifacts(tmp_path / "export")
    manifest = json.loads(exported.manifest_path.read_text())
    assert manifest["artifact_store"] == artifacts.location
    exported_paths = [entry["path"] for entry in manifest["files"]]
    assert any(path.startswith("requests/") for path in exported_paths)
    assert any(path.startswith("outputs/") for path in exported_paths)
    assert "results.jsonl" in exported_paths
    run.prune_artifacts()
    assert list(artifacts.list_keys(f"runs/{run.run_id}/")) == []


def test_a_worker_elsewhere_drives_runs_from_the_shared_bucket(
    storage: Storage, s3_options: dict[str, Any], server: LocalBatchServer
) -> None:
    run = BatchRunner(storage, s3_store(s3_options)).start(job(server, 25))

    report = run_worker(
        storage, s3_store(s3_options), api_key="sk-s3-test", poll_interval=0.02, until_idle=True
    )

    assert report.finished_run_ids == (run.run_id,)
    assert run.summary().completed_items == 25
