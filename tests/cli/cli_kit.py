"""Drive the installed ``batchor`` executable from tests.

Every call is a real subprocess of ``.venv/bin/batchor`` with a controlled
environment (the local server's URL and a test key, a private ``$BATCHOR_HOME``,
a fixed 100-column dumb terminal). Starting the interpreter and importing
batchor costs over a second, so commands that do not depend on each other run
concurrently through :func:`run_concurrently`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TEST_API_KEY = "sk-test-batchor-cli-0123456789abcdef"
COMMAND_TIMEOUT = 120.0
_INHERITED_PREFIXES = ("OPENAI_", "BATCHOR_")
_DISPLAY_VARIABLES = (
    "FORCE_COLOR",
    "PY_COLORS",
    "CLICOLOR_FORCE",
    "GITHUB_ACTIONS",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "TERMINAL_WIDTH",
    "LINES",
)


def batchor_executable() -> str:
    """The ``batchor`` console script installed beside this interpreter."""
    found = shutil.which("batchor", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(
            f"no batchor executable beside {sys.executable}; pip install -e ./batchor_core"
        )
    return found


def deterministic_environment(**overrides: str) -> dict[str, str]:
    """The test process's environment without batchor/OpenAI settings or colour
    forcing, on a 100-column dumb terminal, plus ``overrides``."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_INHERITED_PREFIXES) and name not in _DISPLAY_VARIABLES
    }
    environment.update(COLUMNS="100", TERM="dumb", NO_COLOR="1")
    environment.update(overrides)
    return environment


@dataclass(frozen=True)
class Outcome:
    """What one ``batchor`` invocation did."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Error:")]

    def __str__(self) -> str:
        return (
            f"batchor {' '.join(self.args)} -> exit {self.code}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


@dataclass(frozen=True)
class Cli:
    """``batchor`` with one environment and working directory."""

    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)

    def with_env(self, **overrides: str) -> Cli:
        return Cli(self.cwd, {**self.env, **overrides})

    def without_env(self, *names: str) -> Cli:
        return Cli(self.cwd, {k: v for k, v in self.env.items() if k not in names})

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """Start ``batchor args`` without waiting (stdout and stderr piped)."""
        return subprocess.Popen(
            [batchor_executable(), *args],
            cwd=self.cwd,
            env=dict(self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Outcome:
        completed = subprocess.run(
            [batchor_executable(), *args],
            cwd=self.cwd,
            env=dict(self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Outcome(tuple(args), completed.returncode, completed.stdout, completed.stderr)


Command = tuple[Cli, Sequence[str]]
Invoke = Callable[..., tuple[int, str, str]]
"""``invoke(*args) -> (exit code, stdout, stderr)`` of ``batchor.cli.main`` in-process."""


def run_chains(chains: Mapping[str, Sequence[Command]]) -> dict[str, list[Outcome]]:
    """Run each chain's commands in order, and the chains at the same time; the
    outcomes by chain name."""

    def run_chain(chain: Sequence[Command]) -> list[Outcome]:
        return [cli(*args) for cli, args in chain]

    workers = min(8, (os.cpu_count() or 2) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(run_chain, chain) for name, chain in chains.items()}
        return {name: future.result() for name, future in futures.items()}


def run_concurrently(commands: Mapping[str, Command]) -> dict[str, Outcome]:
    """Run independent commands at the same time; their outcomes by name."""
    chains = run_chains({name: [command] for name, command in commands.items()})
    return {name: outcomes[0] for name, outcomes in chains.items()}


def run_id_of(outcome: Outcome) -> str:
    """The run id ``batchor start`` printed (its first stdout line)."""
    assert outcome.stdout.strip(), str(outcome)
    return outcome.stdout.splitlines()[0].strip()


# -- input files ----------------------------------------------------------------------------


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(list(rows)), path)
    return path


def tickets(count: int, prefix: str = "t") -> list[dict[str, Any]]:
    """Rows ``{"id", "text", "priority"}`` with ids ``prefix0, prefix1, ...``."""
    return [
        {
            "id": f"{prefix}{number}",
            "text": f"ticket {number} about billing",
            "priority": number % 3,
        }
        for number in range(count)
    ]


STRUCTURED_OUTPUT_MODULE = """
from typing import Literal

from pydantic import BaseModel


class Triage(BaseModel):
    topic: Literal["billing", "shipping", "other"]
    urgency: int
"""
