"""Fixtures of the Dagster tests: a test instance, the local server, and the resources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, instance_for_test
from dagster_kit import TEST_API_KEY

from batchor.testing import LocalBatchServer
from batchor_dagster import BatchorParquetIOManager, BatchorResource


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalBatchServer]:
    with LocalBatchServer(data_dir=tmp_path / "server") as running:
        yield running


@pytest.fixture
def batchor_resource(tmp_path: Path, server: LocalBatchServer) -> BatchorResource:
    return BatchorResource(
        storage=str(tmp_path / "runs.sqlite3"), api_key=TEST_API_KEY, base_url=server.base_url
    )


@pytest.fixture
def parquet_dir(tmp_path: Path) -> Path:
    return tmp_path / "parquet"


@pytest.fixture
def resources(batchor_resource: BatchorResource, parquet_dir: Path) -> dict[str, Any]:
    return {
        "batchor": batchor_resource,
        "batchor_parquet_io_manager": BatchorParquetIOManager(base_dir=str(parquet_dir)),
    }
