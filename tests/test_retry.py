"""Retry decisions: back-off, Retry-After, the budget and the order of upstreams."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from pulse_proxy.proxy.breaker import ADMITTED, TRIAL, Breaker
from pulse_proxy.proxy.retry import (
    BUDGET_MIN_RETRIES,
    RetryBudget,
    RetryPolicy,
    TryPlan,
    retry_after,
)
from pulse_proxy.settings import BreakerSettings, RetrySettings


def _policy(**settings: object) -> RetryPolicy:
    return RetryPolicy(RetrySettings(**settings))  # type: ignore[arg-type]


def _breakers(count: int, **settings: object) -> list[Breaker]:
    return [
        Breaker(f"u{i}", BreakerSettings(**settings))  # type: ignore[arg-type]
        for i in range(count)
    ]


def test_backoff_is_full_jitter_under_a_doubling_ceiling() -> None:
    """The wait is rnd × min(max_backoff_s, backoff_s × 2^n)."""
    policy = _policy(backoff_s=0.5, max_backoff_s=3)
    assert [policy.backoff(n, lambda: 1.0) for n in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.backoff(2, lambda: 0.25) == 0.5
    assert policy.backoff(10_000, lambda: 1.0) == 3.0


def test_policy_reads_conditions_and_statuses() -> None:
    """``on`` splits into connection errors, timeouts and status codes."""
    policy = _policy(on=["timeout", 503])
    assert policy.on_timeout and not policy.on_connect
    assert policy.on_status == frozenset({503})
    default = _policy()
    assert default.on_connect and default.on_timeout
    assert default.on_status == frozenset({429, 500, 502, 503, 504})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "1"}, 1.0),
        ({"retry-after": " 30 "}, 30.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-1"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], expected: float | None) -> None:
    """retry-after-ms wins over Retry-After; unreadable values are ignored."""
    assert retry_after(headers) == expected


def test_retry_after_as_http_date() -> None:
    """An HTTP date is a wait until then."""
    assert retry_after({"retry-after": formatdate(1000.0, usegmt=True)}, now=990.0) == 10.0
    assert retry_after({"retry-after": formatdate(1000.0, usegmt=True)}, now=2000.0) == 0.0


def test_budget_bounds_retries_to_a_share_of_requests_plus_a_minimum() -> None:
    """Retries over 10 s are capped at ratio × requests + the minimum."""
    budget = RetryBudget(0.2)
    for _ in range(100):
        budget.request(0)
    granted = sum(budget.spend(0) for _ in range(1000))
    assert granted == 20 + BUDGET_MIN_RETRIES
    assert not budget.spend(9.5)
    assert budget.spend(10.0)  # the first second left the window


def test_plan_visits_every_usable_upstream_before_returning() -> None:
    """Primary, fallback, primary: an upstream is tried again only after every other one."""
    plan = TryPlan(_breakers(2), _policy(attempts=3), rnd=lambda: 0.0)
    assert plan.first(0) == 0
    plan.failed(0, 0, None)
    assert plan.next(0) == (1, 0.0)
    plan.failed(1, 0, None)
    assert plan.next(0) == (0, 0.0)


def test_plan_waits_before_the_same_upstream_from_its_failure() -> None:
    """Coming back to an upstream waits out its back-off, counted from its failure."""
    plan = TryPlan(_breakers(1), _policy(attempts=3, backoff_s=1), rnd=lambda: 1.0)
    plan.first(0)
    plan.failed(0, 10.0, None)
    assert plan.next(10.25) == (0, 0.75)
    plan.failed(0, 11.0, None)
    assert plan.next(11.0) == (0, 2.0)


def test_plan_takes_retry_after_or_skips_an_upstream_asking_too_much() -> None:
    """Retry-After sets the wait; one above max_backoff_s skips that upstream."""
    plan = TryPlan(_breakers(2), _policy(max_backoff_s=5), rnd=lambda: 0.0)
    plan.first(0)
    plan.failed(0, 0, 30.0)
    assert plan.next(0) == (1, 0.0)
    plan.failed(1, 0, 2.0)
    assert plan.next(0) == (1, 2.0)


def test_plan_skips_open_upstreams_and_forces_the_soonest_when_all_are_open() -> None:
    """Open upstreams are skipped; if all are open the first try goes where the cool-down ends first."""
    breakers = _breakers(3, consecutive_failures=1, open_for_s=10)
    breakers[0].record(False, breakers[0].admit(0), 0)
    plan = TryPlan(breakers, _policy(attempts=3))
    assert plan.first(1) == 1 and plan.admission == ADMITTED
    breakers[1].record(False, breakers[1].admit(2), 2)
    breakers[2].record(False, breakers[2].admit(1), 1)
    plan = TryPlan(breakers, _policy(attempts=3))
    assert plan.first(3) == 0  # reopens at 10, before 11 and 12
    plan.failed(0, 3, None)
    assert plan.next(3) is None  # the rest are open: no retry
    assert TryPlan(breakers, _policy()).first(10) == 0
    assert breakers[0].admit(10) != TRIAL  # the trial went to that plan


def test_primary_is_preferred_again_once_closed() -> None:
    """A closed primary gets the first try again."""
    breakers = _breakers(2, consecutive_failures=1, open_for_s=1)
    breakers[0].record(False, breakers[0].admit(0), 0)
    assert TryPlan(breakers, _policy()).first(0.5) == 1
    plan = TryPlan(breakers, _policy())
    assert plan.first(1.0) == 0 and plan.admission == TRIAL
    breakers[0].record(True, TRIAL, 1.0)
    assert TryPlan(breakers, _policy()).first(1.1) == 0
