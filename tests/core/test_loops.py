"""Carrying a call to the owning loop (``_loops``), and what a stopping owner does to it."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import LoopInThread

from aiodatabases import WrongEventLoopError
from aiodatabases._loops import carry, post

# -- carrying a call to the owning loop (``_loops.carry``), without a database -----

_who = contextvars.ContextVar("_who", default="nobody")


async def test_carry_brings_back_the_result_the_error_and_the_context(
    loop_thread: LoopInThread,
) -> None:
    async def owner_side(value: int) -> tuple[int, str, bool]:
        in_owner = asyncio.get_running_loop() is loop_thread.loop
        return value * 2, _who.get(), in_owner

    async def failing() -> None:
        raise LookupError("from the owner")

    _who.set("the caller")
    assert await carry(loop_thread.loop, None, owner_side, 21) == (42, "the caller", True)
    with pytest.raises(LookupError, match="from the owner"):
        await carry(loop_thread.loop, 5.0, failing)


async def test_cancelling_the_caller_cancels_the_carried_call(loop_thread: LoopInThread) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def long_call() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    caller = asyncio.create_task(carry(loop_thread.loop, None, long_call))
    await asyncio.to_thread(started.wait, 10)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await asyncio.to_thread(cancelled.wait, 10)


async def test_a_call_given_up_before_it_started_never_runs(loop_thread: LoopInThread) -> None:
    ran = threading.Event()
    unblock = threading.Event()

    async def call() -> None:
        ran.set()

    # The owner is running but blocked, as a loop inside a synchronous call is.
    loop_thread.loop.call_soon_threadsafe(unblock.wait, 30)
    with pytest.raises(WrongEventLoopError, match=r"did not run the call within 0\.1s"):
        await carry(loop_thread.loop, 0.1, call)
    cancelled_caller = asyncio.create_task(carry(loop_thread.loop, None, call))
    await asyncio.sleep(0.05)
    cancelled_caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled_caller
    unblock.set()
    # The owner runs on: both calls were given up before they started.
    assert loop_thread.run(asyncio.sleep(0, "alive")) == "alive"
    assert not ran.is_set()


async def test_many_calls_in_flight_keep_their_own_context_and_result(
    loop_thread: LoopInThread,
) -> None:
    # Calls posted while the owner is busy share its wake-ups; each must still
    # run in its own caller's context and bring back its own result.
    async def owner_side(n: int) -> tuple[int, str]:
        await asyncio.sleep(0)
        return n, _who.get()

    async def caller(n: int) -> tuple[int, str]:
        _who.set(f"caller {n}")
        return await carry(loop_thread.loop, None, owner_side, n)

    results = await asyncio.gather(*(caller(n) for n in range(300)))
    assert results == [(n, f"caller {n}") for n in range(300)]


def test_posts_from_many_threads_at_once_all_arrive_in_order(loop_thread: LoopInThread) -> None:
    # The mailbox takes no lock: a post racing a delivery must be run by
    # that delivery or wake the loop for the next one, never be left behind.
    loop = loop_thread.loop
    per_thread, threads = 3000, 4
    seen: list[list[int]] = [[] for _ in range(threads)]
    all_in = threading.Event()
    remaining = [per_thread * threads]

    def arrive(thread: int, number: int) -> None:
        seen[thread].append(number)
        remaining[0] -= 1  # callbacks all run in the one loop thread
        if remaining[0] == 0:
            all_in.set()

    def poster(thread: int) -> None:
        for number in range(per_thread):
            post(loop, arrive, thread, number)

    workers = [threading.Thread(target=poster, args=(t,)) for t in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between any two steps: races show
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert all_in.wait(10), f"{remaining[0]} posted callbacks never ran"
    assert seen == [list(range(per_thread))] * threads


async def test_a_failing_posted_callback_does_not_stop_the_others(
    loop_thread: LoopInThread,
) -> None:
    reported: list[BaseException] = []
    ran = threading.Event()
    unblock = threading.Event()
    loop = loop_thread.loop
    loop.call_soon_threadsafe(
        loop.set_exception_handler, lambda _, c: reported.append(c["exception"])
    )
    loop.call_soon_threadsafe(unblock.wait, 30)  # both posts wait for one delivery

    def failing() -> None:
        raise LookupError("posted")

    post(loop, failing)
    post(loop, ran.set)
    unblock.set()
    assert await asyncio.to_thread(ran.wait, 10)
    assert [type(exc) for exc in reported] == [LookupError]


def test_a_loop_posted_to_is_not_kept_alive_after_it_closed() -> None:
    # Regression: the mailbox of a loop held the loop, so every loop a call
    # was ever carried to (one per test) stayed in memory with its tasks.
    import weakref

    gone = []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        post(loop, lambda: None)
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        gone.append(weakref.ref(loop))
        del loop
    gc.collect()
    assert [ref() for ref in gone] == [None, None, None]


def test_posting_to_a_closed_loop_raises() -> None:
    loop = asyncio.new_event_loop()
    post(loop, lambda: None)  # a delivery is pending when the loop closes
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        post(loop, lambda: None)


async def test_a_call_that_fails_to_start_fails_its_caller(loop_thread: LoopInThread) -> None:
    def not_a_coroutine_function() -> object:
        raise LookupError("before any await")

    with pytest.raises(LookupError, match="before any await"):
        await asyncio.wait_for(carry(loop_thread.loop, None, not_a_coroutine_function), 10)  # type: ignore[arg-type]


def test_a_delivery_interrupted_by_keyboard_interrupt_keeps_the_rest() -> None:
    loop = asyncio.new_event_loop()
    ran: list[str] = []

    def interrupted() -> None:
        raise KeyboardInterrupt

    try:
        post(loop, interrupted)
        post(loop, ran.append, "the rest")  # rides in the same delivery
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(asyncio.sleep(0))
        assert ran == ["the rest"]
    finally:
        loop.close()


async def test_a_result_the_caller_gave_up_on_is_handed_back(loop_thread: LoopInThread) -> None:
    # carry_call: the call succeeded in the owner while its caller (its loop
    # busy) was cancelled; what the call took must be given back.
    from aiodatabases._loops import carry_call

    lost: list[object] = []

    async def take() -> str:
        return "a hold"

    caller = asyncio.create_task(carry_call(loop_thread.loop, None, lost.append, take))
    await asyncio.sleep(0)  # posted to the owner
    time.sleep(0.2)  # noqa: ASYNC251 - the owner runs it and posts the result meanwhile
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(10):
        await asyncio.sleep(0)
    assert lost == ["a hold"]


# -- the owning loop stops while a carried COMMIT runs there ------------------------

_OWNER_STOPS_SCRIPT = """
import asyncio, sys, threading
from aiodatabases import Database

url, how = sys.argv[1], sys.argv[2]
force_rollback = how == "disconnect"
database = Database(url, force_rollback=force_rollback, acquire_timeout=1)
owner = {}

if how == "asyncio.run":
    # The owner is an application loop run by asyncio.run(), in its thread.
    ready = threading.Event()

    async def owner_main():
        await database.connect()
        owner["loop"] = asyncio.get_running_loop()
        owner["end"] = owner["loop"].create_future()
        ready.set()
        await owner["end"]

    thread = threading.Thread(target=asyncio.run, args=(owner_main(),), daemon=True)
    thread.start()
    ready.wait(30)
elif how in ("stop", "close"):
    # The owner is an application loop run by run_forever(), in its thread.
    owner["loop"] = asyncio.new_event_loop()
    thread = threading.Thread(target=owner["loop"].run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(database.connect(), owner["loop"]).result(30)


async def main():
    if force_rollback:
        await database.connect()  # its connection lives in a loop thread of its own
    async with database.connection() as connection:
        cls = type(connection._session.driver)
    run_control, sent = cls.run_control, threading.Event()

    async def slow_end(self, statements):
        if statements[0] in ("COMMIT", "RELEASE SAVEPOINT aiodatabases_sp_1"):
            sent.set()
            await asyncio.sleep(3)  # a COMMIT waiting for a lock
        return await run_control(self, statements)

    async def not_now(self, statements):
        return False

    cls.run_control, cls.control_now = slow_end, not_now
    transaction = await database.transaction()
    commit = asyncio.create_task(transaction.commit())
    await asyncio.to_thread(sent.wait, 30)
    if how == "asyncio.run":
        owner["loop"].call_soon_threadsafe(owner["end"].set_result, None)
    elif how in ("stop", "close"):
        owner["loop"].call_soon_threadsafe(owner["loop"].stop)
        await asyncio.to_thread(thread.join)
        if how == "close":
            owner["loop"].close()
    else:
        await database.disconnect()  # gives up waiting for the COMMIT (acquire_timeout)
    done, _ = await asyncio.wait({commit}, timeout=10)
    if not done:
        print("hangs", flush=True)
        sys.stdout.flush()
        import os
        os._exit(0)  # the commit cannot even be cancelled: asyncio.run would wait for ever
    try:
        commit.result()
        print("committed")
    except BaseException as exc:
        print(type(exc).__name__, exc)

asyncio.run(main())
"""


@pytest.mark.parametrize("how", ["stop", "close", "asyncio.run", "disconnect"])
def test_a_commit_carried_to_a_loop_that_stops_meanwhile_fails_clearly(
    database_url: str, how: str
) -> None:
    # A COMMIT carried to the owning loop (an application loop in another
    # thread, or force_rollback's loop thread) is on its way when that loop
    # stops: stopped, closed, shut down by asyncio.run(), or ended by a
    # disconnect() that gave up waiting. The caller must get a clear error,
    # not wait for ever (the end of a transaction cannot even be cancelled),
    # nor a CancelledError it did not ask for.
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_OWNER_STOPS_SCRIPT), database_url, how],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("WrongEventLoopError"), (result.stdout, result.stderr[-2000:])
