"""Pure decisions about limits: what the next batch may hold, and what a refusal teaches.

Three things bound a batch: the provider's hard limits, the job's
:class:`~batchor.ChunkPolicy`, and limits learned from the provider's refusals
(stored per budget scope, shared by every run and worker on the storage). The
enqueued-work budget is the configured one (``enqueue_limits``) when there is
one, else a learned one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from batchor.errors import Refusal, RefusalKind
from batchor.job import ChunkPolicy
from batchor.providers.base import BudgetUnit, EnqueueBudget, ProviderLimits
from batchor.storage.records import BatchRecord

LEARNED_BUDGET_RATIO = 0.9
"""Share of a learned enqueued limit batchor plans to use, leaving room for other
work of the organisation the storage does not see."""


@dataclass(frozen=True, slots=True)
class PlanningLimits:
    """The limits planning works with (see the module docstring)."""

    provider: ProviderLimits
    budget: EnqueueBudget | None
    budget_configured: bool

    @classmethod
    def combine(
        cls,
        provider: ProviderLimits,
        chunk: ChunkPolicy,
        *,
        configured_budget: EnqueueBudget | None,
        learned: Mapping[str, int],
    ) -> PlanningLimits:
        requests = _smallest(
            provider.max_requests_per_batch,
            chunk.max_requests_per_batch,
            learned.get(RefusalKind.REQUESTS_PER_BATCH.value),
        )
        size = _smallest(
            provider.max_batch_bytes,
            chunk.max_bytes_per_batch,
            learned.get(RefusalKind.BATCH_BYTES.value),
        )
        budget = configured_budget
        if budget is None:
            for kind, unit in (
                (RefusalKind.ENQUEUED_TOKENS, BudgetUnit.TOKENS),
                (RefusalKind.ENQUEUED_REQUESTS, BudgetUnit.REQUESTS),
            ):
                if kind.value in learned:
                    total = max(1, int(learned[kind.value] * LEARNED_BUDGET_RATIO))
                    budget = EnqueueBudget(unit=unit, total=total)
        return cls(
            provider=ProviderLimits(
                max_requests_per_batch=requests,
                max_batch_bytes=size,
                max_request_bytes=min(provider.max_request_bytes, size),
            ),
            budget=budget,
            budget_configured=configured_budget is not None,
        )

    def overridden(self, refusal: Refusal) -> bool:
        """Whether configuration, not learning, decides the limit ``refusal`` is about
        (an explicit ``enqueue_limits`` for an enqueued-work refusal)."""
        return self.budget_configured and refusal.kind in (
            RefusalKind.ENQUEUED_TOKENS,
            RefusalKind.ENQUEUED_REQUESTS,
        )

    def describe(self) -> str:
        """The limits a request must fit, for error messages."""
        parts = [f"at most {self.provider.max_batch_bytes:,} bytes per batch"]
        if self.budget is not None and self.budget.unit is BudgetUnit.TOKENS:
            per_batch = self.budget.per_batch or self.budget.total
            parts.append(
                f"at most {min(self.budget.total, per_batch):,} estimated tokens per batch "
                "(the enqueued-token budget)"
            )
        return "; ".join(parts)


def learned_value(refusal: Refusal, batch: BatchRecord) -> int:
    """The limit ``refusal`` teaches: the one the provider stated, else half of what
    the refused batch held (so each refusal at least halves the next batch)."""
    if refusal.limit is not None and refusal.limit > 0:
        return refusal.limit
    held = {
        RefusalKind.ENQUEUED_TOKENS: batch.estimated_tokens,
        RefusalKind.ENQUEUED_REQUESTS: batch.request_count,
        RefusalKind.REQUESTS_PER_BATCH: batch.request_count,
        RefusalKind.BATCH_BYTES: batch.bytes,
    }[refusal.kind]
    return max(1, held // 2)


def _smallest(limit: int, *caps: int | None) -> int:
    return min([limit, *(cap for cap in caps if cap is not None)])
