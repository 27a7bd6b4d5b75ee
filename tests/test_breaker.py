"""The circuit breaker's state machine, on an injected clock."""

from __future__ import annotations

from typing import Any

from pulse_proxy.proxy.breaker import ADMITTED, REFUSED, TRIAL, Breaker, BreakerState
from pulse_proxy.settings import BreakerSettings


def _breaker(**settings: Any) -> tuple[Breaker, list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    breaker = Breaker(
        "primary",
        BreakerSettings(**settings),
        clock=lambda: 0.0,
        on_change=lambda name, fields: events.append((name, fields)),
    )
    return breaker, events


def test_opens_after_consecutive_failures_and_refuses_until_cool_down() -> None:
    """N failures in a row open it; requests are refused until open_for_s has passed."""
    breaker, events = _breaker(consecutive_failures=3, open_for_s=10)
    for second in range(2):
        breaker.record(False, breaker.admit(second), second)
    assert breaker.state is BreakerState.CLOSED
    breaker.record(False, breaker.admit(2), 2)
    assert breaker.state is BreakerState.OPEN
    assert events == [
        (
            "upstream.breaker_opened",
            {
                "upstream": "primary",
                "reason": "consecutive_failures",
                "open_for_s": 10,
                "consecutive_failures": 3,
            },
        )
    ]
    assert breaker.admit(11.9) == REFUSED
    assert breaker.shown_state(12.0) is BreakerState.HALF_OPEN


def test_a_success_resets_the_consecutive_count() -> None:
    """Failures separated by a success do not count as in a row."""
    breaker, _ = _breaker(consecutive_failures=2, min_requests=100)
    for ok in (False, True, False, True, False):
        breaker.record(ok, breaker.admit(0), 0)
    assert breaker.state is BreakerState.CLOSED


def test_one_trial_after_cool_down_then_close_on_success() -> None:
    """After open_for_s exactly one request is let through; its success closes the breaker."""
    breaker, events = _breaker(consecutive_failures=1, open_for_s=5)
    breaker.record(False, breaker.admit(0), 0)
    assert breaker.admit(5) == TRIAL
    assert breaker.admit(5) == REFUSED  # the trial is in flight
    breaker.record(True, TRIAL, 6)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.admit(6) == ADMITTED
    assert events[-1] == (
        "upstream.breaker_closed",
        {"upstream": "primary", "reason": "trial_succeeded", "open_s": 6.0},
    )


def test_failed_trial_doubles_the_cool_down_up_to_its_maximum() -> None:
    """Each failed trial re-opens it for twice as long, never past max_open_for_s."""
    breaker, _ = _breaker(consecutive_failures=1, open_for_s=10, max_open_for_s=25)
    breaker.record(False, breaker.admit(0), 0)
    now = 10.0
    for expected in (20, 25, 25):
        admission = breaker.admit(now)
        assert admission == TRIAL
        breaker.record(False, admission, now)
        assert breaker.reopen_at == now + expected
        assert breaker.admit(now + expected - 0.1) == REFUSED
        now += expected
    admission = breaker.admit(now)
    breaker.record(True, admission, now)
    breaker.record(False, breaker.admit(now), now)
    assert breaker.reopen_at == now + 10  # closing reset the cool-down


def test_opens_on_error_rate_over_the_window_with_enough_requests() -> None:
    """The error-rate rule needs min_requests in the window and a rate above the threshold."""
    breaker, events = _breaker(consecutive_failures=0, error_rate=0.5, min_requests=10, window_s=10)
    for i in range(10):
        breaker.record(i % 2 == 0, breaker.admit(i * 0.5), i * 0.5)
    assert breaker.state is BreakerState.CLOSED  # 5 of 10: not above 0.5
    breaker.record(False, breaker.admit(5.0), 5.0)
    assert breaker.state is BreakerState.OPEN
    assert events[0][1]["reason"] == "error_rate"
    assert events[0][1]["requests"] == 11 and events[0][1]["failures"] == 6


def test_old_failures_leave_the_window() -> None:
    """Failures older than window_s no longer count towards the error rate."""
    breaker, _ = _breaker(consecutive_failures=0, error_rate=0.5, min_requests=4, window_s=5)
    for _ in range(3):
        breaker.record(False, breaker.admit(0), 0)
    assert breaker.error_rate(0) == (3, 3)
    assert breaker.error_rate(6) == (0, 0)
    breaker.record(False, breaker.admit(6), 6)
    assert breaker.state is BreakerState.CLOSED


def test_released_trial_lets_the_next_request_try() -> None:
    """A trial whose client hung up frees the slot instead of leaving the breaker stuck."""
    breaker, _ = _breaker(consecutive_failures=1, open_for_s=1)
    breaker.record(False, breaker.admit(0), 0)
    assert breaker.admit(1) == TRIAL
    breaker.release(TRIAL)
    assert breaker.admit(1) == TRIAL


def test_forced_try_while_open_closes_on_success_only() -> None:
    """A request sent to an open upstream (all were open) closes it when it succeeds."""
    breaker, _ = _breaker(consecutive_failures=1, open_for_s=10)
    breaker.record(False, breaker.admit(0), 0)
    admission = breaker.force(1)
    assert admission == ADMITTED
    breaker.record(False, admission, 1)
    assert breaker.state is BreakerState.OPEN and breaker.reopen_at == 10
    breaker.record(True, breaker.force(2), 2)
    assert breaker.state is BreakerState.CLOSED
