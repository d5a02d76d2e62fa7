"""The per-request database budget (service/budget.py), with an injected clock."""

import inspect

import pytest
from pymongo.errors import ExecutionTimeout

from service.accounts import counters
from service.accounts import store as account_store
from service.core.budget import BUDGET_MARKER, RequestBudget, budgeted, request_budget
from service.events import store as event_store
from service.health import store as health_store
from service.invitations import store as invitation_store
from service.todos import idempotency, listing
from service.todos import service as todo_service
from service.todos import store as todo_store


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_spending_takes_time_off_the_budget() -> None:
    clock = FakeClock()
    budget = RequestBudget(2.0, clock=clock)
    with budget.spend() as remaining:
        assert remaining == 2.0
        clock.now += 0.5
    assert budget.remaining == 1.5

    def failing_call() -> None:
        with budget.spend():
            clock.now += 1.0
            raise RuntimeError

    with pytest.raises(RuntimeError):
        failing_call()
    assert budget.remaining == 0.5  # a failed call costs its time too


async def test_calls_share_one_budget_and_stop_when_it_is_spent() -> None:
    calls: list[str] = []

    @budgeted
    async def call(name: str) -> str:
        calls.append(name)
        return name

    with request_budget(2.0) as budget:
        assert await call("first") == "first"
        budget.remaining = 0.0  # as if the first calls had used it all
        with pytest.raises(ExecutionTimeout) as raised:
            await call("second")
    assert raised.value.timeout  # so the error handler answers 503
    assert calls == ["first"]


async def test_nested_budgeted_calls_count_once() -> None:
    @budgeted
    async def inner() -> None:
        pass

    @budgeted
    async def outer() -> None:
        await inner()

    clock = FakeClock()
    with request_budget(2.0) as budget:
        budget._clock = clock
        await outer()
    assert budget.remaining == 2.0


async def test_without_a_request_budget_calls_run_unbounded() -> None:
    @budgeted
    async def call() -> int:
        return 7

    assert await call() == 7


def test_every_store_function_declares_its_budget() -> None:
    """New store functions must be @budgeted (or @unbudgeted: waits that are not database time)."""
    for module in (
        account_store,
        counters,
        todo_store,
        listing,
        todo_service,
        idempotency,
        event_store,
        health_store,
        invitation_store,
    ):
        for name, function in inspect.getmembers(module, inspect.iscoroutinefunction):
            if name.startswith("_") or function.__module__ != module.__name__:
                continue
            assert hasattr(function, BUDGET_MARKER), f"{module.__name__}.{name}"
