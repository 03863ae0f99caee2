"""The per-worker byte budget: reservations within it, refusals past it, a call when a burst drains."""

from __future__ import annotations

import pytest

from service.core.budget import ByteBudget
from service.core.errors import Overloaded


def test_reservations_fit_until_the_budget_is_full_then_are_refused_until_given_back():
    budget = ByteBudget(100)
    assert budget.take(60) == 60
    assert budget.take(40) == 40
    with pytest.raises(Overloaded) as refused:
        budget.take(1)
    assert refused.value.retry_after == 1
    budget.give(40)
    assert budget.take(40) == 40
    budget.give(100)
    assert budget.held == 0


def test_one_reservation_larger_than_the_budget_takes_it_all_and_runs_alone():
    budget = ByteBudget(100)
    assert budget.take(1000) == 100
    with pytest.raises(Overloaded):
        budget.take(1)
    budget.give(100)
    assert budget.held == 0


def test_the_drained_callback_runs_once_per_burst():
    drained: list[int] = []
    budget = ByteBudget(160, on_drained=lambda: drained.append(budget.held))
    budget.take(10)
    budget.give(10)
    assert drained == []  # never a quarter of the budget: no burst
    budget.take(30)
    budget.take(20)  # 50 held: a burst
    budget.give(30)
    assert drained == []  # 20 held: above a sixteenth (10)
    budget.give(20)
    assert drained == [0]
    budget.take(5)
    budget.give(5)
    assert drained == [0]
