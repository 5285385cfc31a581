"""What every provider API of one local server shares.

A :class:`ServerContext` is built once by :class:`~batchor.testing.LocalBatchServer`
and handed to each provider API it mounts, so the OpenAI emulator and any other
provider's emulator in the same process run on the same clock, at the same pace,
under the same fault plan, with the same responder, limits and counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchor.testing.clock import Clock
from batchor.testing.counters import Counters
from batchor.testing.faults import Faults
from batchor.testing.models import BatchLimits, BatchPace, UsageSplit
from batchor.testing.replies import Responder


@dataclass(frozen=True, slots=True)
class ServerContext:
    """The shared parts of a server; each provider API keeps its own state.

    ``data_dir`` is the server's state directory. OpenAI's files and batches live at
    its top level (``files/``, ``batches/``); another provider keeps its state in a
    subdirectory named for it.
    """

    clock: Clock
    pace: BatchPace
    faults: Faults
    responder: Responder
    usage: UsageSplit
    limits: BatchLimits
    counters: Counters
    data_dir: Path
