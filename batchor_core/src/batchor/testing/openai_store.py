"""The OpenAI emulator's state: files and batches, on disk, advanced by the clock.

:class:`OpenAIStore` is the one place that reads or changes that state; the HTTP
layer (:mod:`batchor.testing.openai_api`) only calls its named operations. Every
operation runs under one lock and first *advances* the state to the clock's
current time: status changes and file expiry are never driven by a background
thread but computed, in time order, from each batch's pace, so the same clock
readings always produce the same history.

Layout of the server's ``data_dir`` (everything a restarted server needs)::

    files/<file_id>.json      FileRecord
    files/<file_id>.content   the bytes
    batches/<batch_id>.json   BatchRecord
    batches/<batch_id>.input  a hard link (or copy) of the input file while the
                              batch is active, so deleting the file is harmless
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel

from batchor.testing.context import ServerContext
from batchor.testing.openai_outputs import Unanswered, write_results
from batchor.testing.openai_records import (
    ENQUEUED_STATUSES,
    BatchErrorEntry,
    BatchRecord,
    BatchStatus,
    FileRecord,
)
from batchor.testing.openai_validation import oversized_file_error, scan_input_file
from batchor.testing.routing import ApiError

COMPLETION_WINDOW_SECONDS = 24 * 60 * 60

BATCH_FILE_LIFETIME_SECONDS = 30 * 24 * 60 * 60
"""How long a ``purpose=batch`` upload lives unless ``expires_after`` says otherwise."""

FILE_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
"""Purposes a client may upload with (``batch_output`` is the server's own)."""

_Event = Literal["validated", "processed", "finished", "expired", "cancelled"]


def _write_json_atomically(path: Path, record: BaseModel) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(record.model_dump_json(), encoding="utf-8")
    os.replace(temporary, path)


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    # An empty page has no object to name: api.openai.com sends null ids then.
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def _after(ids: list[str], after: str | None) -> int:
    """Where a page starts: just past ``after`` (an unknown cursor gives an empty page)."""
    if after is None:
        return 0
    return ids.index(after) + 1 if after in ids else len(ids)


class OpenAIStore:
    """Files and batches of one OpenAI emulator, persisted under the server's ``data_dir``."""

    def __init__(self, context: ServerContext) -> None:
        self.lock = threading.RLock()
        self.files: dict[str, FileRecord] = {}
        self.batches: dict[str, BatchRecord] = {}
        self._active: dict[str, BatchRecord] = {}
        self._context = context
        self._clock = context.clock
        self._limits = context.limits
        self._counters = context.counters
        self._files_dir = context.data_dir / "files"
        self._batches_dir = context.data_dir / "batches"
        self._files_dir.mkdir(parents=True, exist_ok=True)
        self._batches_dir.mkdir(parents=True, exist_ok=True)
        self._next_sequence = 0
        self._load()

    # ----------------------------------------------------------------- persistence

    def _load(self) -> None:
        for path in sorted(self._files_dir.glob("*.json")):
            record = FileRecord.model_validate_json(path.read_text(encoding="utf-8"))
            self.files[record.id] = record
        for path in sorted(self._batches_dir.glob("*.json")):
            batch = BatchRecord.model_validate_json(path.read_text(encoding="utf-8"))
            self.batches[batch.id] = batch
            if not batch.is_terminal:
                self._active[batch.id] = batch
        self.files = dict(sorted(self.files.items(), key=lambda item: item[1].sequence))
        self.batches = dict(sorted(self.batches.items(), key=lambda item: item[1].sequence))
        sequences = [r.sequence for r in self.files.values()] + [
            b.sequence for b in self.batches.values()
        ]
        self._next_sequence = max(sequences, default=-1) + 1
        for batch in self._active.values():
            if batch.model is not None:
                self._counters.see_enqueued_tokens(batch.model, self._enqueued(batch.model))

    def _sequence(self) -> int:
        self._next_sequence += 1
        return self._next_sequence - 1

    def _content_path(self, file_id: str) -> Path:
        return self._files_dir / f"{file_id}.content"

    def _batch_input_path(self, batch_id: str) -> Path:
        return self._batches_dir / f"{batch_id}.input"

    def _save_file(self, record: FileRecord) -> None:
        _write_json_atomically(self._files_dir / f"{record.id}.json", record)

    def _save_batch(self, record: BatchRecord) -> None:
        _write_json_atomically(self._batches_dir / f"{record.id}.json", record)

    # ----------------------------------------------------------------------- files

    def upload_path(self) -> Path:
        """A fresh path in the data directory to stream an upload into."""
        return self._files_dir / f".upload-{uuid.uuid4().hex}.part"

    def add_file(
        self,
        uploaded: Path,
        *,
        filename: str,
        purpose: str,
        size: int,
        expires_after: int | None,
    ) -> FileRecord:
        """Adopt a fully written upload as a new file.

        ``expires_after``: seconds until it expires; ``None`` is OpenAI's default (30
        days for ``purpose=batch``, never for the others).
        """
        if expires_after is None and purpose == "batch":
            expires_after = BATCH_FILE_LIFETIME_SECONDS
        with self.lock:
            now = self._clock()
            self._advance(now)
            record = FileRecord(
                id=f"file-{uuid.uuid4().hex[:24]}",
                sequence=self._sequence(),
                bytes=size,
                created_time=now,
                filename=filename,
                purpose=purpose,
                expires_time=None if expires_after is None else now + expires_after,
            )
            os.replace(uploaded, self._content_path(record.id))
            self._save_file(record)
            self.files[record.id] = record
            return record

    def get_file(self, file_id: str) -> FileRecord:
        with self.lock:
            self.advance()
            record = self.files.get(file_id)
            if record is None:
                raise ApiError(404, f"No such File object: {file_id}", param="id")
            return record

    def list_files(
        self, *, purpose: str | None, after: str | None, limit: int, order: str
    ) -> dict[str, Any]:
        with self.lock:
            self.advance()
            records = [r for r in self.files.values() if purpose is None or r.purpose == purpose]
            if order == "desc":
                records.reverse()
            start = _after([r.id for r in records], after)
            chosen = records[start : start + limit]
            return _page([r.to_api() for r in chosen], start + limit < len(records))

    def delete_file(self, file_id: str) -> dict[str, Any]:
        with self.lock:
            record = self.get_file(file_id)
            self._remove_file(record)
            self._counters.count_file_deleted(record.purpose)
            return {"id": record.id, "object": "file", "deleted": True}

    def _remove_file(self, record: FileRecord) -> None:
        del self.files[record.id]
        self._content_path(record.id).unlink(missing_ok=True)
        (self._files_dir / f"{record.id}.json").unlink(missing_ok=True)

    def open_file_content(self, file_id: str) -> tuple[BinaryIO, int]:
        """Open a file's bytes for streaming (the caller closes the handle)."""
        with self.lock:
            record = self.get_file(file_id)
            return self._content_path(file_id).open("rb"), record.bytes

    def _add_output_file(
        self, path: Path, filename: str, expires_after: int | None
    ) -> FileRecord | None:
        size = path.stat().st_size
        if size == 0:
            path.unlink()
            return None
        now = self._clock()
        record = FileRecord(
            id=f"file-{uuid.uuid4().hex[:24]}",
            sequence=self._sequence(),
            bytes=size,
            created_time=now,
            filename=filename,
            purpose="batch_output",
            expires_time=None if expires_after is None else now + expires_after,
        )
        os.replace(path, self._content_path(record.id))
        self._save_file(record)
        self.files[record.id] = record
        return record

    # --------------------------------------------------------------------- batches

    def create_batch(
        self,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        line_url: str | None = None,
        metadata: dict[str, str] | None,
        output_expires_after: int | None,
    ) -> BatchRecord:
        """Create a ``validating`` batch; its input file is read (and judged) now.

        ``line_url`` is the ``url`` each request line must carry when it is not the
        endpoint itself (Azure writes ``/chat/completions`` for
        ``/v1/chat/completions``)."""
        with self.lock:
            source = self.get_file(input_file_id)
            if source.purpose != "batch":
                raise ApiError(
                    400,
                    f"File {input_file_id} has purpose {source.purpose!r}; a batch input file "
                    "must be uploaded with purpose 'batch'.",
                    param="input_file_id",
                )
            batch_id = f"batch_{uuid.uuid4().hex}"
            linked = self._batch_input_path(batch_id)
            try:
                os.link(self._content_path(input_file_id), linked)
            except OSError:
                shutil.copyfile(self._content_path(input_file_id), linked)
        limits = self._limits
        if source.bytes > limits.max_batch_file_bytes:
            scan = oversized_file_error(linked, limits.max_batch_file_bytes)
        else:
            scan = scan_input_file(linked, line_url or endpoint, limits.max_requests_per_batch)
        with self.lock:
            now = self._clock()
            self._advance(now)
            record = BatchRecord(
                id=batch_id,
                sequence=self._sequence(),
                endpoint=endpoint,
                input_file_id=input_file_id,
                completion_window=completion_window,
                metadata=metadata,
                pace=self._context.pace,
                model=scan.model,
                tokens=scan.tokens,
                request_count=scan.request_count,
                input_bytes=source.bytes,
                custom_ids=scan.custom_ids,
                validation_errors=scan.errors,
                output_expires_after=output_expires_after,
                batch_fault=self._context.faults.take_batch_fault(),
                created_time=now,
                expires_time=now + COMPLETION_WINDOW_SECONDS,
            )
            self.batches[record.id] = record
            self._active[record.id] = record
            self._save_batch(record)
            self._counters.count_batch_created(record.model)
            if record.model is not None:
                self._counters.see_enqueued_tokens(record.model, self._enqueued(record.model))
            return record

    def get_batch(self, batch_id: str) -> BatchRecord:
        with self.lock:
            self.advance()
            record = self.batches.get(batch_id)
            if record is None:
                raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
            return record

    def list_batches(self, *, after: str | None, limit: int) -> dict[str, Any]:
        with self.lock:
            self.advance()
            records = sorted(self.batches.values(), key=lambda r: r.sequence, reverse=True)
            start = _after([r.id for r in records], after)
            chosen = records[start : start + limit]
            return _page([r.to_api() for r in chosen], start + limit < len(records))

    def cancel_batch(self, batch_id: str) -> BatchRecord:
        """Move a live batch to ``cancelling``; requests done by now keep their output."""
        with self.lock:
            record = self.get_batch(batch_id)
            if record.status in ("cancelling", "cancelled"):
                return record
            if record.is_terminal:
                raise ApiError(409, f"Cannot cancel a batch with status '{record.status}'.")
            now = self._clock()
            record.processed_at_cancel = self._processed_at(record, now)
            record.status = "cancelling"
            record.cancelling_time = now
            self._save_batch(record)
            return record

    def enqueued_tokens(self, model: str) -> int:
        with self.lock:
            self.advance()
            return self._enqueued(model)

    def _enqueued(self, model: str) -> int:
        return sum(
            r.tokens
            for r in self._active.values()
            if r.model == model and r.status in ENQUEUED_STATUSES
        )

    # ------------------------------------------------------------------- lifecycle

    def advance(self) -> None:
        """Apply every change due by the clock's current time, oldest first."""
        with self.lock:
            self._advance(self._clock())

    def _advance(self, now: float) -> None:
        while True:
            due: tuple[float, int, _Event, BatchRecord] | None = None
            for record in self._active.values():
                event = self._next_event(record)
                if event is None or event[0] > now:
                    continue
                candidate = (event[0], record.sequence, event[1], record)
                if due is None or candidate[:2] < due[:2]:
                    due = candidate
            if due is None:
                break
            at, _, kind, record = due
            self._apply(record, kind, at)
            self._save_batch(record)
        for record in self._active.values():
            if record.status == "in_progress":
                self._count_progress(record, self._processed_at(record, now))
        expired = [
            r for r in self.files.values() if r.expires_time is not None and r.expires_time <= now
        ]
        for file in expired:
            self._remove_file(file)

    @staticmethod
    def _next_event(record: BatchRecord) -> tuple[float, _Event] | None:
        pace = record.pace
        end: float
        kind: _Event
        if record.status == "validating":
            end, kind = record.created_time + pace.validating, "validated"
        elif record.status == "in_progress" and record.in_progress_time is not None:
            end = record.in_progress_time + pace.processing_seconds(record.request_count)
            kind = "processed"
        elif record.status == "finalizing" and record.finalizing_time is not None:
            end, kind = record.finalizing_time + pace.finalizing, "finished"
        elif record.status == "cancelling" and record.cancelling_time is not None:
            return record.cancelling_time + pace.cancelling, "cancelled"
        else:
            return None
        if end > record.expires_time:
            return record.expires_time, "expired"
        return end, kind

    @staticmethod
    def _processed_at(record: BatchRecord, at: float) -> int:
        """How many requests a live batch has answered by time ``at``."""
        if record.status == "finalizing":
            return record.request_count
        if record.status != "in_progress" or record.in_progress_time is None:
            return 0
        duration = record.pace.processing_seconds(record.request_count)
        fraction = 1.0 if duration <= 0 else min(1.0, (at - record.in_progress_time) / duration)
        return math.floor(record.request_count * max(0.0, fraction))

    @staticmethod
    def _count_progress(record: BatchRecord, processed: int) -> None:
        failed = sum(1 for index in record.request_faults if index < processed)
        record.failed_count = failed
        record.completed_count = processed - failed

    def _apply(self, record: BatchRecord, kind: _Event, at: float) -> None:
        fault = record.batch_fault
        if kind == "validated":
            if record.validation_errors:
                self._fail(record, at, record.validation_errors)
            elif fault is not None and fault.kind == "fail" and fault.completed_fraction <= 0:
                self._fail(record, at, [BatchErrorEntry(code=fault.code, message=fault.message)])
            elif not self._within_token_limit(record):
                self._fail(record, at, [self._token_limit_error(record)])
            else:
                record.status = "in_progress"
                record.in_progress_time = at
                failures, malformed = self._context.faults.plan_requests(
                    record.custom_ids, salt=str(record.sequence)
                )
                record.request_faults = failures
                record.malformed = malformed
        elif kind == "processed":
            if fault is not None:
                processed = math.floor(record.request_count * fault.completed_fraction)
                if fault.kind == "fail":
                    self._finish(record, at, "failed", processed, unanswered="drop")
                    record.errors = [BatchErrorEntry(code=fault.code, message=fault.message)]
                else:
                    rest: Unanswered = "expire" if fault.expired_lines else "drop"
                    self._finish(record, at, "expired", processed, unanswered=rest)
            else:
                record.status = "finalizing"
                record.finalizing_time = at
                self._count_progress(record, record.request_count)
        elif kind == "finished":
            self._finish(record, at, "completed", record.request_count, unanswered=None)
        elif kind == "expired":
            processed = self._processed_at(record, at)
            self._finish(record, at, "expired", processed, unanswered="expire")
        else:
            self._finish(record, at, "cancelled", record.processed_at_cancel, unanswered="drop")

    def _within_token_limit(self, record: BatchRecord) -> bool:
        if record.model is None:
            return True
        limit = self._limits.token_limit(record.model)
        return limit is None or self._enqueued(record.model) <= limit

    def _token_limit_error(self, record: BatchRecord) -> BatchErrorEntry:
        assert record.model is not None
        limit = self._limits.token_limit(record.model) or 0
        # Word for word what api.openai.com sends, so a client can read the limit from it.
        return BatchErrorEntry(
            code="token_limit_exceeded",
            message=(
                f"Enqueued token limit reached for {record.model} in organization org-local. "
                f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress "
                "batches have been completed."
            ),
        )

    def _retire(self, record: BatchRecord) -> None:
        self._active.pop(record.id, None)
        self._batch_input_path(record.id).unlink(missing_ok=True)

    def _fail(self, record: BatchRecord, at: float, errors: list[BatchErrorEntry]) -> None:
        record.status = "failed"
        record.failed_time = at
        record.errors = list(errors)
        self._retire(record)

    def _finish(
        self,
        record: BatchRecord,
        at: float,
        status: BatchStatus,
        processed: int,
        *,
        unanswered: Unanswered | None,
    ) -> None:
        """End a batch that ran (fully or partly): write its files, counts and status."""
        if (processed > 0 or unanswered == "expire") and not record.validation_errors:
            output_path = self._files_dir / f".{record.id}.output.part"
            error_path = self._files_dir / f".{record.id}.errors.part"
            totals = write_results(
                input_path=self._batch_input_path(record.id),
                endpoint=record.endpoint,
                batch_id=record.id,
                processed=processed,
                unanswered=unanswered,
                request_faults=record.request_faults,
                malformed=record.malformed,
                responder=self._context.responder,
                usage=self._context.usage,
                created=int(at),
                output_path=output_path,
                error_path=error_path,
            )
            lifetime = record.output_expires_after
            output = self._add_output_file(output_path, f"{record.id}_output.jsonl", lifetime)
            errors = self._add_output_file(error_path, f"{record.id}_error.jsonl", lifetime)
            record.output_file_id = output.id if output else None
            record.error_file_id = errors.id if errors else None
            record.completed_count = totals.completed
            record.failed_count = totals.failed
            record.input_tokens = totals.input_tokens
            record.cached_tokens = totals.cached_tokens
            record.output_tokens = totals.output_tokens
            record.reasoning_tokens = totals.reasoning_tokens
            self._counters.count_requests_executed(record.model, totals.executed)
        record.status = status
        if status == "completed":
            record.completed_time = at
        elif status == "failed":
            record.failed_time = at
        elif status == "expired":
            record.expired_time = at
        else:
            record.cancelled_time = at
        self._retire(record)
