"""The asset checks on a job's results asset.

- ``failure_rate``: at most ``max_failure_rate`` of the items failed (ERROR;
  ``blocking`` stops downstream assets in the same run when it fails);
- ``coverage``: the results hold one row per upstream row, none missing and
  none twice (ERROR);
- ``cost_budget`` (only with ``max_cost_usd``): the runs' cost at batch prices
  stayed within the budget (ERROR; a model without a known price fails it).

They are evaluated when the results asset materializes, over every run it
writes (one per partition of a single-run backfill).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetCheckKey, AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey

from batchor import ConfigurationError, RunSummary

FAILURE_RATE_CHECK = "failure_rate"
"""Name of the failure-rate check on the results asset."""

COVERAGE_CHECK = "coverage"
"""Name of the coverage check (one result row per upstream row) on the results asset."""

COST_BUDGET_CHECK = "cost_budget"
"""Name of the cost-budget check on the results asset (with ``max_cost_usd``)."""


@dataclass(frozen=True)
class RunResults:
    """What one terminal run wrote, for the checks: its summary, its rows, and how
    many rows the upstream had when it was submitted (None: not recorded)."""

    run_id: str
    summary: RunSummary
    table: pa.Table
    upstream_rows: int | None


@dataclass(frozen=True)
class ResultChecks:
    """Which checks a results asset has, and their thresholds."""

    max_failure_rate: float = 0.05
    failure_rate_blocking: bool = False
    coverage: bool = True
    max_cost_usd: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.max_failure_rate <= 1:
            raise ConfigurationError(
                f"max_failure_rate must be within 0-1, got {self.max_failure_rate}"
            )
        if self.max_cost_usd is not None and self.max_cost_usd < 0:
            raise ConfigurationError(f"max_cost_usd must be >= 0, got {self.max_cost_usd}")

    def specs(self, asset_key: AssetKey) -> list[AssetCheckSpec]:
        specs = [
            AssetCheckSpec(
                FAILURE_RATE_CHECK,
                asset=asset_key,
                blocking=self.failure_rate_blocking,
                description=f"At most {self.max_failure_rate:.1%} of the items failed.",
            )
        ]
        if self.coverage:
            specs.append(
                AssetCheckSpec(
                    COVERAGE_CHECK,
                    asset=asset_key,
                    description="One result row per upstream row: no item missing, none twice.",
                )
            )
        if self.max_cost_usd is not None:
            specs.append(
                AssetCheckSpec(
                    COST_BUDGET_CHECK,
                    asset=asset_key,
                    description=f"The run cost at most ${self.max_cost_usd:,.2f} at batch prices.",
                )
            )
        return specs

    def evaluate(
        self, asset_key: AssetKey, runs: Sequence[RunResults], selected: set[AssetCheckKey]
    ) -> Iterator[AssetCheckResult]:
        """The result of each selected check over ``runs``."""
        if AssetCheckKey(asset_key, FAILURE_RATE_CHECK) in selected:
            yield self.failure_rate(runs)
        if self.coverage and AssetCheckKey(asset_key, COVERAGE_CHECK) in selected:
            yield coverage(runs)
        if (
            self.max_cost_usd is not None
            and AssetCheckKey(asset_key, COST_BUDGET_CHECK) in selected
        ):
            yield self.cost_budget(runs)

    def failure_rate(self, runs: Sequence[RunResults]) -> AssetCheckResult:
        failed = sum(run.summary.failed_items for run in runs)
        total = sum(run.summary.total_items for run in runs)
        rate = failed / total if total else 0.0
        return AssetCheckResult(
            check_name=FAILURE_RATE_CHECK,
            passed=rate <= self.max_failure_rate,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "failure_rate": rate,
                "max_failure_rate": self.max_failure_rate,
                "failed": failed,
                "total": total,
                **_run_ids(runs),
            },
        )

    def cost_budget(self, runs: Sequence[RunResults]) -> AssetCheckResult:
        assert self.max_cost_usd is not None
        costs = [run.summary.estimated_cost_usd for run in runs]
        known = [cost for cost in costs if cost is not None]
        cost = sum(known)
        unknown = len(known) < len(costs)
        metadata: dict[str, Any] = {"max_cost_usd": self.max_cost_usd, **_run_ids(runs)}
        if unknown:
            models = sorted({run.summary.model for run in runs})
            metadata["problem"] = f"no batch price is known for {', '.join(models)}"
        else:
            metadata["estimated_cost_usd"] = cost
        return AssetCheckResult(
            check_name=COST_BUDGET_CHECK,
            passed=not unknown and cost <= self.max_cost_usd,
            severity=AssetCheckSeverity.ERROR,
            metadata=metadata,
        )


def coverage(runs: Sequence[RunResults]) -> AssetCheckResult:
    """Passes when every run's table has exactly one row per upstream row (the count
    the submit asset recorded, else the items the run ingested) and no id twice."""
    expected = rows = missing = duplicates = 0
    for run in runs:
        want = run.upstream_rows if run.upstream_rows is not None else run.summary.total_items
        ids = run.table["item_id"] if "item_id" in run.table.column_names else pa.array([])
        distinct = pc.count_distinct(ids).as_py() if len(ids) else 0
        expected += want
        rows += run.table.num_rows
        duplicates += run.table.num_rows - distinct
        missing += max(want - distinct, 0)
    return AssetCheckResult(
        check_name=COVERAGE_CHECK,
        passed=rows == expected and missing == 0 and duplicates == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "upstream_rows": expected,
            "result_rows": rows,
            "missing_items": missing,
            "duplicate_items": duplicates,
            **_run_ids(runs),
        },
    )


def _run_ids(runs: Sequence[RunResults]) -> dict[str, str]:
    if len(runs) == 1:
        return {"batchor_run_id": runs[0].run_id}
    return {"batchor_run_ids": ", ".join(run.run_id for run in runs)}
