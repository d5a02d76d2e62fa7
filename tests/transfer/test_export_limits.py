"""GET /api/export's bounds on exports running at once: EXPORTS_PER_USER (429) and
EXPORTS_PER_WORKER (503), and their slots given back however an export ends."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import pytest
from beanie import PydanticObjectId
from fastapi import FastAPI
from httpx import AsyncClient
from pymongo.errors import AutoReconnect, OperationFailure
from starlette.types import ASGIApp

from service.todos import service as todos_service
from service.transfer import exports
from service.transfer.limits import ExportSlots
from tests.transfer.conftest import export_over_asgi
from tests.utils import UserAccount, create_account, create_todo


class GatedReader(todos_service.LiveTodos):
    """LiveTodos that, for the lists in `held`, waits at `gate` before its first batch (an
    export held open mid-stream); `waiting` counts the readers waiting there. With `fail`, a
    batch read after the first raises a database error instead."""

    held: ClassVar[set[str]]
    gate: ClassVar[asyncio.Event]
    waiting: ClassVar[list["GatedReader"]]
    arrived: ClassVar[asyncio.Event]
    fail: ClassVar[bool]
    tasks: ClassVar[list["asyncio.Task[httpx.Response]"]]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.list_id = str(kwargs["list_id"])
        self.reads = 0

    async def next_batch(self) -> list[dict[str, Any]]:
        if self.list_id in self.held and not self.gate.is_set():
            self.waiting.append(self)
            self.arrived.set()
            await self.gate.wait()
        self.reads += 1
        if self.fail and self.reads > 1:
            raise OperationFailure("the database failed mid-export")
        return await super().next_batch()


@pytest.fixture
async def gated(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[type[GatedReader]]:
    """Every LiveTodos an export makes is a GatedReader (nothing held, the gate shut).

    Afterwards the gate opens and the exports `export` started are awaited: a test that
    failed (the limit missing, say) ends instead of leaving exports waiting forever."""
    shared = {
        "held": set(),
        "gate": asyncio.Event(),
        "arrived": asyncio.Event(),
        "waiting": [],
        "fail": False,
        "tasks": [],
    }
    reader: type[GatedReader] = type("Gated", (GatedReader,), shared)
    monkeypatch.setattr(todos_service, "LiveTodos", reader)
    yield reader
    reader.gate.set()
    async with asyncio.timeout(10):
        await asyncio.gather(*reader.tasks, return_exceptions=True)


def hold(gated: type[GatedReader], *users: UserAccount) -> None:
    """Hold the exports of these users' default lists (its id is the user's) at the gate."""
    gated.held.update(user.id for user in users)


async def until_waiting(gated: type[GatedReader], count: int) -> None:
    async with asyncio.timeout(10):
        while len(gated.waiting) < count:
            # Cleared and awaited with no await between the check and the wait.
            gated.arrived.clear()
            await gated.arrived.wait()


def export(
    gated: type[GatedReader], client: AsyncClient, user: UserAccount
) -> "asyncio.Task[httpx.Response]":
    """The user's export, started in a task (awaited by the `gated` fixture at the latest)."""
    task = asyncio.create_task(client.get("/api/export", headers=user.headers))
    gated.tasks.append(task)
    return task


def assert_refused(response: httpx.Response, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["retry-after"] == "5"
    assert detail in response.json()["detail"]


async def until_done(
    tasks: list["asyncio.Task[httpx.Response]"], count: int
) -> list[httpx.Response]:
    """The answers of the tasks done, once `count` of them are."""
    async with asyncio.timeout(10):
        while sum(task.done() for task in tasks) < count:
            running = [task for task in tasks if not task.done()]
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
    return [task.result() for task in tasks if task.done()]


async def test_parallel_exports_past_exports_per_user_get_429_while_another_user_exports(
    client: AsyncClient, alice: UserAccount, bob: UserAccount, gated: type[GatedReader]
) -> None:
    await create_todo(client, alice, "alice's todo")
    hold(gated, alice)
    tasks = [export(gated, client, alice) for _ in range(6)]
    # Two get a slot and wait at the gate, mid-stream; the other four are refused at once.
    await until_waiting(gated, 2)
    refused = await until_done(tasks, 4)
    assert len(refused) == 4
    for response in refused:
        assert_refused(response, 429, "You already have 2 exports running")
    assert len(gated.waiting) == 2

    # Bob's export is his own: it runs while Alice's two are held.
    response = await client.get("/api/export", headers=bob.headers)
    assert response.status_code == 200

    gated.gate.set()
    answers = await asyncio.gather(*tasks)
    held = [answer for answer in answers if answer.status_code == 200]
    assert len(held) == 2
    for answer in held:
        assert answer.json()["lists"][0]["todos"][0]["text"] == "alice's todo"


@pytest.mark.parametrize("settings_overrides", [{"exports_per_worker": 3}])
async def test_exports_past_exports_per_worker_get_503(
    client: AsyncClient, alice: UserAccount, bob: UserAccount, gated: type[GatedReader]
) -> None:
    carol = await create_account(client)
    hold(gated, alice, bob)
    tasks = [export(gated, client, alice), export(gated, client, alice), export(gated, client, bob)]
    await until_waiting(gated, 3)
    gated.held.clear()  # the next exports would not wait: they must not need a slot

    # The worker is full: Carol's first export is refused, and so is Bob's second (the
    # worker's bound comes before the user's).
    for user in (carol, bob):
        response = await client.get("/api/export", headers=user.headers)
        assert_refused(response, 503, "as many exports as it takes at once")

    gated.gate.set()
    answers = await asyncio.gather(*tasks)
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    response = await client.get("/api/export", headers=carol.headers)
    assert response.status_code == 200


# One slot each: an export whose slot was not given back makes the next one a 429.
ONE_EACH = pytest.mark.parametrize("settings_overrides", [{"exports_per_user": 1}])


async def export_status(client: AsyncClient, user: UserAccount) -> int:
    response = await client.get("/api/export", headers=user.headers)
    return response.status_code


@ONE_EACH
@pytest.mark.parametrize("export_format", ["json", "csv"])
async def test_a_finished_export_gives_its_slot_back(
    client: AsyncClient, alice: UserAccount, export_format: str
) -> None:
    await create_todo(client, alice, "a todo")
    for _ in range(3):
        response = await client.get(
            "/api/export", params={"format": export_format}, headers=alice.headers
        )
        assert response.status_code == 200, response.text


@ONE_EACH
async def test_a_client_gone_mid_export_gives_its_slot_back(
    running_app: ASGIApp, client: AsyncClient, alice: UserAccount, gated: type[GatedReader]
) -> None:
    await create_todo(client, alice, "a todo")
    sent = await export_over_asgi(running_app, alice, [], leave_after='"lists": [')
    assert sent[0]["status"] == 200
    assert await export_status(client, alice) == 200


@ONE_EACH
async def test_a_cancelled_export_gives_its_slot_back(
    client: AsyncClient, alice: UserAccount, gated: type[GatedReader]
) -> None:
    hold(gated, alice)
    task = export(gated, client, alice)
    await until_waiting(gated, 1)
    gated.held.clear()  # the next export would not wait: it must not need a slot
    assert await export_status(client, alice) == 429
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gated.gate.set()
    assert await export_status(client, alice) == 200


@ONE_EACH
async def test_a_database_error_mid_export_gives_its_slot_back(
    running_app: ASGIApp,
    client: AsyncClient,
    alice: UserAccount,
    gated: type[GatedReader],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exports, "BATCH_SIZE", 1)
    for n in range(3):
        await create_todo(client, alice, f"todo {n}")
    gated.fail = True
    events: list[str] = []
    # Starlette can't answer 500 once the response has started: the app raises.
    with pytest.raises(RuntimeError) as raised:
        await export_over_asgi(running_app, alice, events)
    assert isinstance(raised.value.__cause__, OperationFailure)
    assert any("todo 0" in event for event in events)  # it failed mid-stream
    gated.fail = False
    assert await export_status(client, alice) == 200


@ONE_EACH
async def test_a_database_error_before_the_export_starts_gives_its_slot_back(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = exports.readable_lists

    async def unreachable(caller: Any) -> list[exports.ExportedList]:
        raise AutoReconnect("the database is unreachable")

    monkeypatch.setattr(exports, "readable_lists", unreachable)
    response = await client.get("/api/export", headers=alice.headers)
    assert response.status_code == 503
    monkeypatch.setattr(exports, "readable_lists", real)
    assert await export_status(client, alice) == 200


def test_a_slot_given_back_twice_counts_once_and_leaves_no_entry_behind() -> None:
    slots = ExportSlots(per_user=2, per_worker=3)
    user, other = PydanticObjectId(), PydanticObjectId()
    first, _ = slots.take(user), slots.take(other)
    first.release()
    first.release()
    assert (slots.running, slots.running_for(user), slots.running_for(other)) == (1, 0, 1)
    slots.take(user).release()
    assert slots.running == 1


@pytest.mark.mock_only
def test_the_export_documents_its_429_and_503_with_retry_after(app: FastAPI) -> None:
    document = app.openapi()
    answers = document["paths"]["/api/export"]["get"]["responses"]
    for status in ("429", "503"):
        assert "Retry-After" in answers[status]["headers"]
    assert "EXPORTS_PER_USER" in answers["429"]["description"]
    assert "EXPORTS_PER_WORKER" in answers["503"]["description"]
