"""Pure decisions of the step machine: packing, budgets, poll delays, prices.

Everything here takes values and returns values, so it is tested without I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from batchor.providers.base import BudgetUnit, EnqueueBudget, ModelPrice, ProviderLimits
from batchor.storage.records import BatchPlan, PendingRequest
from batchor.types import Usage

__all__ = [
    "DEFAULT_OUTPUT_RATIO",
    "BatchCounter",
    "BatchLimits",
    "BatchPlan",
    "PendingRequest",
    "batch_limits",
    "estimated_cost_usd",
    "estimated_output_tokens",
    "pack_batch",
    "plan_for_budget",
    "poll_delay",
]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Per-batch limits.

    ``max_tokens`` is what may be enqueued right now (the free budget, capped per
    batch); ``max_item_tokens`` is the most any single request may ever have (the
    whole budget, capped per batch). A request above it can never be submitted.
    """

    max_requests: int
    max_bytes: int
    max_tokens: int | None = None
    max_item_tokens: int | None = None


def pack_batch(pending: Iterable[PendingRequest], limits: BatchLimits) -> BatchPlan:
    """Take the longest prefix of ``pending`` (in order) that fits ``limits``."""
    count = tokens = size = 0
    last_index: int | None = None
    oversized: list[int] = []
    for request in pending:
        line_bytes = request.line_bytes + 1  # the newline
        too_many_tokens = (
            limits.max_item_tokens is not None and request.estimated_tokens > limits.max_item_tokens
        )
        if too_many_tokens or line_bytes > limits.max_bytes:
            oversized.append(request.item_index)
            last_index = request.item_index
            continue
        if (
            count + 1 > limits.max_requests
            or size + line_bytes > limits.max_bytes
            or (
                limits.max_tokens is not None
                and tokens + request.estimated_tokens > limits.max_tokens
            )
        ):
            break
        count += 1
        tokens += request.estimated_tokens
        size += line_bytes
        last_index = request.item_index
    return BatchPlan(
        last_index=last_index,
        request_count=count,
        estimated_tokens=tokens,
        budget_units=tokens,
        bytes=size,
        oversized=oversized,
    )


def batch_limits(
    provider: ProviderLimits, *, budget: EnqueueBudget | None, free_units: int | None
) -> BatchLimits:
    """The limits of the next batch: ``provider``'s (already capped by the job and by
    learned limits), and what is free of the enqueued-work budget.

    A token budget caps the batch's estimated tokens (and makes a request larger
    than the whole budget, or than ``per_batch``, impossible to send); a request
    budget caps its request count.
    """
    requests = provider.max_requests_per_batch
    size = min(provider.max_batch_bytes, provider.max_request_bytes + 1)
    if budget is None:
        return BatchLimits(max_requests=requests, max_bytes=size)
    free = budget.total if free_units is None else free_units
    per_batch = free if budget.per_batch is None else min(free, budget.per_batch)
    if budget.unit is BudgetUnit.REQUESTS:
        return BatchLimits(max_requests=max(0, min(requests, per_batch)), max_bytes=size)
    return BatchLimits(
        max_requests=requests,
        max_bytes=size,
        max_tokens=per_batch,
        max_item_tokens=min(budget.total, budget.per_batch or budget.total),
    )


def plan_for_budget(plan: BatchPlan, budget: EnqueueBudget | None) -> BatchPlan:
    """``plan`` with the budget units it holds: its tokens, or its request count."""
    if budget is not None and budget.unit is BudgetUnit.REQUESTS:
        return replace(plan, budget_units=plan.request_count)
    return plan


class BatchCounter:
    """Counts the batches a stream of requests packs into, as :func:`pack_batch`
    would pack them one after another (for plans: nothing is claimed)."""

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self.batches = 0
        self.oversized = 0
        self._count = self._tokens = self._size = 0

    def add(self, estimated_tokens: int, line_bytes: int) -> None:
        limits = self.limits
        size = line_bytes + 1
        if size > limits.max_bytes or (
            limits.max_item_tokens is not None and estimated_tokens > limits.max_item_tokens
        ):
            self.oversized += 1
            return
        if self._count == 0 or (
            self._count + 1 > limits.max_requests
            or self._size + size > limits.max_bytes
            or (
                limits.max_tokens is not None
                and self._tokens + estimated_tokens > limits.max_tokens
            )
        ):
            self.batches += 1
            self._count = self._tokens = self._size = 0
        self._count += 1
        self._tokens += estimated_tokens
        self._size += size


DEFAULT_OUTPUT_RATIO = 0.5
"""Output tokens assumed per estimated input token when the provider settings give no
``max_output_tokens`` (a planning assumption for costs; set the maximum to bound it)."""


def estimated_output_tokens(input_tokens: int, requests: int, max_output: int | None) -> int:
    """Output tokens planned for ``requests`` requests of ``input_tokens`` input:
    ``max_output`` each when set, else :data:`DEFAULT_OUTPUT_RATIO` of the input."""
    if max_output is not None:
        return requests * max_output
    return int(input_tokens * DEFAULT_OUTPUT_RATIO)


def estimated_cost_usd(
    price: ModelPrice | None, input_tokens: int, requests: int, max_output: int | None
) -> float | None:
    """What ``requests`` requests of ``input_tokens`` estimated input should cost."""
    if price is None:
        return None
    output = estimated_output_tokens(input_tokens, requests, max_output)
    return price.cost_usd(Usage(input_tokens=input_tokens, output_tokens=output))


def poll_delay(seconds_since_change: float, fixed_interval: float | None = None) -> float:
    """Seconds to wait before the next poll.

    A tenth of the time since anything last changed, between 0.2 s and 60 s: a
    fresh batch is polled every fraction of a second, one that has sat unchanged
    for ten minutes once a minute (about 1,500 polls over 24 hours).
    ``fixed_interval`` overrides it.
    """
    if fixed_interval is not None:
        return fixed_interval
    return min(60.0, max(0.2, seconds_since_change / 10.0))
