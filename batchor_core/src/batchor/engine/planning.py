"""Pure decisions of the step machine: packing, budgets, poll delays, prices.

Everything here takes values and returns values, so it is tested without I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """What packing needs to know about a pending item."""

    item_index: int
    estimated_tokens: int
    line_bytes: int


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


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """The packed prefix of the pending queue.

    The batch holds every pending item with index <= ``last_index`` except the
    ``oversized`` ones, which can never fit any batch and must fail.
    """

    last_index: int | None = None
    request_count: int = 0
    estimated_tokens: int = 0
    bytes: int = 0
    oversized: list[int] = field(default_factory=list)


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
        bytes=size,
        oversized=oversized,
    )


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
