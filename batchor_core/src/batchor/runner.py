"""``BatchRunner``: start runs, wait for them, and find them again."""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from batchor.artifacts.base import ArtifactStore
from batchor.artifacts.local import LocalArtifactStore
from batchor.engine.config import RunConfig, describe_differences
from batchor.engine.driver import LEASE_TTL_SECONDS, RunDriver, new_lease_owner
from batchor.engine.ingest import ProgressCallback, collector_skipping_older_objects, ingest
from batchor.engine.plan import plan_job
from batchor.errors import (
    ConfigurationError,
    RunNotFoundError,
    SourceMismatchError,
    StorageConflictError,
)
from batchor.job import BatchJob
from batchor.providers.base import BatchProvider
from batchor.providers.credentials import without_credentials
from batchor.results import JobPlan
from batchor.run import Run
from batchor.sources.base import CheckpointedItemSource, resume_conflict
from batchor.storage.base import Storage
from batchor.storage.records import NewRun, RunRecord
from batchor.storage.sqlite import MemoryStorage, SQLiteStorage
from batchor.types import BatchItem, Clock, SystemClock, canonical_json, check_run_id


def new_run_id(clock: Clock) -> str:
    """``batchor_<UTC timestamp>_<8 hex>``, e.g. ``batchor_20260329T120000Z_ab12cd34``."""
    stamp = datetime.fromtimestamp(clock.now(), tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"batchor_{stamp}_{secrets.token_hex(4)}"


class BatchRunner:
    """Runs batch jobs durably.

    ``storage``: ``None`` for the default SQLite file (``$BATCHOR_HOME/default.sqlite3``),
    ``"memory"`` for an ephemeral database, or a :class:`SQLiteStorage` /
    :class:`PostgresStorage`. ``artifact_store`` defaults to a directory beside
    the SQLite file (a temporary directory for memory storage). ``api_key``
    overrides the key used to drive rehydrated runs (else ``$OPENAI_API_KEY``) and
    ``base_url`` the API address they were started with (e.g. a proxy moved).
    ``base_url_from_environment`` lets each run's provider variable
    (``$OPENAI_BASE_URL``, ``$GEMINI_BASE_URL``...) win over the stored address too,
    as the command line does. ``lease_ttl`` is how long, in seconds, a run stays
    leased to this runner's
    process after its last sign of life; another process takes the run over
    only once that has passed (or at once if it sees the holder's pid is dead
    on the same host). It must exceed the longest step.
    """

    def __init__(
        self,
        storage: Storage | Literal["memory"] | None = None,
        artifact_store: ArtifactStore | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        base_url_from_environment: bool = False,
        clock: Clock | None = None,
        lease_ttl: float = LEASE_TTL_SECONDS,
    ) -> None:
        if lease_ttl <= 0:
            raise ConfigurationError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        if storage is None:
            storage = SQLiteStorage(name="default")
        elif storage == "memory":
            storage = MemoryStorage()
        elif not isinstance(storage, Storage):
            raise ConfigurationError(
                "BatchRunner storage must be None, 'memory', SQLiteStorage(...) or "
                f"PostgresStorage(...), got {storage!r}"
            )
        self.storage: Storage = storage
        if artifact_store is None:
            if isinstance(storage, MemoryStorage):
                artifact_store = LocalArtifactStore(_temporary_root())
            elif (root := storage.default_artifact_root()) is not None:
                artifact_store = LocalArtifactStore(root)
            else:
                raise ConfigurationError(
                    f"{storage!r} has no default artifact location: pass artifact_store= "
                    "(a LocalArtifactStore on a shared path or an FsspecArtifactStore) that "
                    "every process driving its runs can reach"
                )
        self.artifact_store = artifact_store
        self.clock: Clock = clock or SystemClock()
        url_key = None
        if base_url is not None:
            base_url, url_key = without_credentials(base_url)
        self._api_key = api_key or url_key
        self._base_url = base_url
        self._base_url_from_environment = base_url_from_environment
        self._owner = new_lease_owner()
        self.lease_ttl = lease_ttl

    @property
    def lease_owner(self) -> str:
        """The owner id (``host:pid:random``) this runner's steps hold run leases under."""
        return self._owner

    def __repr__(self) -> str:
        return f"BatchRunner(storage={self.storage!r}, artifact_store={self.artifact_store!r})"

    def start(
        self, job: BatchJob, run_id: str | None = None, *, progress: ProgressCallback | None = None
    ) -> Run:
        """Persist the run and ingest its whole input, then return without waiting.

        Calling it again with the same ``run_id`` resumes an interrupted ingestion
        (from the checkpoint for checkpointed sources, skipping stored item ids for
        plain iterables); a different source or job config raises
        :class:`SourceMismatchError`. ``progress`` is called with the number of
        items stored after each slice.

        While it ingests, this runner holds the run's lease: a second ``start`` of
        the same run elsewhere meanwhile raises :class:`RunStateError` saying that
        another process is ingesting it. If ingestion fails, the run stays
        ``running`` with ``ingest_complete=False`` and the reason as its
        ``last_error``; ``start`` again with the same ``run_id`` resumes it, and
        ``cancel()`` discards it.
        """
        config = RunConfig.from_job(job)
        if job.cost_limit_usd is not None and config.provider.price() is None:
            raise ConfigurationError(
                f"cost_limit_usd needs a price for model {config.provider.model!r}, which "
                "batchor does not know: give it with pricing={...} on the provider config"
            )
        identity = (
            canonical_json(job.items.source_identity())
            if isinstance(job.items, CheckpointedItemSource)
            else None
        )
        run_id = check_run_id(run_id) if run_id is not None else new_run_id(self.clock)
        record = self.storage.runs.get(run_id)
        if record is None:
            try:
                record = self.storage.runs.create(
                    NewRun(
                        run_id=run_id,
                        provider=config.provider.kind,
                        model=config.provider.model,
                        config=config.to_json(),
                        config_fingerprint=config.fingerprint(),
                        source_identity=identity,
                        cost_limit_usd=job.cost_limit_usd,
                    ),
                    now=self.clock.now(),
                )
            except StorageConflictError:
                # another process created it a moment ago: the same job, or a mismatch
                record = self.storage.runs.get(run_id)
                if record is None:
                    raise
                _check_same_job(record, config, identity, job.items)
        else:
            _check_same_job(record, config, identity, job.items)
            if job.cost_limit_usd is not None and job.cost_limit_usd != record.cost_limit_usd:
                self.storage.runs.set_cost_limit(
                    record.run_pk, job.cost_limit_usd, now=self.clock.now()
                )
        run = self._run(
            record,
            config,
            job_api_key=job.provider_config.api_key,
            output_model=job.structured_output,
        )
        if not record.ingest_complete:
            ingest(
                self.storage,
                self.artifact_store,
                record,
                job,
                run._driver.provider,
                clock=self.clock,
                progress=progress,
                owner=self._owner,
                lease_ttl=self.lease_ttl,
            )
        run.summary()
        return run

    def plan(self, job: BatchJob) -> JobPlan:
        """What ``start(job)`` would submit, without storing or submitting anything:
        items, batches, estimated tokens and cost, the first request line, and a
        fingerprint of every request (see :class:`~batchor.JobPlan`).

        The input is read and every prompt built, with every check ``start`` makes,
        so a plan that succeeds is a job that ingests. Limits learned from earlier
        refusals in this storage apply.
        """
        config = RunConfig.from_job(job)
        provider = config.create_provider(job.provider_config.api_key or self._api_key)
        learned = self.storage.limits.get(config.provider.budget_scope)
        with collector_skipping_older_objects():
            return plan_job(job, config, provider, learned)

    def run_and_wait(
        self, job: BatchJob, run_id: str | None = None, timeout: float | None = None
    ) -> Run:
        """``start`` then ``wait``: returns the terminal run."""
        run = self.start(job, run_id=run_id)
        run.wait(timeout=timeout)
        return run

    def get_run(self, run_id: str) -> Run:
        """The run with this id, rehydrated from storage (any process)."""
        record = self.storage.runs.get(run_id)
        if record is None:
            raise RunNotFoundError(
                f"no run {run_id!r} in {self.storage!r}; list_runs() shows the runs it has"
            )
        run = self._run(record, self._stored_config(record), job_api_key=None)
        run.summary()
        return run

    def list_runs(self, *, active_only: bool = False) -> list[Run]:
        """Every run in the storage, newest first (``active_only``: still running)."""
        return [
            self._run(record, self._stored_config(record), job_api_key=None)
            for record in self.storage.runs.list_runs(active_only=active_only)
        ]

    def _stored_config(self, record: RunRecord) -> RunConfig:
        """The run's stored config, pointed at this runner's ``base_url`` if it has one
        (or, with ``base_url_from_environment``, at the address in the run's provider's
        environment variable, e.g. ``$GEMINI_BASE_URL`` for a Gemini run)."""
        config = RunConfig.from_json(record.config)
        base_url = self._base_url
        variable = config.provider.BASE_URL_ENV
        if base_url is None and self._base_url_from_environment and variable:
            base_url = os.environ.get(variable) or None
        if base_url is None:
            return config
        base_url, url_key = without_credentials(base_url)
        updates: dict[str, str] = {"base_url": base_url}
        if url_key and self._api_key is None:
            self._api_key = url_key
        provider = config.provider.model_copy(update=updates)
        return config.model_copy(update={"provider": provider})

    def _run(
        self,
        record: RunRecord,
        config: RunConfig,
        *,
        job_api_key: str | None,
        output_model: type[BaseModel] | None = None,
    ) -> Run:
        """A handle on ``record``. ``output_model`` is the job's own class when the
        run was just started here; rehydrated runs import it from its reference."""
        api_key = job_api_key or self._api_key

        def make_provider() -> BatchProvider:
            return config.create_provider(api_key)

        driver = RunDriver(
            storage=self.storage,
            artifacts=self.artifact_store,
            run_id=record.run_id,
            config=config,
            provider_factory=make_provider,
            output_model=(lambda: output_model) if output_model else config.output_model,
            clock=self.clock,
            owner=self._owner,
            lease_ttl=self.lease_ttl,
        )
        return Run(
            record=record,
            storage=self.storage,
            artifacts=self.artifact_store,
            driver=driver,
            clock=self.clock,
        )


def _check_same_job(
    record: RunRecord,
    config: RunConfig,
    identity: str | None,
    source: Iterable[BatchItem] | CheckpointedItemSource,
) -> None:
    """Raise :class:`SourceMismatchError` unless ``start`` got the run's job again.

    A checkpointed source whose identity changed may still continue the run when
    the change comes after everything already ingested (see
    :func:`~batchor.sources.base.resume_conflict`).
    """
    problems: list[str] = []
    stored_config = RunConfig.from_json(record.config)
    if stored_config.fingerprint() != config.fingerprint():
        stored = stored_config.identity()
        problems += [
            f"job config {line}" for line in describe_differences(stored, config.identity())
        ]
    stored_identity = json.loads(record.source_identity) if record.source_identity else None
    current_identity = json.loads(identity) if identity else None
    if stored_identity != current_identity:
        if stored_identity is None or current_identity is None:
            problems.append(
                "source kind: the run was started with "
                + ("a checkpointed source" if stored_identity else "a plain iterable")
                + ", now "
                + ("a checkpointed source" if current_identity else "a plain iterable")
            )
        elif isinstance(source, CheckpointedItemSource):
            checkpoint = json.loads(record.source_checkpoint) if record.source_checkpoint else None
            conflict = resume_conflict(
                source, stored_identity, checkpoint, ingest_complete=record.ingest_complete
            )
            if conflict is not None:
                problems += [
                    f"source {line}"
                    for line in describe_differences(stored_identity, current_identity)
                ] + [conflict]
    if problems:
        raise SourceMismatchError(
            f"run {record.run_id!r} was started with a different source or job: "
            + "; ".join(problems)
            + ". Use the original input and job settings to resume, or a new run_id."
        )


def _temporary_root() -> str:
    root = tempfile.mkdtemp(prefix="batchor-artifacts-")
    atexit.register(shutil.rmtree, root, True)
    return root
