"""Pure decisions of the step machine: packing, budgets, poll delays, prices.

Everything here takes values and returns values, so it is tested without I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from batchor.providers.base import BudgetUnit, EnqueueBudget, ProviderLimits
from batchor.storage.records import BatchPlan, PendingRequest

__all__ = [
    "BatchCounter",
    "BatchLimits",
    "BatchPlan",
    "PendingRequest",
    "batch_limits",
    "estimate_cost_usd",
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


# Batch API prices in USD per million tokens (input, output): half the standard
# rates. Models are matched by the longest known prefix of their name.
BATCH_PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-5": (0.625, 5.0),
    "gpt-5-mini": (0.125, 1.0),
    "gpt-5-nano": (0.025, 0.2),
    "gpt-4.1": (1.0, 4.0),
    "gpt-4.1-mini": (0.2, 0.8),
    "gpt-4.1-nano": (0.05, 0.2),
    "gpt-4o": (1.25, 5.0),
    "gpt-4o-mini": (0.075, 0.3),
    "o3": (1.0, 4.0),
    "o3-mini": (0.55, 2.2),
    "o4-mini": (0.55, 2.2),
    "text-embedding-3-small": (0.01, 0.0),
    "text-embedding-3-large": (0.065, 0.0),
}


def estimate_cost_usd(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """Batch-price cost of the tokens, or ``None`` for a model without a known price."""
    matches = [name for name in BATCH_PRICES_PER_MILLION if model.startswith(name)]
    if not matches:
        return None
    input_price, output_price = BATCH_PRICES_PER_MILLION[max(matches, key=len)]
    return (input_tokens * input_price + output_tokens * output_price) / 1_000_000
