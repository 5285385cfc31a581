"""Helpers for the local-server tests: a real ``openai`` client and a kit that builds
request files and reads batch results, each step a real HTTP call."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import openai
from openai.types import (
    Batch,
    Completion,
    CreateEmbeddingResponse,
    FileObject,
    ImagesResponse,
    ModerationCreateResponse,
)
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pydantic import BaseModel

from batchor.testing import LocalBatchServer

MODEL = "gpt-4.1"


def make_client(server: LocalBatchServer, api_key: str = "test") -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=server.base_url, max_retries=0, timeout=30)


class BatchKit:
    """Arrange-and-read helpers for one client; each call is a real HTTP call."""

    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client

    @staticmethod
    def request(endpoint: str, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}

    @staticmethod
    def responses_request(
        custom_id: str, prompt: str = "Say hello", *, model: str = MODEL, **body: Any
    ) -> dict[str, Any]:
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": model, "input": prompt, **body},
        }

    @staticmethod
    def chat_request(custom_id: str, prompt: str = "Say hello", **body: Any) -> dict[str, Any]:
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": prompt}], **body},
        }

    @staticmethod
    def embeddings_request(custom_id: str, text: str | list[str] = "hello") -> dict[str, Any]:
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": text},
        }

    def upload_text(self, text: str, filename: str = "requests.jsonl") -> FileObject:
        return self.client.files.create(
            file=(filename, io.BytesIO(text.encode("utf-8"))), purpose="batch"
        )

    def upload(self, requests: Sequence[dict[str, Any]]) -> FileObject:
        return self.upload_text("".join(json.dumps(r) + "\n" for r in requests))

    def submit(
        self,
        requests: Sequence[dict[str, Any]],
        *,
        endpoint: str = "/v1/responses",
        metadata: dict[str, str] | None = None,
    ) -> Batch:
        uploaded = self.upload(requests)
        return self.client.batches.create(
            input_file_id=uploaded.id,
            endpoint=endpoint,  # type: ignore[arg-type]
            completion_window="24h",
            metadata=metadata,
        )

    def retrieve(self, batch: Batch) -> Batch:
        return self.client.batches.retrieve(batch.id)

    def lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if file_id is None:
            return []
        content = self.client.files.content(file_id).text
        return [json.loads(line) for line in content.splitlines() if line.strip()]

    def outputs(self, batch: Batch) -> dict[str, dict[str, Any]]:
        """Output lines by custom id, each body validated with the SDK's model."""
        models: dict[str, type[BaseModel]] = {
            "/v1/responses": Response,
            "/v1/chat/completions": ChatCompletion,
            "/v1/embeddings": CreateEmbeddingResponse,
            "/v1/completions": Completion,
            "/v1/moderations": ModerationCreateResponse,
            "/v1/images/generations": ImagesResponse,
            "/v1/images/edits": ImagesResponse,
        }
        model = models[batch.endpoint]
        found = {}
        for line in self.lines(batch.output_file_id):
            assert line["error"] is None
            assert line["response"]["status_code"] == 200
            assert line["id"].startswith("batch_req_")
            model.model_validate(line["response"]["body"])
            found[line["custom_id"]] = line
        return found

    def errors(self, batch: Batch) -> dict[str, dict[str, Any]]:
        return {line["custom_id"]: line for line in self.lines(batch.error_file_id)}
