"""The CLI on PostgreSQL storage: ``$BATCHOR_STORAGE=postgresql+psycopg://...?schema=NAME``
with ``$BATCHOR_ARTIFACTS``."""

from __future__ import annotations

import pytest
from cli_kit import Cli, run_id_of, tickets, write_csv

from batchor import BatchRunner, LocalArtifactStore, PostgresStorage


@pytest.mark.postgres
def test_a_run_in_postgresql_storage_is_started_waited_for_and_read(
    cli: Cli, postgres_storage: PostgresStorage
) -> None:
    url = postgres_storage.engine.url.render_as_string(hide_password=False)
    on_postgres = cli.with_env(
        BATCHOR_STORAGE=f"{url}?schema={postgres_storage.schema}",
        BATCHOR_ARTIFACTS=str(cli.cwd / "artifacts"),
    )
    write_csv(cli.cwd / "tickets.csv", tickets(3))

    started = on_postgres(
        "start", "tickets.csv", "--id-column", "id", "--prompt-column", "text",
        "--model", "gpt-4.1", "--wait",
    )  # fmt: skip

    assert started.code == 0, started
    run_id = run_id_of(started)
    assert "status    completed" in started.stdout
    runner = BatchRunner(
        storage=postgres_storage, artifact_store=LocalArtifactStore(cli.cwd / "artifacts")
    )
    assert [run.run_id for run in runner.list_runs()] == [run_id]
    assert runner.get_run(run_id).summary().completed_items == 3
    assert list((cli.cwd / "artifacts" / "runs" / run_id).rglob("*.jsonl.gz"))
