"""Ingestion benchmark: a large Parquet file into a durable run, in flat memory.

    .venv/bin/python benchmarks/ingest_benchmark.py [--rows 1000000] [--no-full-run]
        [--prompt callbacks|column] [--plan] [--profile] [--keep]

Generates Parquet files of ``rows / 10`` and ``rows`` rows (an ``id`` and a
``text`` of about 200 characters) under ``benchmarks/.work/ingest/`` and, each
in a fresh subprocess so every peak RSS (``ru_maxrss``) is its own:

1. reads each file with pyarrow alone (``iter_batches`` + ``to_pylist``): the floor;
2. ingests it into a run, ``BatchRunner.start`` with ``SQLiteStorage`` and
   ``LocalArtifactStore``: rows/s, peak RSS and storage bytes per item
   (SQLite file with its WAL + request artifacts);
3. unless ``--no-full-run``, runs the large file end to end through the local
   server (``python -m batchor.testing`` in its own process, instant pacing):
   wall time and peak RSS of the batchor process.

``--profile`` writes a cProfile of the large ingestion (``ingest.prof``) and
prints its top functions. The runs' databases and artifacts (gigabytes for a
million items) are removed at the end unless ``--keep``; the inputs are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORK = Path(__file__).resolve().parent / ".work" / "ingest"
MODEL = "gpt-4.1-mini"
RUN_ID = "ingest_benchmark"
TEXT_CHARACTERS = 200
WORD_TEXT = """
order arrived late box damaged refund please account billing invoice shipping customer support
product quality return label tracking number payment card charged twice password reset email
address delivery warehouse replacement
"""
WORDS = WORD_TEXT.split()


# -- input ------------------------------------------------------------------------------


def input_file(rows: int) -> Path:
    """``items-<rows>.parquet`` (generated once, in bounded chunks)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = WORK / f"items-{rows}.parquet"
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(temporary, schema) as writer:
        for start in range(0, rows, 50_000):
            numbers = range(start, min(start + 50_000, rows))
            writer.write_table(
                pa.table(
                    {"id": [f"item-{n:08d}" for n in numbers], "text": [text(n) for n in numbers]},
                    schema=schema,
                ),
                row_group_size=50_000,
            )
    os.replace(temporary, path)
    return path


def text(number: int) -> str:
    """About ``TEXT_CHARACTERS`` characters of deterministic ticket-like prose."""
    words: list[str] = [f"Ticket {number}:"]
    length = len(words[0])
    state = number * 2_654_435_761 % 2**32
    while length < TEXT_CHARACTERS:
        state = (state * 1_103_515_245 + 12_345) % 2**31
        word = WORDS[state % len(WORDS)]
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


# -- children (each measured in a fresh process) ----------------------------------------


def cpu_seconds() -> float:
    """User + system CPU time of this process so far: steadier than wall time on a
    busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_raw_read(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    started, cpu_started = time.perf_counter(), cpu_seconds()
    rows = 0
    for batch in pq.ParquetFile(path).iter_batches(columns=["id", "text"]):
        rows += len(batch.to_pylist())
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "rows_per_cpu_s": rows / cpu,
    }


def make_job(path: Path, base_url: str, prompt: str = "callbacks") -> Any:
    """The job over ``path``: ``callbacks`` is the seed's per-row functions,
    ``column`` the CLI's and the Dagster component's ``--id-column id
    --prompt-column text``."""
    from batchor import BatchJob, OpenAIProviderConfig, ParquetItemSource, PromptParts

    provider = OpenAIProviderConfig(model=MODEL, api_key="sk-bench", base_url=base_url)
    if prompt == "column":
        from batchor import PromptBuilder
        from batchor.cli.inputs import open_source

        builder = PromptBuilder.from_column("text")
        return BatchJob(
            items=open_source([path], "id", builder),
            build_prompt=builder,
            provider_config=provider,
        )
    source = ParquetItemSource(
        path,
        item_id_from_row=lambda row: str(row["id"]),
        payload_from_row=lambda row: {"text": str(row["text"])},
        columns=["id", "text"],
    )
    return BatchJob(
        items=source,
        build_prompt=lambda item: PromptParts(prompt=item.payload["text"]),
        provider_config=provider,
    )


def make_runner(directory: Path) -> Any:
    from batchor import BatchRunner, LocalArtifactStore, SQLiteStorage

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return BatchRunner(
        storage=SQLiteStorage(path=directory / "runs.sqlite3"),
        artifact_store=LocalArtifactStore(directory / "artifacts"),
    )


def child_ingest(
    path: Path, directory: Path, profile: bool, prompt: str, plan: bool
) -> dict[str, Any]:
    import openai

    # The openai package imports its types lazily on first use (about a second, once per
    # process); do that before timing, so the rate is the steady ingestion rate.
    openai.OpenAI(api_key="sk-bench", base_url="http://127.0.0.1:9/v1")
    runner = make_runner(directory)
    job = make_job(path, "http://127.0.0.1:9/v1", prompt)  # ingestion never calls the provider
    planned: dict[str, Any] = {}
    if plan:  # what start would submit: every row read and built, packed into batches
        started = time.perf_counter()
        job_plan = runner.plan(job)
        planned = {
            "plan_seconds": time.perf_counter() - started,
            "plan_batches": job_plan.batch_count,
            "plan_peak_rss_mb": peak_rss_mb(),
        }
    started, cpu_started = time.perf_counter(), cpu_seconds()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        run = profiler.runcall(runner.start, job, run_id=RUN_ID)
        profiler.dump_stats(directory / "ingest.prof")
    else:
        run = runner.start(job, run_id=RUN_ID)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    rows = run.summary().total_items
    runner.storage.dispose()
    database = sum(p.stat().st_size for p in directory.glob("runs.sqlite3*"))
    artifacts = sum(p.stat().st_size for p in (directory / "artifacts").rglob("*") if p.is_file())
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "rows_per_cpu_s": rows / cpu,
        "database_bytes_per_item": database / rows,
        "artifact_bytes_per_item": artifacts / rows,
        **planned,
    }


def child_full_run(path: Path, directory: Path, base_url: str) -> dict[str, Any]:
    runner = make_runner(directory)
    started = time.perf_counter()
    run = runner.start(make_job(path, base_url), run_id=RUN_ID)
    ingested = time.perf_counter()
    summary = run.wait()
    finished = time.perf_counter()
    return {
        "rows": summary.total_items,
        "status": summary.status.value,
        "completed": summary.completed_items,
        "batches": summary.batches_total,
        "ingest_seconds": ingested - started,
        "run_seconds": finished - ingested,
        "seconds": finished - started,
    }


def run_child(*arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark child {arguments} failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# -- the local server, in its own process -----------------------------------------------


def local_server(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    shutil.rmtree(data_dir, ignore_errors=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "batchor.testing", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"the local server did not start: {line!r}")
    # "... listening on http://127.0.0.1:PORT/v1 (OpenAI; Anthropic at ...)"
    return process, line.split("listening on ", 1)[1].split()[0]


def server_peak_rss_mb(process: subprocess.Popen[str]) -> float | None:
    """The server's peak RSS (``VmHWM``), read before it exits (Linux only)."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


# -- report -----------------------------------------------------------------------------


def sizes(rows: int) -> list[int]:
    return [max(1, rows // 10), rows]


def print_table(title: str, rows: list[tuple[str, ...]]) -> None:
    print(title)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large file")
    parser.add_argument("--no-full-run", action="store_true", help="skip the end-to-end run")
    parser.add_argument("--profile", action="store_true", help="cProfile the large ingestion")
    parser.add_argument(
        "--plan", action="store_true", help="also time BatchRunner.plan before ingesting"
    )
    parser.add_argument(
        "--prompt",
        choices=["callbacks", "column"],
        default="callbacks",
        help="per-row Python callbacks, or the CLI's --id-column / --prompt-column path",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the runs' databases and artifacts afterwards"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *rest = args.child
        if mode == "raw-read":
            figures = child_raw_read(Path(rest[0]))
        elif mode == "ingest":
            figures = child_ingest(
                Path(rest[0]), Path(rest[1]), rest[2] == "profile", rest[3], rest[4] == "plan"
            )
        else:
            figures = child_full_run(Path(rest[0]), Path(rest[1]), rest[2])
        figures["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(figures))
        return

    measured: dict[int, dict[str, dict[str, Any]]] = {}
    for rows in sizes(args.rows):
        path = input_file(rows)
        profile = "profile" if args.profile and rows == args.rows else "plain"
        measured[rows] = {
            "raw": run_child("raw-read", str(path)),
            "ingest": run_child(
                "ingest",
                str(path),
                str(WORK / f"run-{rows}"),
                profile,
                args.prompt,
                "plan" if args.plan else "no-plan",
            ),
        }
        print(f"measured {rows:,} rows: {json.dumps(measured[rows])}", file=sys.stderr)

    table = [
        (
            "rows",
            "pyarrow rows/s",
            "ingest rows/s",
            "ratio",
            "ratio (CPU time)",
            "peak RSS MB",
            "pyarrow peak RSS MB",
            "storage bytes/item",
        )
    ]
    for rows, figures in measured.items():
        raw, ingest = figures["raw"], figures["ingest"]
        table.append(
            (
                f"{rows:,}",
                f"{raw['rows_per_s']:,.0f}",
                f"{ingest['rows_per_s']:,.0f}",
                f"{ingest['rows_per_s'] / raw['rows_per_s']:.3f}",
                f"{ingest['rows_per_cpu_s'] / raw['rows_per_cpu_s']:.3f}",
                f"{ingest['peak_rss_mb']:.0f}",
                f"{raw['peak_rss_mb']:.0f}",
                f"{ingest['database_bytes_per_item'] + ingest['artifact_bytes_per_item']:.0f} "
                f"({ingest['database_bytes_per_item']:.0f} db + "
                f"{ingest['artifact_bytes_per_item']:.0f} artifacts)",
            )
        )
    print_table(f"Ingestion, {args.prompt} (Parquet -> SQLiteStorage + LocalArtifactStore)", table)
    small, large = sizes(args.rows)
    growth = measured[large]["ingest"]["peak_rss_mb"] / measured[small]["ingest"]["peak_rss_mb"]
    print(f"  peak RSS {large:,} rows / {small:,} rows: {growth:.2f}x")
    if args.plan:
        for rows, figures in measured.items():
            ingest = figures["ingest"]
            print(
                f"  plan of {rows:,} rows: {ingest['plan_seconds']:.1f} s "
                f"({rows / ingest['plan_seconds']:,.0f} rows/s), {ingest['plan_batches']} "
                f"batches, peak RSS {ingest['plan_peak_rss_mb']:.0f} MB"
            )

    if args.profile:
        import pstats

        stats = pstats.Stats(str(WORK / f"run-{large}" / "ingest.prof"))
        stats.sort_stats("tottime").print_stats(15)

    if not args.no_full_run:
        server, base_url = local_server(WORK / "server")
        try:
            full = run_child("full-run", str(input_file(large)), str(WORK / "full-run"), base_url)
            server_rss = server_peak_rss_mb(server)
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(f"Full run: {large:,} items through the local server ({full['batches']} batches)")
        print(
            f"  wall {full['seconds']:.1f} s (ingest {full['ingest_seconds']:.1f} s, "
            f"run {full['run_seconds']:.1f} s), {full['completed']:,} completed, "
            f"status {full['status']}"
        )
        print(
            f"  peak RSS: batchor {full['peak_rss_mb']:.0f} MB, "
            f"local server {server_rss or float('nan'):.0f} MB"
        )
    if not args.keep:  # gigabytes for a million items; the generated inputs are kept
        for directory in [*WORK.glob("run-*"), WORK / "full-run", WORK / "server"]:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
