"""Posting callbacks to an event loop from other threads, one wake-up for many.

Each loop posted to has one ``Mailbox`` (kept in a registry weakly keyed by
the loop); ``_loops`` carries calls between loops through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeAlias

_Item: TypeAlias = tuple[Callable[..., Any], tuple[Any, ...]]


class Mailbox:
    """Callbacks posted to one loop from other threads, run in one wake-up.

    ``call_soon_threadsafe`` wakes the loop (a write to its self-pipe) for
    every callback; many calls in flight between two loops would pay that
    system call and wake-up each. A mailbox wakes its loop only when it was
    empty: whatever arrives before the loop gets to it rides along. It refers
    to its loop weakly (the registry is keyed by the loop).

    No lock: a poster adds its item before it reads ``_scheduled``, and a
    delivery clears ``_scheduled`` before it counts the items it runs, so an
    item is either counted by a delivery or its poster schedules the next
    one (``deque`` appends and pops are atomic).
    """

    __slots__ = ("__weakref__", "_items", "_loop", "_scheduled", "in_flight")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._items: deque[_Item] = deque()
        self._scheduled = False
        # The calls carried to a LoopThread's loop and not settled yet
        # (``_loops.carry_call``); None for any other loop.
        self.in_flight: set[Any] | None = None

    def post(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        loop = self._loop()
        if loop is None or loop.is_closed():
            raise RuntimeError("Event loop is closed")
        item = (callback, args)
        self._items.append(item)
        if not self._scheduled:
            self._wake(loop, item)

    def _wake(self, loop: asyncio.AbstractEventLoop, item: _Item | None) -> None:
        self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._deliver)
        except BaseException:
            self._scheduled = False
            if item is not None:
                with contextlib.suppress(ValueError):  # a delivery took it meanwhile
                    self._items.remove(item)
            raise

    def _deliver(self) -> None:
        self._scheduled = False
        items = self._items
        # What is posted while these run waits for the next delivery.
        for _ in range(len(items)):
            callback, args = items.popleft()
            try:
                callback(*args)
            except (SystemExit, KeyboardInterrupt):
                # What this delivery did not run goes first in the next one.
                loop = self._loop()
                if items and not self._scheduled and loop is not None:
                    with contextlib.suppress(RuntimeError):  # the loop is gone
                        self._wake(loop, None)
                raise
            except BaseException as exc:  # as the loop would for a callback of its own
                loop = self._loop()
                if loop is not None:
                    loop.call_exception_handler(
                        {"message": "aiodatabases: a carried callback failed", "exception": exc}
                    )


_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Mailbox] = (
    weakref.WeakKeyDictionary()
)
_mailboxes_lock = threading.Lock()


def post(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    """``loop.call_soon_threadsafe(callback, *args)``, sharing wake-ups (``Mailbox``).

    Raises RuntimeError if ``loop`` is closed.
    """
    post_via(loop, mailbox_of(loop), callback, args)


def post_via(
    loop: asyncio.AbstractEventLoop,
    mailbox: Mailbox | None,
    callback: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    if mailbox is None:
        loop.call_soon_threadsafe(callback, *args)
    else:
        mailbox.post(callback, args)


def mailbox_of(loop: asyncio.AbstractEventLoop) -> Mailbox | None:
    """``loop``'s mailbox (None for a loop type without weak references)."""
    mailbox = _mailboxes.get(loop)
    if mailbox is None:
        with _mailboxes_lock:
            mailbox = _mailboxes.get(loop)
            if mailbox is None:
                try:
                    mailbox = _mailboxes[loop] = Mailbox(loop)
                except TypeError:
                    return None
    return mailbox
