"""A local server for provider batch APIs (OpenAI's Files + Batches, Anthropic's Message
Batches, Gemini's batch mode), for tests, demos and offline runs.

>>> from batchor.testing import LocalBatchServer
>>> with LocalBatchServer() as server:  # doctest: +SKIP
...     client = openai.OpenAI(api_key="test", base_url=server.base_url)
...     claude = anthropic.Anthropic(api_key="test", base_url=server.url)

See ``docs/local-server.md``. The pytest fixture ``batchor_server`` comes from
:mod:`batchor.testing.pytest_plugin`, registered as a pytest plugin; the command
line (``python -m batchor.testing``, ``batchor emulator``) from
:mod:`batchor.testing.cli`.

Modules: :mod:`~batchor.testing.server` (the HTTP server and the routing between
provider APIs), :mod:`~batchor.testing.context` (what the provider APIs share),
``openai_*`` (OpenAI's API: routes, state, records, validation, output files,
reply bodies), ``anthropic_*`` (Anthropic's: routes, state, records, results),
``gemini_*`` (Gemini's: routes and uploads, state and results), and the shared
parts: :mod:`~batchor.testing.faults`,
:mod:`~batchor.testing.models` (pace, limits, usage split),
:mod:`~batchor.testing.counters`, :mod:`~batchor.testing.replies` (responders),
:mod:`~batchor.testing.tokens`, :mod:`~batchor.testing.clock`.
"""

from batchor.testing.anthropic_records import AnthropicLimits, MessageBatchRecord
from batchor.testing.clock import Clock, ManualClock
from batchor.testing.counters import CounterSnapshot
from batchor.testing.faults import Faults
from batchor.testing.models import BatchLimits, BatchPace, UsageSplit
from batchor.testing.openai_records import BatchErrorEntry, BatchRecord, FileRecord
from batchor.testing.replies import Responder, default_responder
from batchor.testing.schema_instance import generate_schema_instance
from batchor.testing.server import LocalBatchServer, serve
from batchor.testing.tokens import count_request_tokens

__all__ = [
    "AnthropicLimits",
    "BatchErrorEntry",
    "BatchLimits",
    "BatchPace",
    "BatchRecord",
    "Clock",
    "CounterSnapshot",
    "Faults",
    "FileRecord",
    "LocalBatchServer",
    "ManualClock",
    "MessageBatchRecord",
    "Responder",
    "UsageSplit",
    "count_request_tokens",
    "default_responder",
    "generate_schema_instance",
    "serve",
]
