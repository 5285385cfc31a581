"""Where the command line finds runs and credentials.

``--storage URL`` (or ``$BATCHOR_STORAGE``) picks the storage, ``--artifacts
DIR`` (or ``$BATCHOR_ARTIFACTS``) the artifact directory, and the OpenAI
credentials come from ``$OPENAI_API_KEY`` / ``$OPENAI_BASE_URL``, which a
``.env`` file in the working directory may provide. The address a command
drives runs through (``--base-url`` or ``$OPENAI_BASE_URL``) wins over the one
stored with a run, so a run can move to another endpoint. The API key is read by the
provider only; nothing here prints or stores it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import typer

from batchor.artifacts.local import LocalArtifactStore
from batchor.errors import ConfigurationError
from batchor.providers.base import ProviderConfig
from batchor.runner import BatchRunner
from batchor.storage import Storage
from batchor.storage import open_storage as core_open_storage
from batchor.storage.urls import is_postgres_location

STORAGE_ENV = "BATCHOR_STORAGE"
ARTIFACTS_ENV = "BATCHOR_ARTIFACTS"
API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def load_env_file(path: Path) -> list[str]:
    """Set the variables of a dotenv file that the environment does not set yet.

    Understands ``KEY=value``, ``export KEY=value``, single- or double-quoted
    values, blank lines and ``#`` comments (whole-line, or after an unquoted
    value). Returns the names it set; a missing file sets nothing.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return []
    assigned: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            continue
        name, value = match.group(1), match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        if name not in os.environ:
            os.environ[name] = value
            assigned.append(name)
    return assigned


def _storage_problem(message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=f"'--storage' / ${STORAGE_ENV}")


def is_postgres(url: str | None) -> bool:
    """Whether ``--storage`` names PostgreSQL (a usage error if it names nothing)."""
    if url is None:
        return False
    try:
        return is_postgres_location(url)
    except ConfigurationError as exc:
        raise _storage_problem(str(exc)) from None


def open_storage(url: str | None) -> Storage:
    """The storage a ``--storage`` URL names (see :func:`batchor.open_storage`);
    ``None`` is the default SQLite file ``$BATCHOR_HOME/default.sqlite3``."""
    is_postgres(url)
    return core_open_storage(url)


def open_runner(
    storage_url: str | None, artifacts: Path | None, *, base_url: str | None = None
) -> BatchRunner:
    """A runner on the storage and artifact directory the options name.

    Artifacts default to the directory beside a SQLite file. A PostgreSQL
    storage has no such place, and the runner's fallback (a temporary
    directory) would vanish with this process, so it needs ``--artifacts``.
    ``base_url`` (``--base-url`` or ``$OPENAI_BASE_URL``) overrides the API address
    stored with the runs it drives.
    """
    if artifacts is None and is_postgres(storage_url):
        raise typer.BadParameter(
            "PostgreSQL storage needs an artifact directory that outlives this command: "
            f"pass --artifacts DIR or set ${ARTIFACTS_ENV}",
            param_hint=f"'--artifacts' / ${ARTIFACTS_ENV}",
        )
    return BatchRunner(
        storage=open_storage(storage_url),
        artifact_store=None if artifacts is None else LocalArtifactStore(artifacts),
        base_url=base_url or None,
        base_url_from_environment=True,
    )


def require_api_key(config: ProviderConfig | type[ProviderConfig]) -> None:
    """A clear usage error, before any work, when no API key for the provider is in
    the environment (the variables its config reads, e.g. ``$OPENAI_API_KEY``)."""
    variables = config.API_KEY_ENVS
    if variables and not any(os.environ.get(name) for name in variables):
        raise ConfigurationError(
            f"no {config.DISPLAY_NAME} API key: set {' or '.join(variables)} in the "
            "environment or in ./.env"
        )
