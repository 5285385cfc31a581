"""``Run``: the durable handle on one run.

A ``Run`` is a view of storage plus a :class:`~batchor.engine.driver.RunDriver`.
Any process holding the same storage, artifacts and credentials can create one
(``BatchRunner.get_run``) and drive, control or read the run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import pyarrow.parquet as pq

from batchor.artifacts.base import ArtifactStore, open_jsonl_read, plain_name, run_prefix
from batchor.engine.config import RunConfig
from batchor.engine.driver import RunDriver
from batchor.engine.ingest import collector_skipping_older_objects
from batchor.engine.planning import estimated_cost_usd, poll_delay
from batchor.engine.structured import ReadOutput, StructuredOutput
from batchor.errors import (
    ArtifactRuleError,
    ConfigurationError,
    RunNotFinishedError,
    RunNotFoundError,
    RunStateError,
    RunTimeoutError,
)
from batchor.files import appending, replaced_atomically, written_atomically
from batchor.results import (
    COST_LIMIT_REASON,
    ArtifactExport,
    ArtifactPrune,
    ItemError,
    ItemResult,
    RunControlState,
    RunStatus,
    RunSummary,
    TerminalResultsExport,
    TerminalResultsPage,
    TokenUsage,
)
from batchor.results_table import ResultsTableLayout
from batchor.storage.base import Storage
from batchor.storage.item_metadata import decode_metadata
from batchor.storage.records import RunRecord, StoredItem
from batchor.types import Clock

_RESULT_PAGE = 5_000
"""Terminal results read from storage at a time when streaming them."""


class Run:
    """A durable run. ``status`` is cached; :meth:`refresh` advances and updates it."""

    def __init__(
        self,
        *,
        record: RunRecord,
        storage: Storage,
        artifacts: ArtifactStore,
        driver: RunDriver,
        clock: Clock,
    ) -> None:
        self._record = record
        self._storage = storage
        self._artifacts = artifacts
        self._driver = driver
        self._clock = clock
        self._summary: RunSummary | None = None

    def __repr__(self) -> str:
        return f"Run(run_id={self.run_id!r}, status={self.status.value!r})"

    @property
    def run_id(self) -> str:
        return self._record.run_id

    @property
    def status(self) -> RunStatus:
        """The status as of the last ``refresh``/``summary`` (no I/O)."""
        return self._summary.status if self._summary is not None else self._record.status

    @property
    def config(self) -> RunConfig:
        return self._driver.config

    @cached_property
    def _structured(self) -> StructuredOutput:
        return StructuredOutput(self.config, self._driver.output_model)

    # -- progress -----------------------------------------------------------------------

    def _fresh_record(self) -> RunRecord:
        record = self._storage.runs.get(self.run_id)
        if record is None:
            raise RunNotFoundError(f"run {self.run_id!r} no longer exists in {self._storage!r}")
        self._record = record
        return record

    def summary(self) -> RunSummary:
        """Counts by item status, batches, tokens and cost, read from storage."""
        record = self._fresh_record()
        counts = self._storage.results.counts(record.run_pk)
        provider = self.config.provider
        price = provider.price()
        spent = None if price is None else price.cost_usd(counts.usage)
        remaining = estimated_cost_usd(
            price,
            counts.estimated_pending_tokens + counts.estimated_submitted_tokens,
            counts.pending + counts.submitted,
            provider.max_output_tokens,
        )
        self._summary = RunSummary(
            run_id=record.run_id,
            status=record.status,
            control_state=record.control_state,
            control_reason=record.control_reason,
            model=record.model,
            total_items=record.item_count,
            pending_items=counts.pending,
            submitted_items=counts.submitted,
            completed_items=counts.completed,
            failed_items=counts.failed,
            batches_in_flight=counts.batches_in_flight,
            batches_total=counts.batches_total,
            input_tokens=counts.input_tokens,
            output_tokens=counts.output_tokens,
            estimated_cost_usd=None if spent is None or remaining is None else spent + remaining,
            ingest_complete=record.ingest_complete,
            estimated_input_tokens=counts.estimated_input_tokens,
            last_error=record.last_error,
            created_at=record.created_at,
            finished_at=record.finished_at,
            provider=record.provider or self.config.provider.kind,
            cached_input_tokens=counts.cached_input_tokens,
            reasoning_tokens=counts.reasoning_tokens,
            cost_usd=spent,
            estimated_remaining_cost_usd=remaining,
            cost_limit_usd=record.cost_limit_usd,
            learned_limits=self._storage.limits.get(provider.budget_scope),
        )
        return self._summary

    def refresh(self) -> RunSummary:
        """Advance the run one step (talking to storage and the provider) and
        return the updated summary."""
        self._driver.step()
        return self.summary()

    def watch(
        self, timeout: float | None = None, *, poll_interval: float | None = None
    ) -> Iterator[RunSummary]:
        """Step the run until it is terminal, yielding its summary after every step
        (the last one yielded is terminal).

        Between steps it sleeps :func:`~batchor.engine.planning.poll_delay`: short
        while things change, backing off to a minute while nothing does, unless
        ``poll_interval`` (or the provider config's) fixes it. After ``timeout``
        seconds it raises :class:`RunTimeoutError`, saying what the run is waiting
        for (a pause included). A run whose ingestion never finished cannot be
        driven: :class:`RunStateError`.
        """
        started = last_change = self._clock.now()
        fixed = poll_interval if poll_interval is not None else self.config.provider.poll_interval
        previous: RunSummary | None = None
        while True:
            record = self._fresh_record()
            if (
                not record.ingest_complete
                and not record.status.is_terminal
                and record.control_state is not RunControlState.CANCEL_REQUESTED
            ):
                raise RunStateError(
                    f"run {self.run_id!r} has not finished ingesting its input; start it "
                    f"again with the same run id (runner.start(job, run_id={self.run_id!r}), "
                    f"or batchor start ... --run-id {self.run_id}) to resume ingestion"
                )
            changed = self._driver.step()
            summary = self.summary()
            yield summary
            if summary.status.is_terminal:
                return
            now = self._clock.now()
            if changed or previous is None or summary.progress_key() != previous.progress_key():
                last_change = now
            previous = summary
            delay = poll_delay(now - last_change, fixed)
            if timeout is not None:
                remaining = started + timeout - now
                if remaining <= 0:
                    raise RunTimeoutError(_timeout_message(summary, timeout))
                delay = min(delay, remaining)
            self._clock.sleep(delay)

    def wait(
        self, timeout: float | None = None, *, poll_interval: float | None = None
    ) -> RunSummary:
        """Refresh until the run is terminal and return its final summary; raises
        :class:`RunTimeoutError` after ``timeout`` seconds (see :meth:`watch`).
        ``poll_interval`` overrides the adaptive polling."""
        final: RunSummary | None = None
        for final in self.watch(timeout, poll_interval=poll_interval):  # noqa: B007
            pass
        assert final is not None
        return final

    # -- control ------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop submitting new batches (in-flight ones are still polled and collected)."""
        record = self._fresh_record()
        self._require_controllable(record, "pause")
        if record.control_state is RunControlState.CANCEL_REQUESTED:
            raise RunStateError(f"run {self.run_id!r} is being cancelled; it cannot be paused")
        self._storage.runs.set_control_state(
            record.run_pk, RunControlState.PAUSED, "paused by request", now=self._clock.now()
        )

    def resume(self) -> None:
        """Let a paused run submit again."""
        record = self._fresh_record()
        self._require_controllable(record, "resume")
        if record.control_state is RunControlState.CANCEL_REQUESTED:
            raise RunStateError(f"run {self.run_id!r} is being cancelled; it cannot be resumed")
        self._storage.runs.resume(record.run_pk, now=self._clock.now())

    def set_cost_limit(self, usd: float | None) -> None:
        """Set (or with ``None`` lift) the run's cost limit; a run paused at its old
        limit resumes. The limit caps what was spent plus what is in flight, at the
        provider's batch prices (see :attr:`BatchJob.cost_limit_usd`)."""
        if usd is not None and not (isinstance(usd, int | float) and usd > 0):
            raise ConfigurationError(f"a cost limit must be a positive number of USD, got {usd!r}")
        record = self._fresh_record()
        self._require_controllable(record, "set the cost limit of")
        if usd is not None and self.config.provider.price() is None:
            raise ConfigurationError(
                f"a cost limit needs a price for model {self.config.provider.model!r}: give "
                "it with pricing={...} on the provider config"
            )
        now = self._clock.now()
        self._storage.runs.set_cost_limit(record.run_pk, usd, now=now)
        if (
            record.control_state is RunControlState.PAUSED
            and record.control_reason == COST_LIMIT_REASON
        ):
            self._storage.runs.resume(record.run_pk, now=now)
            self._storage.runs.set_last_error(record.run_pk, None, now=now)

    def cancel(self, *, remote: bool = False) -> None:
        """Drain-style cancel: submit nothing new, keep collecting in-flight batches,
        then fail every remaining item with ``run_cancelled``. With ``remote=True``
        the provider's in-flight batches are cancelled too (their partial results
        are still recorded)."""
        record = self._fresh_record()
        self._require_controllable(record, "cancel")
        self._storage.runs.set_control_state(
            record.run_pk,
            RunControlState.CANCEL_REQUESTED,
            "cancelled by request",
            now=self._clock.now(),
        )
        if remote:
            self._driver.cancel_remote_batches()

    def _require_controllable(self, record: RunRecord, action: str) -> None:
        if record.status.is_terminal:
            raise RunStateError(
                f"run {self.run_id!r} is already {record.status.value}; cannot {action} it"
            )

    # -- results ------------------------------------------------------------------------

    def _require_terminal(self, operation: str) -> RunRecord:
        record = self._fresh_record()
        if not record.status.is_terminal:
            raise RunNotFinishedError(
                f"{operation} is terminal-only: run {self.run_id!r} is still "
                f"{record.status.value}; "
                "call wait() first, or read_terminal_results() for what has finished"
            )
        return record

    def _result_page(self, record: RunRecord, after_sequence: int, limit: int) -> list[ItemResult]:
        """Up to ``limit`` terminal results after ``after_sequence``."""
        with collector_skipping_older_objects():
            page = self._storage.results.read_terminal(
                record.run_pk, after_sequence=after_sequence, limit=limit
            )
            return [_to_result(item, self._read_output(item)) for item in page]

    def _read_output(self, stored: StoredItem) -> ReadOutput:
        if stored.error_code is not None or stored.output_text is None:
            return ReadOutput(None)
        return self._structured.read(stored.output_text)

    def results(self) -> list[ItemResult]:
        """Every item's result, in terminal sequence order (terminal runs only)."""
        record = self._require_terminal("results()")
        return list(self._iter_results(record, 0))

    def iter_results(self, after_sequence: int = 0) -> Iterator[ItemResult]:
        """Terminal results streamed in sequence order, whatever the run's state."""
        return self._iter_results(self._fresh_record(), after_sequence)

    def _iter_results(self, record: RunRecord, after_sequence: int) -> Iterator[ItemResult]:
        while True:
            page = self._result_page(record, after_sequence, _RESULT_PAGE)
            yield from page
            if len(page) < _RESULT_PAGE:
                return
            after_sequence = page[-1].sequence

    def read_terminal_results(
        self, after_sequence: int = 0, limit: int = 100
    ) -> TerminalResultsPage:
        """Up to ``limit`` terminal results with sequence > ``after_sequence``."""
        if limit < 1:
            raise ConfigurationError(f"limit must be at least 1, got {limit}")
        results = self._result_page(self._fresh_record(), after_sequence, limit)
        return TerminalResultsPage(
            items=results,
            next_after_sequence=results[-1].sequence if results else after_sequence,
        )

    def results_layout(self) -> ResultsTableLayout:
        """The Arrow layout of this run's results table (see :mod:`batchor.results_table`)."""
        return ResultsTableLayout(
            self._structured.output_class,
            self.config.provider.output_kind,
            output_errors=self.config.structured_output is not None,
        )

    def export_terminal_results(
        self,
        path: str | Path,
        after_sequence: int = 0,
        append: bool = False,
        limit: int | None = None,
    ) -> TerminalResultsExport:
        """Write terminal results after ``after_sequence`` to JSONL (or Parquet when
        ``path`` ends in ``.parquet``); returns the cursor to continue from.

        The file is written beside ``path`` and renamed into place once complete, so
        an error or an interruption leaves the previous file as it was. With
        ``append=True`` (JSONL only) a failed append is cut back off the file, which
        never ends in half a line."""
        target = Path(path).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        results = self.iter_results(after_sequence)
        if limit is not None:
            results = _take(results, limit)
        if target.suffix == ".parquet":
            if append:
                raise ConfigurationError("append=True is only supported for JSONL exports")
            with replaced_atomically(target) as temporary:
                count, last = _write_results_parquet(temporary, results, self.results_layout())
        else:
            count, last = 0, after_sequence
            with appending(target) if append else written_atomically(target) as handle:
                for result in results:
                    handle.write(json.dumps(result.to_record(), ensure_ascii=False) + "\n")
                    count, last = count + 1, result.sequence
        return TerminalResultsExport(
            path=target, count=count, next_after_sequence=last if count else after_sequence
        )

    # -- artifacts ----------------------------------------------------------------------

    def _artifact_keys(self) -> list[str]:
        return list(self._artifacts.list_keys(run_prefix(self.run_id)))

    def export_artifacts(self, directory: str | Path) -> ArtifactExport:
        """Copy the run's artifacts plus ``results.jsonl`` into ``directory/<run_id>/``
        and write ``manifest.json`` (path, bytes, sha256 of each file). Artifacts are
        kept compressed; the export holds them as the plain JSONL they are."""
        record = self._require_terminal("export_artifacts()")
        destination = Path(directory).resolve() / self.run_id
        destination.mkdir(parents=True, exist_ok=True)
        prefix = run_prefix(self.run_id)
        exported: list[str] = []
        for key in self._artifact_keys():
            relative = plain_name(key[len(prefix) :])  # exported as the plain JSONL it holds
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with (
                open_jsonl_read(self._artifacts, key) as source,
                replaced_atomically(target) as temporary,
                temporary.open("wb") as handle,
            ):
                shutil.copyfileobj(source, handle, 1024 * 1024)
            exported.append(relative)
        results_path = destination / "results.jsonl"
        self.export_terminal_results(results_path)
        files = [*exported, "results.jsonl"]
        manifest = {
            "run_id": self.run_id,
            "status": record.status.value,
            "artifact_store": self._artifacts.location,
            "files": [
                {
                    "path": name,
                    "bytes": (destination / name).stat().st_size,
                    "sha256": _sha256(destination / name),
                }
                for name in files
            ],
        }
        manifest_path = destination / "manifest.json"
        with written_atomically(manifest_path) as handle:
            handle.write(json.dumps(manifest, indent=2) + "\n")
        self._storage.runs.mark_raw_outputs_exported(record.run_pk, now=self._clock.now())
        return ArtifactExport(
            directory=destination,
            manifest_path=manifest_path,
            results_path=results_path,
            exported_artifact_paths=exported,
        )

    def prune_artifacts(self, *, include_raw_outputs: bool = True) -> ArtifactPrune:
        """Delete the run's artifacts (terminal runs only). Request artifacts can go
        at once; raw output/error artifacts only after :meth:`export_artifacts`."""
        record = self._require_terminal("prune_artifacts()")
        keys = self._artifact_keys()
        raw = [key for key in keys if "/outputs/" in key]
        if raw and include_raw_outputs and record.raw_outputs_exported_at is None:
            raise ArtifactRuleError(
                f"raw output artifacts of run {self.run_id!r} must be exported before they are "
                "pruned: call export_artifacts(dir) first, or prune_artifacts("
                "include_raw_outputs=False) to remove only the request artifacts"
            )
        removable = [key for key in keys if include_raw_outputs or key not in raw]
        for key in removable:
            self._artifacts.delete(key)
        return ArtifactPrune(
            removed_artifact_paths=removable,
            kept_artifact_paths=[key for key in keys if key not in removable],
        )


def _take(results: Iterator[ItemResult], limit: int) -> Iterator[ItemResult]:
    for index, result in enumerate(results):
        if index >= limit:
            return
        yield result


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _to_result(stored: StoredItem, read: ReadOutput) -> ItemResult:
    error = None
    if stored.error_code is not None:
        error = ItemError(
            stored.error_code, stored.error_message or "", bool(stored.error_retryable)
        )
    return ItemResult(
        item_id=stored.item_id,
        status=stored.status,
        output=read.output,
        output_text=stored.output_text,
        error=error,
        attempts=stored.attempts,
        usage=TokenUsage(
            stored.input_tokens or 0,
            stored.output_tokens or 0,
            stored.cached_input_tokens or 0,
            stored.reasoning_tokens or 0,
        ),
        metadata=decode_metadata(stored.item_id, stored.metadata_json),
        sequence=stored.sequence or 0,
        resubmissions=stored.resubmissions,
        output_error=read.error,
    )


def _timeout_message(summary: RunSummary, timeout: float) -> str:
    waiting = ""
    if summary.control_state is RunControlState.PAUSED:
        reason = f" ({summary.control_reason})" if summary.control_reason else ""
        in_flight = summary.batches_in_flight
        waiting = (
            f"; it is paused{reason}"
            + (
                " with nothing in flight, so it will not move until resumed"
                if in_flight == 0
                else f", {in_flight} batch(es) still in flight"
            )
            + " (resume() it, or batchor resume)"
        )
    if summary.last_error:
        waiting += f"; last error: {summary.last_error}"
    return (
        f"run {summary.run_id!r} is still {summary.status.value} after {timeout:g} s "
        f"({summary.terminal_items:,}/{summary.total_items:,} items terminal){waiting}; "
        f"it goes on: wait again (batchor wait {summary.run_id}) to keep waiting"
    )


def _write_results_parquet(
    path: Path, results: Iterator[ItemResult], layout: ResultsTableLayout
) -> tuple[int, int]:
    count = last = 0
    with pq.ParquetWriter(path, layout.schema) as writer:
        page: list[ItemResult] = []
        for result in results:
            page.append(result)
            if len(page) >= 10_000:
                writer.write_batch(layout.record_batch(page))
                count, last, page = count + len(page), page[-1].sequence, []
        if page:
            writer.write_batch(layout.record_batch(page))
            count, last = count + len(page), page[-1].sequence
    return count, last
