"""Pure decisions: packing, budgets, polling, prices."""

from batchor import ModelPrice, OpenAIEnqueueLimitConfig, OpenAIProviderConfig, Usage
from batchor.engine.planning import BatchLimits, PendingRequest, pack_batch, poll_delay


def requests(count: int, tokens: int = 10, line_bytes: int = 99) -> list[PendingRequest]:
    return [PendingRequest(index, tokens, line_bytes) for index in range(count)]


def test_packing_takes_every_request_that_fits_in_one_batch() -> None:
    plan = pack_batch(requests(1000), BatchLimits(max_requests=50_000, max_bytes=10**9))
    assert (plan.request_count, plan.last_index, plan.estimated_tokens) == (1000, 999, 10_000)
    assert plan.bytes == 1000 * 100  # each line plus its newline


def test_packing_stops_at_the_request_limit() -> None:
    plan = pack_batch(requests(10), BatchLimits(max_requests=4, max_bytes=10**9))
    assert (plan.request_count, plan.last_index) == (4, 3)


def test_packing_stops_at_the_byte_limit() -> None:
    plan = pack_batch(requests(10), BatchLimits(max_requests=100, max_bytes=350))
    assert (plan.request_count, plan.bytes) == (3, 300)


def test_packing_stops_at_the_free_token_budget() -> None:
    limits = BatchLimits(max_requests=100, max_bytes=10**9, max_tokens=55, max_item_tokens=100)
    plan = pack_batch(requests(10), limits)
    assert (plan.request_count, plan.estimated_tokens) == (5, 50)


def test_nothing_is_packed_when_the_budget_is_used_up() -> None:
    limits = BatchLimits(max_requests=100, max_bytes=10**9, max_tokens=5, max_item_tokens=100)
    assert pack_batch(requests(3), limits).request_count == 0


def test_a_request_that_can_never_fit_is_reported_oversized_and_skipped() -> None:
    pending = [PendingRequest(0, 10, 10), PendingRequest(1, 500, 10), PendingRequest(2, 10, 10)]
    limits = BatchLimits(max_requests=100, max_bytes=10**9, max_tokens=100, max_item_tokens=100)
    plan = pack_batch(pending, limits)
    assert plan.oversized == [1]
    assert (plan.request_count, plan.last_index) == (2, 2)


def test_enqueued_token_budget_is_the_stricter_of_ratio_and_headroom() -> None:
    by_ratio = OpenAIEnqueueLimitConfig(enqueued_token_limit=1_000_000, target_ratio=0.7)
    by_headroom = OpenAIEnqueueLimitConfig(
        enqueued_token_limit=1_000_000, target_ratio=0.9, headroom=200_000
    )
    assert by_ratio.enqueued_token_budget == 700_000
    assert by_headroom.enqueued_token_budget == 800_000


def test_poll_delay_is_fast_for_young_batches_and_backs_off_to_a_minute() -> None:
    assert poll_delay(0) == 0.2
    assert poll_delay(10) == 1.0
    assert poll_delay(3600) == 60.0
    assert poll_delay(3600, fixed_interval=5) == 5


def cost(model: str, usage: Usage, **pricing: ModelPrice) -> float | None:
    price = OpenAIProviderConfig(model=model, pricing=pricing).price()
    return None if price is None else price.cost_usd(usage)


def test_cost_uses_batch_prices_of_the_longest_matching_model() -> None:
    assert cost("gpt-4.1", Usage(input_tokens=1_000_000, output_tokens=1_000_000)) == 5.0
    assert cost("gpt-4.1-mini-2025-04-14", Usage(input_tokens=1_000_000)) == 0.2
    assert cost("my-local-model", Usage(input_tokens=10, output_tokens=10)) is None


def test_cached_input_is_billed_at_its_own_price() -> None:
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=0)
    assert cost("gpt-4.1", usage) == 0.6 * 1.0 + 0.4 * 0.25


def test_a_pricing_entry_overrides_or_extends_the_table() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost("my-local-model", usage, **{"my-local": ModelPrice(input=1, output=2)}) == 3.0
    assert cost("gpt-4.1", usage, **{"gpt-4.1": ModelPrice(input=0, output=0)}) == 0.0


def test_adjacent_request_lines_are_read_as_one_range() -> None:
    from batchor.engine.driver import _adjacent_runs

    spans = [(0, 0, 9), (0, 10, 4), (0, 40, 9), (1, 0, 5), (1, 6, 5)]
    assert list(_adjacent_runs(spans)) == [(0, 0, 15), (0, 40, 50), (1, 0, 12)]
