"""A third-party style batch script: plain ``openai``, the request file sent as raw bytes.

Configured the way such tools are, from ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``.
Prints one JSON line: the uploaded file's name, the batch's final status and the
reply text per custom id.
"""

import json
import time

import openai

client = openai.OpenAI(max_retries=0)
requests = [
    {
        "custom_id": f"ticket-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Summarise ticket {i}"}],
        },
    }
    for i in range(3)
]
payload = "\n".join(json.dumps(request) for request in requests).encode()

uploaded = client.files.create(file=payload, purpose="batch")
batch = client.batches.create(
    input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
)
while batch.status not in ("completed", "failed", "expired", "cancelled"):
    time.sleep(0.05)
    batch = client.batches.retrieve(batch.id)

answers = {}
if batch.output_file_id:
    for line in client.files.content(batch.output_file_id).text.splitlines():
        result = json.loads(line)
        body = result["response"]["body"]
        answers[result["custom_id"]] = body["choices"][0]["message"]["content"]
print(json.dumps({"filename": uploaded.filename, "status": batch.status, "answers": answers}))
