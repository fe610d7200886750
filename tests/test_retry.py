"""The one backoff formula and retry loop (assetry.retry)."""

from __future__ import annotations

import pytest
from assetry.retry import LOST_RACE, Backoff, retry_call
from assetry.values import canonical_json


def test_delay_doubles_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(base=0.1, cap=0.5, jitter=False)
    assert [backoff.delay(n) for n in range(0, 6)] == [0.0, 0.1, 0.2, 0.4, 0.5, 0.5]


def test_full_jitter_stays_within_the_bound() -> None:
    for attempt in range(1, 80):
        assert 0 <= LOST_RACE.delay(attempt) <= min(0.05, 0.002 * 2 ** min(attempt - 1, 62))


def test_exhausted_counts_attempts_in_all() -> None:
    backoff = Backoff(base=0, cap=0, max_attempts=3)
    assert [backoff.exhausted(n) for n in (1, 2, 3)] == [False, False, True]
    assert not Backoff(base=0, cap=0).exhausted(10**6)


def test_retry_call_retries_the_named_errors_then_gives_up() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KeyError("busy")
        return "done"

    assert retry_call(flaky, retry_on=KeyError, backoff=Backoff(0, 0, max_attempts=3)) == "done"
    calls.clear()
    with pytest.raises(KeyError):
        retry_call(flaky, retry_on=KeyError, backoff=Backoff(0, 0, max_attempts=2))
    assert len(calls) == 2


def test_retry_call_lets_other_errors_through_at_once() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        retry_call(broken, retry_on=KeyError, backoff=Backoff(0, 0, max_attempts=5))
    assert len(calls) == 1


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base=-1, cap=1)
    with pytest.raises(ValueError):
        Backoff(base=0, cap=0, max_attempts=0)
    with pytest.raises(ValueError):
        retry_call(lambda: None, retry_on=KeyError, backoff=Backoff(0, 0))


def test_canonical_json_is_compact_unescaped_and_refuses_nan() -> None:
    assert canonical_json({"b": "é", "a": [1, 2]}) == '{"b":"é","a":[1,2]}'
    assert canonical_json({"b": 1, "a": 2}, sort_keys=True) == '{"a":2,"b":1}'
    with pytest.raises(ValueError):
        canonical_json(float("nan"))
