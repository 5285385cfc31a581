"""A local OpenAI-compatible Files + Batches server, for tests, demos and offline runs.

>>> from batchor.testing import LocalBatchServer
>>> with LocalBatchServer() as server:  # doctest: +SKIP
...     client = openai.OpenAI(api_key="test", base_url=server.base_url)

See ``docs/local-server.md``. The pytest fixture ``batchor_server`` comes from
:mod:`batchor.testing.pytest_plugin`, registered as a pytest plugin.
"""

from batchor.testing.clock import Clock, ManualClock
from batchor.testing.faults import Faults
from batchor.testing.models import BatchErrorEntry, BatchPace, BatchRecord, FileRecord
from batchor.testing.replies import Responder, default_responder
from batchor.testing.schema_instance import generate_schema_instance
from batchor.testing.server import LocalBatchServer, serve
from batchor.testing.tokens import count_request_tokens

__all__ = [
    "BatchErrorEntry",
    "BatchPace",
    "BatchRecord",
    "Clock",
    "Faults",
    "FileRecord",
    "LocalBatchServer",
    "ManualClock",
    "Responder",
    "count_request_tokens",
    "default_responder",
    "generate_schema_instance",
    "serve",
]
