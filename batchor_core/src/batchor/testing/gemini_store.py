"""The Gemini emulator's state: files, upload sessions and batches, advanced by the clock.

:class:`GeminiStore` is the one place that reads or changes that state; the HTTP
layer (:mod:`batchor.testing.gemini_api`) only calls its named operations. As in
the OpenAI emulator, every operation runs under one lock and first *advances*
the batches to the clock's current time, in time order, from each batch's pace.

A batch is ``BATCH_STATE_PENDING`` for ``pace.validating`` seconds, then
``BATCH_STATE_RUNNING`` while it processes and finalises, then ends
``SUCCEEDED`` with a results file (one line per request, in input order),
``FAILED`` (an injected fault), ``CANCELLED`` (after ``pace.cancelling``, keeping
the lines of the requests answered by then) or ``EXPIRED`` (48 hours after it was
created, or an injected fault) with no results at all.

Layout under the server's ``data_dir``::

    gemini/files/<id>.json      GeminiFile
    gemini/files/<id>.content   the bytes
    gemini/batches/<id>.json    GeminiBatch
    gemini/batches/<id>.input   a hard link (or copy) of the input while it runs
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import secrets
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, Field

from batchor.testing.context import ServerContext
from batchor.testing.models import (
    INVALID_REPLY_TEXT,
    BatchFault,
    BatchPace,
    MalformKind,
    RequestFault,
)
from batchor.testing.replies import JsonTemplate, encode_string, hole, reply_text
from batchor.testing.routing import ApiError
from batchor.testing.tokens import TOKENS_PER_MESSAGE, count_text_tokens

MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
"""The Files API's limit on one file: 2 GB."""

FILE_LIFETIME_SECONDS = 48 * 60 * 60
"""Files (uploads and results) are deleted 48 hours after they were created."""

BATCH_LIFETIME_SECONDS = 48 * 60 * 60
"""A batch still pending or running 48 hours after it was created expires."""

MAX_CONCURRENT_BATCHES = 100
"""Batches that may be pending or running at once."""

MAX_REQUESTS_PER_BATCH = 200_000
"""The most requests the server takes in one batch."""

BatchState = Literal[
    "BATCH_STATE_PENDING",
    "BATCH_STATE_RUNNING",
    "BATCH_STATE_SUCCEEDED",
    "BATCH_STATE_FAILED",
    "BATCH_STATE_CANCELLED",
    "BATCH_STATE_EXPIRED",
]
LIVE_STATES = frozenset({"BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"})
"""States whose batches hold their model's enqueued tokens."""

HTTP_TO_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 500: 13, 503: 14, 504: 4}
"""The ``google.rpc.Code`` a result line's ``error.code`` carries for an HTTP status."""

_Event = Literal["started", "finished", "cancelled", "expired"]


class GoogleApiError(ApiError):
    """An error in Google's envelope: ``{"error": {code, message, status, details}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        canonical: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, code=canonical, headers=headers)
        self.canonical = canonical
        self.details = details or []


def invalid_argument(message: str) -> GoogleApiError:
    return GoogleApiError(400, message, "INVALID_ARGUMENT")


def not_found(message: str = "Requested entity was not found.") -> GoogleApiError:
    return GoogleApiError(404, message, "NOT_FOUND")


def timestamp(epoch: float) -> str:
    """RFC 3339, Z-normalised, with 6 fractional digits (the API sends 0, 3, 6 or 9)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write_json_atomically(path: Path, record: BaseModel) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(record.model_dump_json(), encoding="utf-8")
    os.replace(temporary, path)


def _new_id() -> str:
    """Lowercase letters and digits, as the API's resource ids are."""
    return uuid.uuid4().hex[:16]


class GeminiFile(BaseModel):
    """A stored file: an upload (``UPLOADED``) or a batch's results (``GENERATED``)."""

    id: str
    sequence: int
    display_name: str | None = None
    mime_type: str
    size: int
    sha256: str
    source: Literal["UPLOADED", "GENERATED"] = "UPLOADED"
    created_time: float
    expires_time: float

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    def to_api(self, root: str, version: str) -> dict[str, Any]:
        """The ``File`` resource; ``root`` is the server's URL with the API's prefix."""
        record: dict[str, Any] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(self.size),
            "createTime": timestamp(self.created_time),
            "updateTime": timestamp(self.created_time),
            "expirationTime": timestamp(self.expires_time),
            "sha256Hash": self.sha256,
            "uri": f"{root}/{version}/{self.name}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.display_name:
            record["displayName"] = self.display_name
        if self.source == "GENERATED":
            record["downloadUri"] = f"{root}/download/{version}/{self.name}:download?alt=media"
        return record


class GeminiBatch(BaseModel):
    """A batch, with what it was created from and everything it has done."""

    id: str
    sequence: int
    model: str
    display_name: str
    input_file: str
    request_count: int
    tokens: int
    keys: list[str]
    """The key of each request line, in input order (an unreadable line has none: "")."""
    line_errors: dict[int, str] = Field(default_factory=dict)
    """Request lines the server cannot run, by index: each gets an error line."""
    pace: BatchPace
    batch_fault: BatchFault | None = None
    request_faults: dict[int, RequestFault] = Field(default_factory=dict)
    malformed: dict[int, MalformKind] = Field(default_factory=dict)
    state: BatchState = "BATCH_STATE_PENDING"
    created_time: float
    update_time: float
    expires_time: float
    running_time: float | None = None
    cancel_time: float | None = None
    processed_at_cancel: int = 0
    end_time: float | None = None
    output_file: str | None = None
    error: dict[str, Any] | None = None
    succeeded: int = 0
    failed: int = 0

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    def to_api(self) -> dict[str, Any]:
        """The batch as the long-running ``Operation`` the API answers with: the SDK
        reads its ``metadata``; ``response`` and ``error`` are what REST clients read."""
        pending = self.request_count - self.succeeded - self.failed if self.is_live else 0
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
            "model": f"models/{self.model}",
            "name": self.name,
            "displayName": self.display_name,
            "inputConfig": {"fileName": f"files/{self.input_file}"},
            "createTime": timestamp(self.created_time),
            "updateTime": timestamp(self.update_time),
            "state": self.state,
            "batchStats": {
                "requestCount": str(self.request_count),
                "successfulRequestCount": str(self.succeeded),
                "failedRequestCount": str(self.failed),
                "pendingRequestCount": str(pending),
            },
            "priority": "0",
        }
        operation: dict[str, Any] = {"name": self.name, "metadata": metadata}
        if self.end_time is not None:
            metadata["endTime"] = timestamp(self.end_time)
            operation["done"] = True
        if self.output_file is not None:
            output = {"responsesFile": f"files/{self.output_file}"}
            metadata["output"] = output
            operation["response"] = {
                "@type": "type.googleapis.com/"
                "google.ai.generativelanguage.v1beta.GenerateContentBatchOutput",
                **output,
            }
        if self.error is not None:
            operation["error"] = self.error
        return operation


@dataclass(slots=True)
class UploadSession:
    """A resumable upload in progress: what was declared, what has arrived."""

    upload_id: str
    display_name: str | None
    mime_type: str
    declared_size: int
    path: Path
    received: int = 0


def count_gemini_request_tokens(request: Mapping[str, Any]) -> int:
    """The server's token count of a ``GenerateContentRequest``: ``ceil(utf8_bytes /
    4)`` of every text part of ``contents`` and ``systemInstruction``, plus 4 per
    entry of ``contents`` (the rule of :mod:`batchor.testing.tokens`)."""
    total = 0
    system = request.get("systemInstruction", request.get("system_instruction"))
    if isinstance(system, Mapping):
        total += _parts_tokens(system.get("parts"))
    contents = request.get("contents")
    if isinstance(contents, list):
        for content in contents:
            if isinstance(content, Mapping):
                total += TOKENS_PER_MESSAGE + _parts_tokens(content.get("parts"))
    return total


def _parts_tokens(parts: object) -> int:
    if not isinstance(parts, list):
        return 0
    return sum(
        count_text_tokens(part["text"])
        for part in parts
        if isinstance(part, Mapping) and isinstance(part.get("text"), str)
    )


@dataclass(frozen=True, slots=True)
class InputScan:
    """What reading a batch's input file found."""

    keys: list[str]
    tokens: int
    line_errors: dict[int, str]


def scan_input(path: Path) -> InputScan:
    """Read every request line: its key, its tokens, and whether it can run (a line
    that is not ``{"key", "request": {"contents": [...]}}`` gets an error line)."""
    keys: list[str] = []
    tokens = 0
    errors: dict[int, str] = {}
    with path.open("rb") as lines:
        for raw in lines:
            if not raw.strip():
                continue
            index = len(keys)
            try:
                line = json.loads(raw)
            except ValueError:
                keys.append("")
                errors[index] = f"Invalid JSON payload at line {index + 1} of the input file."
                continue
            key = line.get("key") if isinstance(line, dict) else None
            request = line.get("request") if isinstance(line, dict) else None
            keys.append(key if isinstance(key, str) else "")
            if not isinstance(request, dict):
                errors[index] = "Invalid JSON payload: the line has no 'request' object."
            elif not isinstance(request.get("contents"), list) or not request["contents"]:
                errors[index] = "* GenerateContentRequest.contents: contents is not specified"
            else:
                tokens += count_gemini_request_tokens(request)
    return InputScan(keys, tokens, errors)


_RESPONSE_LINE = JsonTemplate(
    {
        "key": hole("key"),
        "response": {
            "candidates": [
                {
                    "content": {"parts": [{"text": hole("text")}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": hole("usage"),
            "modelVersion": hole("model"),
            "responseId": hole("response_id"),
        },
    }
)


@dataclass(slots=True)
class _Totals:
    executed: int = 0
    succeeded: int = 0
    failed: int = 0


class GeminiStore:
    """Files, upload sessions and batches of one Gemini emulator, persisted under
    ``data_dir / "gemini"``."""

    def __init__(self, context: ServerContext) -> None:
        self.lock = threading.RLock()
        self.files: dict[str, GeminiFile] = {}
        self.batches: dict[str, GeminiBatch] = {}
        self.uploads: dict[str, UploadSession] = {}
        self._context = context
        self._clock = context.clock
        self._counters = context.counters
        root = context.data_dir / "gemini"
        self._files_dir = root / "files"
        self._batches_dir = root / "batches"
        self._files_dir.mkdir(parents=True, exist_ok=True)
        self._batches_dir.mkdir(parents=True, exist_ok=True)
        self.max_file_bytes = MAX_FILE_BYTES
        self.max_requests_per_batch = MAX_REQUESTS_PER_BATCH
        self.max_concurrent_batches = MAX_CONCURRENT_BATCHES
        """Limits a test may lower (they are the API's by default)."""
        self._next_sequence = 0
        self._load()

    # ----------------------------------------------------------------- persistence

    def _load(self) -> None:
        for path in self._files_dir.glob("*.json"):
            file = GeminiFile.model_validate_json(path.read_text(encoding="utf-8"))
            self.files[file.id] = file
        for path in self._batches_dir.glob("*.json"):
            batch = GeminiBatch.model_validate_json(path.read_text(encoding="utf-8"))
            self.batches[batch.id] = batch
        self.files = dict(sorted(self.files.items(), key=lambda item: item[1].sequence))
        self.batches = dict(sorted(self.batches.items(), key=lambda item: item[1].sequence))
        sequences = [f.sequence for f in self.files.values()]
        sequences += [b.sequence for b in self.batches.values()]
        self._next_sequence = max(sequences, default=-1) + 1

    def _sequence(self) -> int:
        self._next_sequence += 1
        return self._next_sequence - 1

    def _content_path(self, file_id: str) -> Path:
        return self._files_dir / f"{file_id}.content"

    def _input_path(self, batch_id: str) -> Path:
        return self._batches_dir / f"{batch_id}.input"

    def _save_file(self, file: GeminiFile) -> None:
        _write_json_atomically(self._files_dir / f"{file.id}.json", file)

    def _save_batch(self, batch: GeminiBatch) -> None:
        _write_json_atomically(self._batches_dir / f"{batch.id}.json", batch)

    # ---------------------------------------------------------------------- uploads

    def start_upload(self, *, display_name: str | None, mime_type: str, size: int) -> str:
        """Open a resumable upload session; its (unguessable) id."""
        if size > self.max_file_bytes:
            raise invalid_argument(
                f"File too large: at most {self.max_file_bytes} bytes are allowed, this "
                f"file has {size}."
            )
        upload_id = secrets.token_urlsafe(24)
        session = UploadSession(
            upload_id=upload_id,
            display_name=display_name,
            mime_type=mime_type,
            declared_size=size,
            path=self._files_dir / f".upload-{uuid.uuid4().hex}.part",
        )
        session.path.touch()
        with self.lock:
            self.uploads[upload_id] = session
        return upload_id

    def upload_chunk(
        self, upload_id: str, *, offset: int, data: bytes, finalize: bool
    ) -> GeminiFile | None:
        """Append one chunk; the new file once ``finalize`` completes the upload."""
        with self.lock:
            session = self.uploads.get(upload_id)
        if session is None:
            raise not_found("The upload session does not exist or has expired.")
        if offset != session.received:
            raise invalid_argument(
                f"Invalid upload offset {offset}: {session.received} bytes were received so far."
            )
        if session.received + len(data) > session.declared_size:
            raise invalid_argument(
                f"The upload is larger than the {session.declared_size} bytes declared."
            )
        with session.path.open("ab") as handle:
            handle.write(data)
        session.received += len(data)
        if not finalize:
            return None
        with self.lock:
            self.uploads.pop(upload_id, None)
        if session.received != session.declared_size:
            session.path.unlink(missing_ok=True)
            raise invalid_argument(
                f"The upload ended after {session.received} of the "
                f"{session.declared_size} bytes declared."
            )
        return self._adopt(session)

    def _adopt(self, session: UploadSession) -> GeminiFile:
        digest = hashlib.sha256()
        with session.path.open("rb") as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
        with self.lock:
            now = self._clock()
            self._advance(now)
            file = GeminiFile(
                id=_new_id(),
                sequence=self._sequence(),
                display_name=session.display_name,
                mime_type=session.mime_type,
                size=session.received,
                sha256=base64.b64encode(digest.digest()).decode(),
                created_time=now,
                expires_time=now + FILE_LIFETIME_SECONDS,
            )
            os.replace(session.path, self._content_path(file.id))
            self._save_file(file)
            self.files[file.id] = file
            return file

    # ------------------------------------------------------------------------ files

    def get_file(self, file_id: str) -> GeminiFile:
        with self.lock:
            self.advance()
            file = self.files.get(file_id)
            if file is None:
                raise GoogleApiError(
                    403,
                    f"You do not have permission to access the File {file_id} or it may not exist.",
                    "PERMISSION_DENIED",
                )
            return file

    def list_files(
        self, *, page_size: int, page_token: str | None, render: Callable[[GeminiFile], Any]
    ) -> dict[str, Any]:
        with self.lock:
            self.advance()
            files = list(reversed(self.files.values()))
            return _page(files, page_size, page_token, "files", render)

    def delete_file(self, file_id: str) -> None:
        with self.lock:
            file = self.get_file(file_id)
            self._remove_file(file)
            self._counters.count_file_deleted(
                "batch" if file.source == "UPLOADED" else "batch_output"
            )

    def _remove_file(self, file: GeminiFile) -> None:
        del self.files[file.id]
        self._content_path(file.id).unlink(missing_ok=True)
        (self._files_dir / f"{file.id}.json").unlink(missing_ok=True)

    def open_download(self, file_id: str) -> tuple[BinaryIO, int]:
        """A generated file's bytes (the caller closes the handle); uploads cannot be
        downloaded, as the API says."""
        with self.lock:
            file = self.get_file(file_id)
            if file.source != "GENERATED":
                raise invalid_argument(
                    "Only generated files can be downloaded; files created by upload "
                    "cannot be downloaded."
                )
            return self._content_path(file_id).open("rb"), file.size

    # ---------------------------------------------------------------------- batches

    def create_batch(self, *, model: str, display_name: str, input_file: str) -> GeminiBatch:
        """Create a pending batch from an uploaded file, judged now: too many
        requests, the model's enqueued-token limit or the concurrent-batch limit
        refuse it; a bad line only fails that request."""
        with self.lock:
            source = self.get_file(input_file)
            if source.source != "UPLOADED":
                raise invalid_argument(f"File files/{input_file} is not an uploaded input file.")
            batch_id = _new_id()
            linked = self._input_path(batch_id)
            try:
                os.link(self._content_path(input_file), linked)
            except OSError:
                shutil.copyfile(self._content_path(input_file), linked)
        scan = scan_input(linked)
        try:
            with self.lock:
                now = self._clock()
                self._advance(now)
                self._admit(model, scan)
                batch = GeminiBatch(
                    id=batch_id,
                    sequence=self._sequence(),
                    model=model,
                    display_name=display_name,
                    input_file=input_file,
                    request_count=len(scan.keys),
                    tokens=scan.tokens,
                    keys=scan.keys,
                    line_errors=scan.line_errors,
                    pace=self._context.pace,
                    batch_fault=self._context.faults.take_batch_fault(),
                    created_time=now,
                    update_time=now,
                    expires_time=now + BATCH_LIFETIME_SECONDS,
                )
                self.batches[batch.id] = batch
                self._save_batch(batch)
                self._counters.count_batch_created(model)
                self._counters.see_enqueued_tokens(model, self._enqueued(model))
                return batch
        except ApiError:
            linked.unlink(missing_ok=True)
            raise

    def _admit(self, model: str, scan: InputScan) -> None:
        if not scan.keys:
            raise invalid_argument("The input file contains no requests.")
        if len(scan.keys) > self.max_requests_per_batch:
            raise invalid_argument(
                f"Too many requests: a batch may hold at most {self.max_requests_per_batch} "
                f"requests, this one has {len(scan.keys)}."
            )
        live = sum(1 for batch in self.batches.values() if batch.is_live)
        if live >= self.max_concurrent_batches:
            raise _quota_exceeded(
                f"Limit: {self.max_concurrent_batches} concurrent batch requests.",
                "BatchConcurrentRequestsPerProject",
                self.max_concurrent_batches,
            )
        limit = self._context.limits.token_limit(model)
        enqueued = self._enqueued(model)
        if limit is not None and enqueued + scan.tokens > limit:
            raise _quota_exceeded(
                f"Limit: {limit:,} enqueued tokens for {model} "
                f"({enqueued:,} enqueued, the batch has {scan.tokens:,}).",
                "BatchEnqueuedTokensPerModelPerProject",
                limit,
            )

    def get_batch(self, batch_id: str) -> GeminiBatch:
        with self.lock:
            self.advance()
            batch = self.batches.get(batch_id)
            if batch is None:
                raise not_found(f"Batch batches/{batch_id} was not found.")
            return batch

    def list_batches(self, *, page_size: int, page_token: str | None) -> dict[str, Any]:
        with self.lock:
            self.advance()
            newest_first = list(reversed(self.batches.values()))
            return _page(newest_first, page_size, page_token, "operations", GeminiBatch.to_api)

    def cancel_batch(self, batch_id: str) -> None:
        """Cancel a live batch: after ``pace.cancelling`` it is ``CANCELLED``, keeping
        the results of the requests answered by the time it was asked."""
        with self.lock:
            batch = self.get_batch(batch_id)
            if batch.cancel_time is not None:
                return
            if not batch.is_live:
                raise GoogleApiError(
                    400,
                    f"Batch {batch.name} is in state {batch.state} and cannot be cancelled.",
                    "FAILED_PRECONDITION",
                )
            now = self._clock()
            batch.processed_at_cancel = self._processed_at(batch, now)
            batch.cancel_time = now
            batch.update_time = now
            self._save_batch(batch)

    def delete_batch(self, batch_id: str) -> None:
        """Forget a batch (a live one stops processing; its results file stays)."""
        with self.lock:
            batch = self.get_batch(batch_id)
            del self.batches[batch.id]
            self._input_path(batch.id).unlink(missing_ok=True)
            (self._batches_dir / f"{batch.id}.json").unlink(missing_ok=True)

    def enqueued_tokens(self, model: str) -> int:
        with self.lock:
            self.advance()
            return self._enqueued(model)

    def _enqueued(self, model: str) -> int:
        return sum(b.tokens for b in self.batches.values() if b.is_live and b.model == model)

    # -------------------------------------------------------------------- lifecycle

    def advance(self) -> None:
        """Apply every change due by the clock's current time, oldest first."""
        with self.lock:
            self._advance(self._clock())

    def _advance(self, now: float) -> None:
        while True:
            due: tuple[float, int, _Event, GeminiBatch] | None = None
            for batch in self.batches.values():
                event = self._next_event(batch)
                if event is None or event[0] > now:
                    continue
                candidate = (event[0], batch.sequence, event[1], batch)
                if due is None or candidate[:2] < due[:2]:
                    due = candidate
            if due is None:
                break
            at, _, kind, batch = due
            self._apply(batch, kind, at)
            batch.update_time = at
            self._save_batch(batch)
        for batch in self.batches.values():
            if batch.state == "BATCH_STATE_RUNNING":
                self._count_progress(batch, self._processed_at(batch, now))
        for file in [f for f in self.files.values() if f.expires_time <= now]:
            self._remove_file(file)

    @staticmethod
    def _next_event(batch: GeminiBatch) -> tuple[float, _Event] | None:
        if not batch.is_live:
            return None
        pace = batch.pace
        end: float
        kind: _Event
        if batch.cancel_time is not None:
            end, kind = batch.cancel_time + pace.cancelling, "cancelled"
        elif batch.state == "BATCH_STATE_PENDING":
            end, kind = batch.created_time + pace.validating, "started"
        else:
            assert batch.running_time is not None
            end = batch.running_time + pace.processing_seconds(batch.request_count)
            end, kind = end + pace.finalizing, "finished"
        if end > batch.expires_time:
            return batch.expires_time, "expired"
        return end, kind

    @staticmethod
    def _processed_at(batch: GeminiBatch, at: float) -> int:
        """How many requests a live batch has answered by time ``at``."""
        if batch.state != "BATCH_STATE_RUNNING" or batch.running_time is None:
            return 0
        duration = batch.pace.processing_seconds(batch.request_count)
        fraction = 1.0 if duration <= 0 else min(1.0, (at - batch.running_time) / duration)
        return math.floor(batch.request_count * max(0.0, fraction))

    @staticmethod
    def _count_progress(batch: GeminiBatch, processed: int) -> None:
        failed = sum(
            1 for index in set(batch.request_faults) | set(batch.line_errors) if index < processed
        )
        batch.failed = failed
        batch.succeeded = processed - failed

    def _apply(self, batch: GeminiBatch, kind: _Event, at: float) -> None:
        fault = batch.batch_fault
        if kind == "started":
            if fault is not None and fault.kind == "fail" and fault.completed_fraction <= 0:
                self._end(batch, "BATCH_STATE_FAILED", at, processed=0)
                batch.error = {"code": 13, "message": fault.message or fault.code}
                return
            batch.state = "BATCH_STATE_RUNNING"
            batch.running_time = at
            batch.request_faults, batch.malformed = self._context.faults.plan_requests(
                batch.keys, salt=f"gemini:{batch.sequence}"
            )
        elif kind == "finished" and fault is not None and fault.kind == "fail":
            processed = math.floor(batch.request_count * fault.completed_fraction)
            self._end(batch, "BATCH_STATE_FAILED", at, processed=processed)
            batch.error = {"code": 13, "message": fault.message or fault.code}
        elif kind == "finished" and fault is not None:  # an injected expiry
            self._end(batch, "BATCH_STATE_EXPIRED", at, processed=0)
        elif kind == "finished":
            self._end(batch, "BATCH_STATE_SUCCEEDED", at, processed=batch.request_count)
        elif kind == "cancelled":
            batch.error = {"code": 1, "message": "The batch was cancelled."}
            self._end(batch, "BATCH_STATE_CANCELLED", at, processed=batch.processed_at_cancel)
        else:
            self._end(batch, "BATCH_STATE_EXPIRED", at, processed=0)

    def _end(self, batch: GeminiBatch, state: BatchState, at: float, *, processed: int) -> None:
        """End a batch: its results file for the first ``processed`` requests (an
        expired batch has none), its counts and its state."""
        input_path = self._input_path(batch.id)
        if processed > 0 and input_path.exists():
            output_path = self._files_dir / f".{batch.id}.results.part"
            totals = self._write_results(batch, input_path, output_path, processed)
            size = output_path.stat().st_size
            digest = hashlib.sha256(output_path.read_bytes()).digest()
            file = GeminiFile(
                id=f"batch-{batch.id}",
                sequence=self._sequence(),
                display_name=f"{batch.name} results",
                mime_type="application/jsonl",
                size=size,
                sha256=base64.b64encode(digest).decode(),
                source="GENERATED",
                created_time=at,
                expires_time=at + FILE_LIFETIME_SECONDS,
            )
            os.replace(output_path, self._content_path(file.id))
            self._save_file(file)
            self.files[file.id] = file
            batch.output_file = file.id
            batch.succeeded, batch.failed = totals.succeeded, totals.failed
            self._counters.count_requests_executed(batch.model, totals.executed)
        else:
            batch.succeeded = batch.failed = 0
        batch.state = state
        batch.end_time = at
        input_path.unlink(missing_ok=True)

    def _write_results(
        self, batch: GeminiBatch, input_path: Path, output_path: Path, processed: int
    ) -> _Totals:
        """One line per request answered, in input order (faults applied)."""
        totals = _Totals()
        with input_path.open("rb") as lines, output_path.open("w", encoding="utf-8") as output:
            index = 0
            for raw in lines:
                if not raw.strip():
                    continue
                if index >= processed:
                    break
                key = batch.keys[index]
                malformation = batch.malformed.get(index)
                if malformation == "unknown_id":
                    key += "-unknown"
                problem = batch.line_errors.get(index)
                fault = batch.request_faults.get(index)
                if problem is not None:
                    line = json.dumps({"key": key, "error": {"code": 3, "message": problem}})
                    totals.failed += 1
                elif fault is not None:
                    code = HTTP_TO_GRPC.get(fault.status_code, 2)
                    line = json.dumps(
                        {"key": key, "error": {"code": code, "message": fault.message}}
                    )
                    totals.failed += 1
                else:
                    line = self._answer(batch, key, index, json.loads(raw)["request"], malformation)
                    totals.succeeded += 1
                totals.executed += 1
                index += 1
                if malformation == "missing_line":
                    continue
                if malformation == "invalid_json_line":
                    line = line[: len(line) // 2]
                output.write(line)
                output.write("\n")
        return totals

    def _answer(
        self,
        batch: GeminiBatch,
        key: str,
        index: int,
        request: dict[str, Any],
        malformation: MalformKind | None,
    ) -> str:
        """The results line of a request that ran (an ``error`` line if the responder
        raised)."""
        if malformation == "invalid_reply_text":
            text = INVALID_REPLY_TEXT
        else:
            try:
                text = reply_text(self._context.responder, request)
            except Exception as exc:  # a user responder may raise anything
                message = f"The responder raised {type(exc).__name__}: {exc}"
                return json.dumps({"key": key, "error": {"code": 13, "message": message}})
        split = self._context.usage
        prompt_tokens = count_gemini_request_tokens(request)
        text_tokens = count_text_tokens(text)
        thoughts = split.reasoning_tokens(text_tokens)
        cached = split.cached_tokens(prompt_tokens)
        usage: dict[str, Any] = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": text_tokens,
            "totalTokenCount": prompt_tokens + text_tokens + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        }
        if cached:
            usage["cachedContentTokenCount"] = cached
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return _RESPONSE_LINE.fill(
            {
                "key": encode_string(key),
                "text": encode_string(text),
                "usage": json.dumps(usage),
                "model": encode_string(batch.model),
                "response_id": f'"{batch.id}-{index}"',
            }
        )


def _quota_exceeded(detail: str, quota_id: str, value: int) -> GoogleApiError:
    """The 429 the API answers a create with when a batch quota is used up."""
    return GoogleApiError(
        429,
        "You exceeded your current quota, please check your plan and billing details. For "
        "more information on this error, head to: "
        f"https://ai.google.dev/gemini-api/docs/rate-limits. {detail}",
        "RESOURCE_EXHAUSTED",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaId": quota_id, "quotaValue": str(value)}],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
        ],
    )


def _page(
    records: list[Any],
    page_size: int,
    page_token: str | None,
    field: str,
    render: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """One page of ``records``; the token is the offset of the next page. An empty
    page never carries a token (the SDK's pager cannot take one)."""
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise invalid_argument(f"Invalid page token {page_token!r}.") from None
    chosen = records[start : start + page_size]
    page: dict[str, Any] = {field: [render(record) for record in chosen]}
    if chosen and start + page_size < len(records):
        page["nextPageToken"] = str(start + page_size)
    return page
