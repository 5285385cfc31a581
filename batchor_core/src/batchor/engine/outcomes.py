"""Pure decisions of collection: what becomes of each item of a finished batch.

An *attempt* is one execution by the provider; a *resubmission* is one time an
item went back to pending because the provider never ran it. See
:class:`~batchor.RetryPolicy` for the rules, which :func:`decide` applies.
"""

from __future__ import annotations

from batchor.job import RetryPolicy
from batchor.providers.base import OutcomeKind, RequestOutcome
from batchor.results import ItemStatus
from batchor.storage.records import BatchItemState, ItemUpdate


def decide(
    item: BatchItemState, outcome: RequestOutcome, policy: RetryPolicy, now: float
) -> ItemUpdate:
    """The item's next state after ``outcome``."""
    attempts, resubmissions = item.attempts, item.resubmissions
    not_before: float | None = None
    message = outcome.error_message
    if outcome.kind is OutcomeKind.SUCCEEDED:
        attempts += 1
        status = ItemStatus.COMPLETED
    elif outcome.kind is OutcomeKind.NOT_EXECUTED:
        resubmissions += 1
        status = ItemStatus.PENDING
        if resubmissions > policy.max_resubmissions:
            status = ItemStatus.FAILED
            message = (
                f"{message} (the provider never executed it; resubmitted "
                f"{item.resubmissions} time(s), RetryPolicy.max_resubmissions="
                f"{policy.max_resubmissions})"
            )
    else:
        attempts += 1
        status = ItemStatus.FAILED
        if outcome.retryable and attempts < policy.max_attempts:
            status = ItemStatus.PENDING
            not_before = now + policy.backoff_seconds(attempts)
    failed = outcome.kind is not OutcomeKind.SUCCEEDED
    usage = outcome.usage
    return ItemUpdate(
        item_index=item.item_index,
        status=status,
        attempts=attempts,
        resubmissions=resubmissions,
        not_before=not_before,
        output_text=outcome.output_text,
        error_code=outcome.error_code if failed else None,
        error_message=message if failed else None,
        error_retryable=(outcome.retryable or outcome.kind is OutcomeKind.NOT_EXECUTED)
        if failed
        else None,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def replan(item: BatchItemState) -> ItemUpdate:
    """Back to pending unchanged: its batch was refused for a provider limit and is
    planned again smaller (neither an attempt nor a resubmission)."""
    return ItemUpdate(
        item_index=item.item_index,
        status=ItemStatus.PENDING,
        attempts=item.attempts,
        resubmissions=item.resubmissions,
    )
