"""The example's OpenAI stand-in: batchor's local Batch server on a fixed loopback port.

Whichever process first needs it (the code server evaluating the sensor, or a run
worker) starts it in a daemon thread if nothing answers on the port yet. Its files
and batches live in a directory on disk, so when that process goes away (a code
reload, the end of a run) the next process to start it finds every batch again.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

from dagster import InitResourceContext
from pydantic import Field

from batchor.testing import LocalBatchServer
from batchor_dagster import BatchorResource

_lock = threading.Lock()
_servers: dict[int, LocalBatchServer] = {}


def ensure_local_server(port: int, data_dir: Path) -> LocalBatchServer | None:
    """Make sure a batchor local server answers on ``127.0.0.1:port``, starting one
    (in this process, on ``data_dir``) if none does; returns the server it started,
    or None when one was already answering."""
    with _lock:
        if _answers(port):
            return None
        server = LocalBatchServer(port=port, data_dir=data_dir)
        try:
            server.start()
        except OSError as exc:  # another process bound the port first
            if _answers(port):
                return None
            raise RuntimeError(
                f"port {port} is taken by something that is not the batchor local server; "
                "set BATCHOR_EXAMPLE_PORT to a free port"
            ) from exc
        _servers[port] = server
        return server


def _answers(port: int) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/batches?limit=1",
        headers={"Authorization": "Bearer local-probe"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("object") == "list"


class LocalServerBatchorResource(BatchorResource):
    """A :class:`BatchorResource` that starts the local server before it is used."""

    server_port: int = Field(description="Loopback port of the local OpenAI Batch server")
    server_data_dir: str = Field(description="Where the local server keeps files and batches")

    def setup_for_execution(self, context: InitResourceContext) -> None:
        ensure_local_server(self.server_port, Path(self.server_data_dir))
