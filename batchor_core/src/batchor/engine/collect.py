"""Collection: a finished batch's result files become one update per item.

The result files are downloaded (kept as raw artifacts, or in a temporary
directory), parsed line by line by the provider, checked against what the
requests asked for (:class:`~batchor.engine.structured.StructuredOutput`), and
matched to the batch's items by ``custom_id``. Every item of the batch gets
exactly one update: from its result line, or, when there is none, from what the
batch's end says of the rest (expired, cancelled, failed as a whole, missing).
The updates are recorded in one transaction.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel

from batchor.artifacts.base import (
    ArtifactStore,
    open_jsonl_read,
    open_jsonl_write,
    raw_output_key,
)
from batchor.engine.config import RunConfig
from batchor.engine.outcomes import decide
from batchor.engine.structured import StructuredOutput
from batchor.providers.base import (
    BatchProvider,
    BatchStatus,
    OutcomeKind,
    ProviderBatch,
    RequestOutcome,
    ResultLineError,
)
from batchor.storage.batches import BatchStore
from batchor.storage.records import BatchItemState, BatchRecord, ItemUpdate
from batchor.types import Clock

logger = logging.getLogger("batchor")

_RESULT_FILE_KINDS = ("output", "error")
"""Names of a batch's raw result artifacts, in the order the provider lists its files
(a provider with one results file keeps it as ``output``)."""


class Collector:
    """Records the outcome of finished batches of one run."""

    def __init__(
        self,
        *,
        run_id: str,
        batches: BatchStore,
        artifacts: ArtifactStore,
        provider: BatchProvider,
        config: RunConfig,
        output_model: Callable[[], type[BaseModel] | None],
        clock: Clock,
    ) -> None:
        self.run_id = run_id
        self.batches = batches
        self.artifacts = artifacts
        self.provider = provider
        self.config = config
        self.output_model = output_model
        self.clock = clock

    def collect(self, batch: BatchRecord, remote: ProviderBatch, *, cancelled_by_run: bool) -> None:
        """Download and record every result of a terminal batch."""
        keep_raw = self.config.artifact_policy.persist_raw_output_artifacts
        with tempfile.TemporaryDirectory(prefix="batchor-") as workdir, ExitStack() as stack:
            files: list[BinaryIO] = []
            kept: dict[str, str] = {}
            for kind, ref in zip(_RESULT_FILE_KINDS, remote.result_files, strict=False):
                if keep_raw:
                    key = raw_output_key(self.run_id, batch.batch_number, kind)
                    with open_jsonl_write(self.artifacts, key) as handle:
                        self.provider.download(ref, handle)
                    kept[kind] = key
                    files.append(stack.enter_context(open_jsonl_read(self.artifacts, key)))
                else:
                    path = Path(workdir) / f"{kind}.jsonl"
                    with path.open("wb") as handle:
                        self.provider.download(ref, handle)
                    files.append(stack.enter_context(path.open("rb")))
            items = self.batches.items_of(batch)
            leftover = _leftover(remote, cancelled_by_run)
            failing_lines = {error.line: error for error in remote.errors if error.line is not None}
            now = self.clock.now()

            def updates() -> Iterator[ItemUpdate]:
                by_custom_id = {
                    self.provider.custom_id(item.item_id, item.item_index): item for item in items
                }
                seen: set[int] = set()
                for outcome in self._outcomes(files):
                    item = by_custom_id.get(outcome.custom_id)
                    if item is None or item.item_index in seen:
                        logger.warning(
                            "run %s, batch %d: ignoring a result for %s custom_id %r",
                            self.run_id,
                            batch.batch_number,
                            "an unknown" if item is None else "an already answered",
                            outcome.custom_id,
                        )
                        continue
                    seen.add(item.item_index)
                    yield decide(item, outcome, self.config.retry_policy, now)
                for line, item in enumerate(items, 1):
                    if item.item_index in seen:
                        continue
                    error = failing_lines.get(line)
                    outcome = leftover
                    if error is not None:  # the provider faulted this very request
                        outcome = RequestOutcome(
                            "",
                            kind=OutcomeKind.FAILED,
                            error_code=error.code,
                            error_message=f"{error.message} (line {line} of the batch input)",
                        )
                    yield decide(item, outcome, self.config.retry_policy, now)

            self.batches.record_outcomes(
                batch, updates(), provider_status=remote.status.value, now=now
            )
            if keep_raw:
                self.batches.set_raw_artifacts(
                    batch.batch_pk, kept.get("output"), kept.get("error")
                )

    def record_without_results(
        self, batch: BatchRecord, outcome: RequestOutcome, *, provider_status: str
    ) -> None:
        """Give every item of ``batch`` the same ``outcome`` (a batch that never ran)."""
        now = self.clock.now()
        items: list[BatchItemState] = self.batches.items_of(batch)
        self.batches.record_outcomes(
            batch,
            (decide(item, outcome, self.config.retry_policy, now) for item in items),
            provider_status=provider_status,
            now=now,
        )

    def _outcomes(self, files: list[BinaryIO]) -> Iterator[RequestOutcome]:
        output = StructuredOutput(self.config, self.output_model)
        for handle in files:
            for line_number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    outcome = self.provider.parse_result_line(line)
                except ResultLineError as exc:
                    logger.warning(
                        "run %s: skipping result line %d: %s", self.run_id, line_number, exc
                    )
                    continue
                yield output.check_reply(outcome)


def _leftover(remote: ProviderBatch, cancelled_by_run: bool) -> RequestOutcome:
    """The outcome of the requests a terminal batch returned nothing for."""
    status = remote.status
    if status is BatchStatus.CANCELLED and cancelled_by_run:
        return RequestOutcome(
            "", kind=OutcomeKind.FAILED, error_code="run_cancelled",
            error_message="the run was cancelled",
        )  # fmt: skip
    if status is BatchStatus.CANCELLED:
        return _not_executed("batch_cancelled", "the provider cancelled the batch before it ran")
    if status is BatchStatus.EXPIRED:
        return _not_executed("batch_expired", "the batch expired before this request ran")
    if status is BatchStatus.FAILED:
        first = remote.errors[0] if remote.errors else None
        message = (
            "; ".join(
                f"{error.message} (line {error.line})" if error.line else error.message
                for error in remote.errors[:5]
            )
            or "the provider failed the batch"
        )
        return _not_executed(first.code if first else "batch_failed", message)
    return _not_executed("missing_result", "the batch completed without a result for this request")


def _not_executed(code: str, message: str) -> RequestOutcome:
    return RequestOutcome("", kind=OutcomeKind.NOT_EXECUTED, error_code=code, error_message=message)
