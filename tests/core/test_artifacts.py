"""Artifacts: what a run keeps, how it is exported, and when it may be pruned."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchor import (
    ArtifactPolicy,
    ArtifactRuleError,
    BatchItem,
    BatchJob,
    BatchRunner,
    OpenAIProviderConfig,
    PromptParts,
    RunNotFinishedError,
)


def job(config: OpenAIProviderConfig, **kwargs: ArtifactPolicy) -> BatchJob:
    return BatchJob(
        items=[
            BatchItem(item_id=f"a{n}", payload=f"text {n}", metadata={"n": n}) for n in range(6)
        ],
        build_prompt=lambda item: PromptParts(prompt=item.payload),
        provider_config=config,
        **kwargs,
    )


def test_export_writes_artifacts_results_and_a_manifest_of_checksums(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, tmp_path: Path
) -> None:
    run = runner.run_and_wait(job(provider_config))
    export = run.export_artifacts(tmp_path / "exports")

    manifest = json.loads(export.manifest_path.read_text())
    names = sorted(entry["path"] for entry in manifest["files"])
    assert names == ["outputs/batch-000001.output.jsonl", "requests/000000.jsonl", "results.jsonl"]
    for entry in manifest["files"]:
        content = (export.directory / entry["path"]).read_bytes()
        assert entry["bytes"] == len(content)
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
    assert len(export.results_path.read_text().splitlines()) == 6


def test_export_and_prune_are_terminal_only(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, tmp_path: Path
) -> None:
    run = runner.start(job(provider_config))
    with pytest.raises(RunNotFinishedError, match=r"export_artifacts\(\) is terminal-only"):
        run.export_artifacts(tmp_path)
    with pytest.raises(RunNotFinishedError, match=r"prune_artifacts\(\) is terminal-only"):
        run.prune_artifacts()


def test_raw_outputs_must_be_exported_before_they_are_pruned(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, tmp_path: Path
) -> None:
    run = runner.run_and_wait(job(provider_config))
    with pytest.raises(ArtifactRuleError, match="must be exported before they are pruned"):
        run.prune_artifacts()

    requests_only = run.prune_artifacts(include_raw_outputs=False)
    assert requests_only.removed_artifact_paths == [f"runs/{run.run_id}/requests/000000.jsonl.gz"]
    assert requests_only.kept_artifact_paths == [
        f"runs/{run.run_id}/outputs/batch-000001.output.jsonl.gz"
    ]

    run.export_artifacts(tmp_path / "exports")
    assert run.prune_artifacts().removed_artifact_paths == requests_only.kept_artifact_paths
    assert len(run.results()) == 6  # results live in storage, not in artifacts


def test_runs_can_skip_raw_output_artifacts(
    runner: BatchRunner, provider_config: OpenAIProviderConfig
) -> None:
    policy = ArtifactPolicy(persist_raw_output_artifacts=False)
    run = runner.run_and_wait(job(provider_config, artifact_policy=policy))

    assert run.prune_artifacts().removed_artifact_paths == [
        f"runs/{run.run_id}/requests/000000.jsonl.gz"
    ]
    assert all(result.output_text for result in run.results())


def test_terminal_results_export_to_parquet(
    runner: BatchRunner, provider_config: OpenAIProviderConfig, tmp_path: Path
) -> None:
    run = runner.run_and_wait(job(provider_config))
    export = run.export_terminal_results(tmp_path / "results.parquet", after_sequence=2)

    table = pq.read_table(export.path)
    assert (export.count, export.next_after_sequence) == (4, 6)
    assert table.column("sequence").to_pylist() == [3, 4, 5, 6]
    assert set(table.column("status").to_pylist()) == {"completed"}
    assert json.loads(table.column("metadata")[0].as_py()).keys() == {"n"}
