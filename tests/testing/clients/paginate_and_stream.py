"""A third-party style script: ``batches.list()`` auto-pagination and streamed file content.

Configured from ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``. Submits five small
batches, walks every batch in pages of two, and streams each output file line by
line. Prints one JSON line: the listed ids and the lines read per batch.
"""

import io
import json
import time

import openai

client = openai.OpenAI(max_retries=0)
created = []
for n in range(5):
    line = {
        "custom_id": f"row-{n}",
        "method": "POST",
        "url": "/v1/responses",
        "body": {"model": "gpt-4.1-mini", "input": f"Row {n}"},
    }
    uploaded = client.files.create(
        file=("rows.jsonl", io.BytesIO((json.dumps(line) + "\n").encode())), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h"
    )
    created.append(batch.id)

listed = []
lines_read = {}
for batch in client.batches.list(limit=2):
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    listed.append(batch.id)
    with client.files.with_streaming_response.content(batch.output_file_id) as response:
        lines_read[batch.id] = [json.loads(text)["custom_id"] for text in response.iter_lines()]
print(json.dumps({"created": created, "listed": listed, "lines": lines_read}))
