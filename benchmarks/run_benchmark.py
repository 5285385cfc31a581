"""End-to-end benchmark: a structured-output job through the local server.

    python benchmarks/run_benchmark.py [--items 100000] [--provider openai|anthropic|gemini]

Runs the same job twice, each in a fresh subprocess against one local server
(in this process, instant pacing): once with batchor (durable SQLite run) and
once as the floor, a minimal non-durable script on the provider's raw SDK
(OpenAI and Gemini: write JSONL, upload, create, poll, download, parse;
Anthropic: create with the requests inline, poll, stream the results, parse).
Prints wall time, items/s, peak RSS, batches and HTTP calls for each, and
batchor's storage bytes per item.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from batchor.testing import LocalBatchServer

WORK = Path(__file__).parent / ".work"

COMMON = """
import json, resource, sys, time
from typing import Literal
from pydantic import BaseModel

class Triage(BaseModel):
    topic: Literal["billing", "shipping", "returns", "account", "other"]
    urgency: int
    summary: str

ITEMS = int(sys.argv[1]); BASE_URL = sys.argv[2]; WORK = sys.argv[3]
SYSTEM = "Classify the support ticket: topic, urgency 1-5, one-line summary."

def text(n):
    return f"Ticket {n}: my order #{n * 7919 % 100000} arrived late and the box was damaged."

def peak_rss_mb():
    # VmHWM starts afresh at exec; ru_maxrss would also count the parent's size at fork
    # (here the server's), which Linux carries across fork and exec.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def report(**fields):
    fields["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(fields))
"""

BATCHOR = (
    COMMON
    + """
from pathlib import Path
from batchor import (AnthropicProviderConfig, BatchItem, BatchJob, BatchRunner,
                     GeminiProviderConfig, LocalArtifactStore, OpenAIProviderConfig,
                     PromptParts, SQLiteStorage)

PROVIDER = sys.argv[4]
if PROVIDER == "anthropic":
    config = AnthropicProviderConfig(
        model="claude-haiku-4-5", max_tokens=256, api_key="sk-bench", base_url=BASE_URL
    )
elif PROVIDER == "gemini":
    config = GeminiProviderConfig(
        model="gemini-2.5-flash-lite", api_key="AIza-bench", base_url=BASE_URL
    )
else:
    config = OpenAIProviderConfig(model="gpt-4.1-mini", api_key="sk-bench", base_url=BASE_URL)

# Time each batch's collection (download, parse, validate, record), the engine's own step.
from batchor.engine.collect import Collector
collect_seconds = []
_collect = Collector.collect
def timed_collect(self, batch, remote, **options):
    begun = time.perf_counter()
    _collect(self, batch, remote, **options)
    collect_seconds.append((time.perf_counter() - begun, batch.request_count))
Collector.collect = timed_collect

started = time.perf_counter()
runner = BatchRunner(storage=SQLiteStorage(path=Path(WORK) / "runs.sqlite3"),
                     artifact_store=LocalArtifactStore(Path(WORK) / "artifacts"))
job = BatchJob(
    items=(BatchItem(item_id=f"t{n}", payload=text(n)) for n in range(ITEMS)),
    build_prompt=lambda item: PromptParts(prompt=item.payload, system_prompt=SYSTEM),
    structured_output=Triage,
    provider_config=config,
)
run = runner.start(job)
ingested = time.perf_counter()
summary = run.wait()
finished = time.perf_counter()
parsed = sum(1 for result in run.iter_results() if isinstance(result.output, Triage))
read_s = time.perf_counter() - finished
report(wall_s=time.perf_counter() - started, ingest_s=ingested - started,
       run_s=finished - ingested, read_s=read_s, collect=collect_seconds, parsed=parsed,
       status=summary.status.value)
"""
)

FLOOR = (
    COMMON
    + """
from pathlib import Path
import openai

started = time.perf_counter()
client = openai.OpenAI(api_key="sk-bench", base_url=BASE_URL)
schema = Triage.model_json_schema()
schema["additionalProperties"] = False
fmt = {"format": {"type": "json_schema", "name": "Triage", "schema": schema, "strict": True}}
batch_ids = []
for part, start in enumerate(range(0, ITEMS, 50_000)):
    path = Path(WORK) / f"floor-{part}.jsonl"
    with path.open("w") as handle:
        for n in range(start, min(start + 50_000, ITEMS)):
            body = {"model": "gpt-4.1-mini", "input": text(n), "instructions": SYSTEM, "text": fmt}
            handle.write(json.dumps({"custom_id": f"t{n}", "method": "POST",
                                     "url": "/v1/responses", "body": body}) + "\\n")
    with path.open("rb") as handle:
        file_id = client.files.create(file=handle, purpose="batch").id
    batch_ids.append(client.batches.create(input_file_id=file_id, endpoint="/v1/responses",
                                           completion_window="24h").id)
parsed = 0
for batch_id in batch_ids:
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired"):
            break
        time.sleep(0.2)
    for line in client.files.content(batch.output_file_id).iter_lines():
        record = json.loads(line)
        for output in record["response"]["body"]["output"]:
            for content in output["content"]:
                Triage.model_validate_json(content["text"])
                parsed += 1
report(wall_s=time.perf_counter() - started, parsed=parsed, status="completed")
"""
)


GEMINI_FLOOR = (
    COMMON
    + """
from pathlib import Path
from google import genai
from google.genai import types

started = time.perf_counter()
client = genai.Client(api_key="AIza-bench", vertexai=False,
                      http_options=types.HttpOptions(base_url=BASE_URL, api_version="v1beta"))
config = {"responseMimeType": "application/json", "responseJsonSchema": Triage.model_json_schema()}
path = Path(WORK) / "floor.jsonl"
with path.open("w") as handle:
    for n in range(ITEMS):
        request = {"contents": [{"role": "user", "parts": [{"text": text(n)}]}],
                   "systemInstruction": {"parts": [{"text": SYSTEM}]}, "generationConfig": config}
        handle.write(json.dumps({"key": f"t{n}", "request": request}) + "\\n")
uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
job = client.batches.create(model="gemini-2.5-flash-lite", src=uploaded.name,
                            config={"display_name": "floor"})
while not job.done:
    time.sleep(0.2)
    job = client.batches.get(name=job.name)
parsed = 0
for line in client.files.download(file=job.dest.file_name).splitlines():
    record = json.loads(line)
    for part in record["response"]["candidates"][0]["content"]["parts"]:
        Triage.model_validate_json(part["text"])
        parsed += 1
report(wall_s=time.perf_counter() - started, parsed=parsed, status="completed")
"""
)

ANTHROPIC_FLOOR = (
    COMMON
    + """
import anthropic

started = time.perf_counter()
client = anthropic.Anthropic(api_key="sk-bench", base_url=BASE_URL)
fmt = {"format": {"type": "json_schema", "schema": anthropic.transform_schema(Triage)}}
batch_ids = []
for start in range(0, ITEMS, 100_000):
    requests = [
        {"custom_id": f"t{n}", "params": {
            "model": "claude-haiku-4-5", "max_tokens": 256, "system": SYSTEM,
            "messages": [{"role": "user", "content": text(n)}], "output_config": fmt}}
        for n in range(start, min(start + 100_000, ITEMS))
    ]
    batch_ids.append(client.messages.batches.create(requests=requests).id)
parsed = 0
for batch_id in batch_ids:
    while client.messages.batches.retrieve(batch_id).processing_status != "ended":
        time.sleep(0.2)
    for line in client.messages.batches.results(batch_id):
        if line.result.type == "succeeded":
            Triage.model_validate_json(line.result.message.content[0].text)
            parsed += 1
report(wall_s=time.perf_counter() - started, parsed=parsed, status="completed")
"""
)

FLOORS = {"openai": FLOOR, "anthropic": ANTHROPIC_FLOOR, "gemini": GEMINI_FLOOR}


def run_child(
    code: str, items: int, server: LocalBatchServer, work: Path, provider: str
) -> dict[str, object]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server.reset_counts()
    url = {"anthropic": server.url, "gemini": server.gemini_url}.get(provider, server.base_url)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(items), url, str(work), provider],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["batches"] = sum(server.counters.batches_created.values())
    figures["http_calls"] = sum(server.call_counts.values())
    figures["items_per_s"] = items / float(figures["wall_s"])  # type: ignore[arg-type]
    return figures


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--provider", choices=sorted(FLOORS), default="openai")
    args = parser.parse_args()
    shutil.rmtree(WORK / "server", ignore_errors=True)
    with LocalBatchServer(data_dir=WORK / "server") as server:
        floor = run_child(FLOORS[args.provider], args.items, server, WORK / "floor", args.provider)
        batchor = run_child(BATCHOR, args.items, server, WORK / "batchor", args.provider)
    database = sum(
        path.stat().st_size for path in (WORK / "batchor").glob("runs.sqlite3*") if path.is_file()
    )
    artifacts = directory_bytes(WORK / "batchor" / "artifacts")
    print(
        f"{args.items} structured-output items on {args.provider} through the local server "
        "(instant pacing)"
    )
    print(f"{'':26}{'batchor':>12}{'raw SDK floor':>16}")
    for key, unit in [
        ("wall_s", "s"),
        ("items_per_s", "items/s"),
        ("peak_rss_mb", "MB"),
        ("batches", ""),
        ("http_calls", ""),
        ("parsed", "items"),
    ]:
        label = f"{key} ({unit})" if unit else key
        print(f"{label:26}{batchor[key]:>12.6g}{floor[key]:>16.6g}")
    print(
        f"batchor ingest / run / results read: {batchor['ingest_s']:.1f} s / "
        f"{batchor['run_s']:.1f} s / {batchor['read_s']:.2f} s"
    )
    for seconds, lines in batchor["collect"]:  # type: ignore[attr-defined]
        rate = lines / seconds
        print(f"  collected a batch of {lines:,} in {seconds:.2f} s ({rate:,.0f} lines/s)")
    print(f"batchor wall time vs floor: {float(batchor['wall_s']) / float(floor['wall_s']):.2f}x")  # type: ignore[arg-type]
    print(
        f"storage per item: {database / args.items:.0f} B database + "
        f"{artifacts / args.items:.0f} B artifacts"
    )


if __name__ == "__main__":
    main()
