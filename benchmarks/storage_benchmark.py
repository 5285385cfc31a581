"""Storage benchmark: the same job on SQLite and on PostgreSQL, through the local server.

    python benchmarks/storage_benchmark.py [--items 20000] [--runs 1] [--workers 0]
                                           [--postgres-dsn URL] [--backends sqlite,postgres]
                                           [--json]

Each backend runs in a fresh subprocess (so peak RSS is its own) against one
local server in this process (instant pacing): ``runner.start`` ingests the
items (split over ``--runs`` runs), then either the subprocess drives them with
``Run.wait`` (``--workers 0``) or ``--workers`` worker processes drive them with
``run_worker`` (several workers need PostgreSQL or a SQLite file; both work).
Reported per backend: ingest, drive and end-to-end items/s, peak RSS of the
process that ingested and drove, and storage bytes per item: the database as
left (SQLite file plus WAL; PostgreSQL ``pg_total_relation_size`` of every table
in the run's schema, indexes and TOAST included), the same after ``VACUUM``
(``VACUUM FULL`` on PostgreSQL: what the live rows take), and the artifacts.
PostgreSQL runs in a fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy

from batchor import (
    BatchItem,
    BatchJob,
    BatchRunner,
    LocalArtifactStore,
    OpenAIProviderConfig,
    PostgresStorage,
    PromptParts,
    RunStatus,
    SQLiteStorage,
    Storage,
    run_worker,
)
from batchor.testing import LocalBatchServer

WORK = Path(__file__).parent / ".work" / "storage"
DEFAULT_DSN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SYSTEM_PROMPT = "Classify the support ticket by topic and urgency; answer in one line."


def ticket(n: int) -> str:
    return f"Ticket {n}: my order #{n * 7919 % 100_000} arrived late and the box was damaged."


def make_job(first: int, count: int, base_url: str) -> BatchJob:
    return BatchJob(
        items=(BatchItem(item_id=f"t{n}", payload=ticket(n)) for n in range(first, first + count)),
        build_prompt=lambda item: PromptParts(prompt=item.payload, system_prompt=SYSTEM_PROMPT),
        provider_config=OpenAIProviderConfig(
            model="gpt-4.1-mini", api_key="sk-bench", base_url=base_url
        ),
    )


def open_storage(backend: str, work: Path, dsn: str, schema: str) -> Storage:
    if backend == "sqlite":
        return SQLiteStorage(path=work / "runs.sqlite3")
    return PostgresStorage(dsn, schema=schema)


# -- the subprocess that measures one backend ------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Ingest and drive the job on one backend; runs in its own process."""
    work = Path(args.work)
    storage = open_storage(args.backend, work, args.postgres_dsn, args.schema)
    artifacts = LocalArtifactStore(work / "artifacts")
    runner = BatchRunner(storage, artifacts)
    per_run = -(-args.items // args.runs)
    started = time.perf_counter()
    runs = [
        runner.start(make_job(first, min(per_run, args.items - first), args.base_url))
        for first in range(0, args.items, per_run)
    ]
    ingested = driving = time.perf_counter()
    if args.workers == 0:
        for run in runs:
            run.wait(poll_interval=0.05)
        finished = time.perf_counter()
    else:
        driving, finished = drive_with_workers(args, work)
    statuses = {runner.get_run(run.run_id).status for run in runs}
    if statuses != {RunStatus.COMPLETED}:
        raise SystemExit(f"{args.backend}: runs ended {statuses}")
    figures: dict[str, Any] = {
        "backend": args.backend,
        "items": args.items,
        "runs": len(runs),
        "workers": args.workers,
        "ingest_s": ingested - started,
        "drive_s": finished - driving,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "artifact_bytes": sum(
            path.stat().st_size for path in (work / "artifacts").rglob("*") if path.is_file()
        ),
    }
    figures["database_bytes"] = database_bytes(storage, work)
    figures["compacted_bytes"] = database_bytes(storage, work, compact=True)
    storage.dispose()
    return figures


def drive_with_workers(args: argparse.Namespace, work: Path) -> tuple[float, float]:
    """Start the worker processes, let them go together once all have started (so
    interpreter start-up is not timed), and wait for them: returns (go, done) times."""
    command = [sys.executable, __file__, "--worker", "--backend", args.backend]
    command += ["--work", str(work), "--postgres-dsn", args.postgres_dsn, "--schema", args.schema]
    workers = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(args.workers)
    ]
    for worker in workers:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise SystemExit("a worker failed to start")
    go = time.perf_counter()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.close()
    for worker in workers:
        if worker.wait() != 0:
            raise SystemExit(f"a worker exited with {worker.returncode}")
    return go, time.perf_counter()


def work_as_worker(args: argparse.Namespace) -> None:
    work = Path(args.work)
    storage = open_storage(args.backend, work, args.postgres_dsn, args.schema)
    print("ready", flush=True)
    sys.stdin.readline()
    run_worker(
        storage,
        LocalArtifactStore(work / "artifacts"),
        api_key="sk-bench",
        poll_interval=0.05,
        until_idle=True,
    )


def sqlite_bytes(work: Path) -> int:
    return sum(path.stat().st_size for path in work.glob("runs.sqlite3*") if path.is_file())


def database_bytes(storage: Storage, work: Path, *, compact: bool = False) -> int:
    """Bytes the database takes (``compact``: after VACUUM / VACUUM FULL)."""
    if isinstance(storage, SQLiteStorage):
        storage.dispose()
        with contextlib.closing(sqlite3.connect(storage.path, isolation_level=None)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if compact:
                conn.execute("VACUUM")
        return sqlite_bytes(work)
    assert isinstance(storage, PostgresStorage)
    engine = storage.engine.execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if compact:
            conn.exec_driver_sql(f'VACUUM FULL "{storage.schema}".items')
            conn.exec_driver_sql(f'VACUUM FULL "{storage.schema}".runs')
            conn.exec_driver_sql(f'VACUUM FULL "{storage.schema}".batches')
        size = conn.execute(
            sqlalchemy.text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relkind = 'r'"
            ),
            {"schema": storage.schema},
        ).scalar_one()
    return int(size)


# -- the parent: one server, one subprocess per backend --------------------------------------


def postgres_reachable(dsn: str) -> str | None:
    """None if the server answers, else why not."""
    try:
        engine = sqlalchemy.create_engine(dsn, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        return str(exc).splitlines()[0]
    return None


def run_backend(args: argparse.Namespace, backend: str, base_url: str) -> dict[str, Any]:
    work = WORK / backend
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    command = [sys.executable, __file__, "--measure", "--backend", backend, "--work", str(work)]
    command += ["--items", str(args.items), "--runs", str(args.runs)]
    command += ["--workers", str(args.workers), "--base-url", base_url]
    command += ["--postgres-dsn", args.postgres_dsn, "--schema", schema]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        if backend == "postgres":
            drop_schema(args.postgres_dsn, schema)
    if done.returncode != 0:
        raise SystemExit(f"{backend} failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    total = figures["ingest_s"] + figures["drive_s"]
    figures.update(
        ingest_items_per_s=args.items / figures["ingest_s"],
        drive_items_per_s=args.items / figures["drive_s"],
        items_per_s=args.items / total,
        database_bytes_per_item=figures["database_bytes"] / args.items,
        compacted_bytes_per_item=figures["compacted_bytes"] / args.items,
        artifact_bytes_per_item=figures["artifact_bytes"] / args.items,
    )
    return figures


def drop_schema(dsn: str, schema: str) -> None:
    engine = sqlalchemy.create_engine(dsn)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


ROWS = [
    ("ingest (items/s)", "ingest_items_per_s", "{:,.0f}"),
    ("drive (items/s)", "drive_items_per_s", "{:,.0f}"),
    ("end to end (items/s)", "items_per_s", "{:,.0f}"),
    ("peak RSS (MB)", "peak_rss_mb", "{:,.0f}"),
    ("database (B/item)", "database_bytes_per_item", "{:,.0f}"),
    ("  after VACUUM (B/item)", "compacted_bytes_per_item", "{:,.0f}"),
    ("artifacts (B/item)", "artifact_bytes_per_item", "{:,.0f}"),
]


def print_table(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    drivers = f"{args.workers} worker processes" if args.workers else "Run.wait in-process"
    print(f"{args.items:,} items in {args.runs} run(s), local server, instant pacing, {drivers}")
    print(f"{'':26}" + "".join(f"{result['backend']:>14}" for result in results))
    for label, key, template in ROWS:
        print(f"{label:26}" + "".join(f"{template.format(r[key]):>14}" for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1, help="split the items over this many runs")
    parser.add_argument("--workers", type=int, default=0, help="0: drive with Run.wait")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres-dsn", default=os.environ.get("BATCHOR_TEST_POSTGRES_DSN") or DEFAULT_DSN
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    if args.worker:
        work_as_worker(args)
        return
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if "postgres" in backends and (problem := postgres_reachable(args.postgres_dsn)):
        print(f"skipping postgres: {args.postgres_dsn} is unreachable ({problem})", file=sys.stderr)
        backends.remove("postgres")
    with LocalBatchServer() as server:
        results = [run_backend(args, backend, server.base_url) for backend in backends]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(args, results)


if __name__ == "__main__":
    main()
