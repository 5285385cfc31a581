"""Planning a job without running it: what :meth:`~batchor.BatchRunner.plan` reports.

The job's input is read and every request line built exactly as ``start`` would
(``build_prompt`` runs, every check applies), then packed into batches as the
driver would pack them with an empty budget. Nothing is stored or submitted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from batchor.engine.config import RunConfig
from batchor.engine.limits import PlanningLimits
from batchor.engine.planning import (
    BatchCounter,
    batch_limits,
    estimated_cost_usd,
    estimated_output_tokens,
)
from batchor.engine.slices import check_unique_within, input_slices
from batchor.job import BatchJob
from batchor.providers.base import BatchProvider
from batchor.results import JobPlan


def plan_job(
    job: BatchJob, config: RunConfig, provider: BatchProvider, learned: Mapping[str, int]
) -> JobPlan:
    """The plan of ``job`` (see :class:`~batchor.JobPlan`)."""
    limits = PlanningLimits.combine(
        provider.limits,
        config.chunk_policy,
        configured_budget=provider.enqueue_budget,
        learned=learned,
    )
    counter = BatchCounter(batch_limits(limits.provider, budget=limits.budget, free_units=None))
    digest = hashlib.sha256(config.fingerprint().encode())
    count = tokens = 0
    first_line: str | None = None
    size = job.chunk_policy.ingest_slice_size
    for items, _checkpoint in input_slices(job.items, None, size, job.build_prompt, 0):
        fresh = list(range(len(items)))
        check_unique_within(items, fresh, count)
        new_items, payload = items.build(fresh, count, job, provider, 0, count)
        if first_line is None and payload:
            first_line = payload.split(b"\n", 1)[0].decode("utf-8")
        digest.update(payload)
        for item in new_items:
            digest.update(f"\n{item.item_id}\n{item.metadata_json}\n".encode())
            counter.add(item.estimated_tokens, item.request_length)
            tokens += item.estimated_tokens
        count += len(new_items)
    maximum = config.provider.max_output_tokens
    return JobPlan(
        provider=config.provider.kind,
        model=config.provider.model,
        item_count=count,
        batch_count=counter.batches,
        estimated_input_tokens=tokens,
        estimated_output_tokens=estimated_output_tokens(tokens, count, maximum),
        output_tokens_assumed=maximum is None,
        estimated_cost_usd=estimated_cost_usd(config.provider.price(), tokens, count, maximum),
        first_request_line=first_line,
        fingerprint=digest.hexdigest(),
        oversized_items=counter.oversized,
    )
