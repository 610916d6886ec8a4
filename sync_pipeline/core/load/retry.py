"""Retrying transient search-server errors: one policy (the spec's `retry:`, `RetrySpec`) and one
budget of time per load.

A load's requests nest their retries (a whole request sent again inside a document's retry, a
batch split into parts sent side by side); the budget is started once, where the load starts,
and every retry of it draws on the same `max_total_seconds`, so the spec's total is a real cap
on the whole load rather than on each request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sync_pipeline.core.spec.model import RetrySpec

DEFAULT_RETRY = RetrySpec()


def backoff_delay(policy: RetrySpec, attempt: int, uniform=random.uniform) -> float:
    """Full jitter: a random delay up to the capped exponential step of `attempt` (1-based)."""
    return uniform(0, min(policy.max_backoff_seconds, policy.initial_seconds * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class RetryBudget:
    """The policy and the moment (on a monotonic clock) after which nothing is retried."""

    policy: RetrySpec
    ends: float

    @classmethod
    def starting(cls, policy: RetrySpec, now: float) -> RetryBudget:
        return cls(policy, now + policy.max_total_seconds)

    def allows(self, delay: float, now: float) -> bool:
        """Whether waiting `delay` seconds and trying again stays within the budget."""
        return now + delay <= self.ends
