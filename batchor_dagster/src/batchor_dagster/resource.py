"""``BatchorResource``: where batchor keeps its runs, and how it reaches the provider.

The resource is the one place a Dagster deployment configures batchor. Assets,
sensors and ops ask it for a :class:`~batchor.BatchRunner` (or a
:class:`~batchor.Run` by id); it never hands the API key to anything that
stores or logs: the key lives only in the resource's memory and in the
provider client it builds. Pass it with ``EnvVar("OPENAI_API_KEY")`` so run
config and the UI show the variable's name, never its value.
"""

from __future__ import annotations

from typing import Any, TypeVar

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from batchor import (
    BatchRunner,
    ConfigurationError,
    ProviderConfig,
    Run,
    Storage,
    open_artifact_store,
    open_storage,
)

ConfigT = TypeVar("ConfigT", bound=ProviderConfig)


class BatchorResource(ConfigurableResource):  # type: ignore[type-arg]
    """batchor's storage, artifacts and provider credentials for a Dagster deployment.

    Every process that drives a run (the submit asset's run worker, the sensor in
    the code server, the results asset, the run-control job) must see the same
    ``storage`` and ``artifact_root``, so use paths every process can reach.

    Example::

        BatchorResource(
            storage="sqlite:////srv/batchor/runs.sqlite3",
            api_key=EnvVar("OPENAI_API_KEY"),
        )
    """

    storage: str = Field(
        description=(
            "Where runs are kept, as the CLI's --storage: sqlite:///relative/path, "
            "sqlite:////absolute/path, a plain SQLite file path, or "
            "postgresql+psycopg://USER@HOST/DATABASE[?schema=NAME]. Pass a URL that holds "
            "a password with EnvVar."
        ),
    )
    artifact_root: str | None = Field(
        default=None,
        description=(
            "Where request and raw output artifacts go: a local directory, or an fsspec URL "
            "such as s3://bucket/prefix. Default: beside the SQLite file; required with "
            "PostgreSQL."
        ),
    )
    api_key: str | None = Field(
        default=None,
        description=(
            "The provider's API key; use EnvVar('OPENAI_API_KEY'). None: the provider SDK's "
            "own environment variable."
        ),
        repr=False,
    )
    base_url: str | None = Field(
        default=None,
        description="The provider's base URL (a proxy, or the local batchor server).",
    )

    _runner: BatchRunner | None = PrivateAttr(default=None)

    def get_runner(self) -> BatchRunner:
        """The runner on this resource's storage (built once, then reused)."""
        if self._runner is None:
            storage = self._open_storage()
            self._runner = BatchRunner(
                storage=storage,
                artifact_store=(
                    open_artifact_store(self.artifact_root) if self.artifact_root else None
                ),
                api_key=self.api_key,
            )
        return self._runner

    def get_run(self, run_id: str) -> Run:
        """The run with this id, rehydrated from storage; :class:`~batchor.RunNotFoundError`
        if there is none."""
        return self.get_runner().get_run(run_id)

    def provider_config(self, config: ConfigT) -> ConfigT:
        """``config`` with this resource's ``api_key`` and ``base_url`` filled in (a value
        set on the resource wins; the key is excluded from everything a run stores)."""
        updates: dict[str, Any] = {}
        if self.api_key:
            updates["api_key"] = self.api_key
        if self.base_url:
            updates["base_url"] = self.base_url
        return config.model_copy(update=updates) if updates else config

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._runner is not None:
            self._runner.storage.dispose()
            self._runner = None

    def _open_storage(self) -> Storage:
        if self.storage.strip() == "memory":
            raise ConfigurationError(
                "BatchorResource.storage cannot be 'memory': the sensor and the assets run in "
                "different processes and must share one durable storage; use a SQLite file"
            )
        if self.artifact_root is None and self.storage.strip().startswith("postgres"):
            raise ConfigurationError(
                "BatchorResource.artifact_root is required with PostgreSQL storage: a "
                "directory or object-store URL every worker can reach"
            )
        try:
            return open_storage(self.storage)
        except ConfigurationError as exc:
            raise ConfigurationError(f"BatchorResource.storage: {exc}") from None
