"""The Anthropic emulator's state: message batches, on disk, advanced by the clock.

:class:`AnthropicStore` is the one place that reads or changes that state; the HTTP
layer (:mod:`batchor.testing.anthropic_api`) only calls its named operations. As in
the OpenAI emulator, every operation runs under one lock and first *advances* every
batch to the clock's current time, so the same clock readings give the same history.

A batch is ``in_progress`` from its creation until it ends: after
``pace.validating + pace.processing_seconds(n) + pace.finalizing`` seconds with all
its requests answered, at ``expires_at`` (24 hours) with the rest ``expired``, or
``pace.cancelling`` seconds after a cancel (``canceling`` meanwhile) with the rest
``canceled``. Its results are written when it ends.

Layout, under ``<data_dir>/anthropic``::

    batches/<id>.json            MessageBatchRecord
    batches/<id>.body.json       the create call's body, as sent
    batches/<id>.results.jsonl   the results, once ended
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any, BinaryIO

from batchor.testing.anthropic_records import (
    BATCH_LIFETIME_SECONDS,
    AnthropicLimits,
    Ending,
    MessageBatchRecord,
)
from batchor.testing.anthropic_results import Unanswered, write_results
from batchor.testing.context import ServerContext
from batchor.testing.routing import ApiError

_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghijkmnopqrstuvwxyz"


def _new_id() -> str:
    return "msgbatch_01" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def not_found(batch_id: str) -> ApiError:
    return ApiError(404, f"message_batch {batch_id!r} not found", type="not_found_error")


class AnthropicStore:
    """Message batches of one Anthropic emulator, persisted under the server's data dir."""

    def __init__(self, context: ServerContext, limits: AnthropicLimits) -> None:
        self.lock = threading.RLock()
        self.batches: dict[str, MessageBatchRecord] = {}
        self.limits = limits
        self._context = context
        self._clock = context.clock
        self._counters = context.counters
        self._dir = context.data_dir / "anthropic" / "batches"
        self._dir.mkdir(parents=True, exist_ok=True)
        for path in self._dir.glob("*.json"):
            if path.name.endswith(".body.json"):
                continue
            record = MessageBatchRecord.model_validate_json(path.read_text(encoding="utf-8"))
            self.batches[record.id] = record
        self.batches = dict(sorted(self.batches.items(), key=lambda item: item[1].sequence))
        self._next_sequence = max((b.sequence for b in self.batches.values()), default=-1) + 1

    # ----------------------------------------------------------------- persistence

    def _path(self, batch_id: str, suffix: str) -> Path:
        return self._dir / f"{batch_id}{suffix}"

    def _save(self, record: MessageBatchRecord) -> None:
        path = self._path(record.id, ".json")
        temporary = path.with_suffix(".tmp")
        temporary.write_text(record.model_dump_json(), encoding="utf-8")
        os.replace(temporary, path)

    # --------------------------------------------------------------------- batches

    def queued_requests(self) -> int:
        """Requests of every batch not yet ended: what fills the processing queue."""
        return sum(r.request_count for r in self.batches.values() if not r.ended)

    def create(
        self, body: bytes, requests: list[dict[str, Any]], models: list[str]
    ) -> MessageBatchRecord:
        """Store a new ``in_progress`` batch of already validated ``requests``; 429 when
        it would overfill the processing queue."""
        with self.lock:
            now = self._clock()
            self._advance(now)
            limit = self.limits.queued_request_limit
            queued = self.queued_requests()
            if limit is not None and queued + len(requests) > limit:
                raise ApiError(
                    429,
                    f"Number of batch requests in the processing queue would exceed the limit "
                    f"of {limit:,} requests for this workspace ({queued:,} queued, "
                    f"{len(requests):,} in this batch). Try again once some batches have "
                    "finished processing.",
                    type="rate_limit_error",
                    headers={"retry-after": "1"},
                )
            custom_ids = [str(request["custom_id"]) for request in requests]
            faults = self._context.faults
            sequence = self._next_sequence
            self._next_sequence += 1
            request_faults, malformed = faults.plan_requests(custom_ids, salt=f"a{sequence}")
            record = MessageBatchRecord(
                id=_new_id(),
                sequence=sequence,
                pace=self._context.pace,
                created_time=now,
                expires_time=now + BATCH_LIFETIME_SECONDS,
                request_count=len(requests),
                custom_ids=custom_ids,
                models=models,
                body_bytes=len(body),
                batch_fault=faults.take_batch_fault(),
                request_faults=request_faults,
                malformed=malformed,
            )
            self._path(record.id, ".body.json").write_bytes(body)
            self._save(record)
            self.batches[record.id] = record
            self._counters.count_batch_created(models[0] if models else None)
            self._counters.see_queued_requests(self.queued_requests())
            return record

    def get(self, batch_id: str) -> MessageBatchRecord:
        with self.lock:
            self.advance()
            record = self.batches.get(batch_id)
            if record is None:
                raise not_found(batch_id)
            return record

    def list(
        self, *, before_id: str | None, after_id: str | None, limit: int
    ) -> tuple[list[MessageBatchRecord], bool]:
        """A page of batches, newest first: those just after ``after_id`` (older), or
        just before ``before_id`` (newer); and whether more lie beyond the page."""
        with self.lock:
            self.advance()
            records = sorted(self.batches.values(), key=lambda r: r.sequence, reverse=True)
            ids = [r.id for r in records]
            if before_id is not None:
                end = ids.index(before_id) if before_id in ids else 0
                start = max(0, end - limit)
                return records[start:end], start > 0
            if after_id is None:
                start = 0
            else:  # an unknown cursor gives an empty page
                start = ids.index(after_id) + 1 if after_id in ids else len(ids)
            return records[start : start + limit], start + limit < len(records)

    def cancel(self, batch_id: str) -> MessageBatchRecord:
        """Move a batch to ``canceling``; the requests answered by now keep their results.
        An ended or canceling batch is returned as it is."""
        with self.lock:
            record = self.get(batch_id)
            if record.status != "in_progress":
                return record
            now = self._clock()
            record.status = "canceling"
            record.cancel_time = now
            record.processed_at_cancel = record.processed_at(now)
            self._save(record)
            return record

    def delete(self, batch_id: str) -> None:
        """Remove an ended batch and its results (400 while it is not ended)."""
        with self.lock:
            record = self.get(batch_id)
            if not record.ended:
                raise ApiError(
                    400,
                    f"Batch {batch_id} cannot be deleted while it is {record.status}; cancel it "
                    "and wait for it to end first.",
                )
            del self.batches[batch_id]
            for suffix in (".json", ".body.json", ".results.jsonl"):
                self._path(batch_id, suffix).unlink(missing_ok=True)

    def open_results(self, batch_id: str) -> tuple[BinaryIO, int]:
        """Open an ended batch's results for streaming (the caller closes the handle)."""
        with self.lock:
            record = self.get(batch_id)
            if not record.ended:
                raise ApiError(
                    400,
                    f"Results of batch {batch_id} are not available yet: it is {record.status}.",
                )
            path = self._path(batch_id, ".results.jsonl")
            return path.open("rb"), path.stat().st_size

    # ------------------------------------------------------------------- lifecycle

    def advance(self) -> None:
        """End every batch due to end by the clock's current time, oldest first."""
        with self.lock:
            self._advance(self._clock())

    def _advance(self, now: float) -> None:
        due: list[tuple[float, int, MessageBatchRecord, Ending]] = []
        for record in self.batches.values():
            ending = self._ending(record)
            if ending is not None and ending[0] <= now:
                due.append((ending[0], record.sequence, record, ending[1]))
        for at, _, record, how in sorted(due, key=lambda entry: entry[:2]):
            self._end(record, at, how)

    @staticmethod
    def _ending(record: MessageBatchRecord) -> tuple[float, Ending] | None:
        if record.status == "canceling" and record.cancel_time is not None:
            return record.cancel_time + record.pace.cancelling, "canceled"
        if record.status != "in_progress":
            return None
        if record.processing_end > record.expires_time:
            return record.expires_time, "expired"
        return record.processing_end, "processed"

    def _end(self, record: MessageBatchRecord, at: float, how: Ending) -> None:
        """Write the results of a batch that ends at ``at``, and count them."""
        count = record.request_count
        fault = record.batch_fault
        unanswered: Unanswered
        if how == "canceled":
            processed, unanswered = record.processed_at_cancel, "canceled"
        elif how == "expired":
            processed, unanswered = record.processed_at(at), "expired"
        elif fault is not None and fault.kind == "expire":
            processed = int(count * fault.completed_fraction)
            unanswered = "expired" if fault.expired_lines else "drop"
        elif fault is not None:
            processed, unanswered = int(count * fault.completed_fraction), "errored"
        else:
            processed, unanswered = count, "drop"
        body = json.loads(self._path(record.id, ".body.json").read_bytes())
        totals = write_results(
            requests=body["requests"],
            key=f"{record.sequence}",
            processed=processed,
            unanswered=unanswered,
            fault_message=fault.message if fault is not None else "",
            request_faults=record.request_faults,
            malformed=record.malformed,
            responder=self._context.responder,
            usage=self._context.usage,
            output_path=self._path(record.id, ".results.jsonl"),
        )
        record.status = "ended"
        record.ending = how
        record.ended_time = at
        record.succeeded = totals.succeeded
        record.errored = totals.errored
        record.canceled = totals.canceled
        record.expired = totals.expired
        for model, ran in totals.executed.items():
            self._counters.count_requests_executed(model, ran)
        self._save(record)
