"""Building what one ``connect()`` makes, and closing it again.

A pooled database gets a ``Runtime`` in the caller's loop, and its read
replicas' pools beside it; a ``force_rollback`` one gets a private loop
thread, a pool of one and the shared connection opened in that thread (and
no replicas). Either way the result is undone completely if the opening
fails or is cancelled half way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from typing import Any, NamedTuple

from ._background import shielded
from ._loops import LoopThread
from ._observe import Observers
from ._replicas import Replicas
from ._runtime import Runtime, Settings
from ._url import DatabaseURL
from .backends.base import Backend
from .connection import Connection, open_shared

logger = logging.getLogger("aiodatabases.pool")


class Opened(NamedTuple):
    """What one ``connect()`` opened."""

    runtime: Runtime
    shared: Connection | None  # force_rollback's one connection
    replicas: Replicas | None  # the read replicas, open (None with force_rollback)


async def open_all(
    backend: Backend,
    settings: Settings,
    url: DatabaseURL,
    force_rollback: bool,
    observers: Observers,
    replicas: Replicas | None,
) -> Opened:
    """The runtime and, without ``force_rollback``, the replicas' pools; a replica
    that cannot be reached is logged, never raised (``Replicas.open``)."""
    runtime, shared = await build_runtime(backend, settings, url, force_rollback, observers)
    if replicas is None or shared is not None:
        return Opened(runtime, shared, None)
    try:
        await replicas.open()
    except BaseException:
        await shielded(close_runtime(runtime, None))
        raise
    return Opened(runtime, None, replicas)


async def close_all(opened: Opened) -> None:
    try:
        await close_runtime(opened.runtime, opened.shared)
    finally:
        if opened.replicas is not None:
            closing = (close_runtime(runtime, None) for runtime in opened.replicas.detach())
            await asyncio.gather(*closing)


def terminate_all(opened: Opened) -> None:
    """Drop everything without awaiting: the owning loop is closed."""
    opened.runtime.terminate()
    if opened.replicas is not None:
        for runtime in opened.replicas.detach():
            runtime.terminate()


async def build_runtime(
    backend: Backend,
    settings: Settings,
    url: DatabaseURL,
    force_rollback: bool,
    observers: Observers,
) -> tuple[Runtime, Connection | None]:
    """The runtime, open, and with ``force_rollback`` its one shared connection."""
    name = url.obscure_password
    if not force_rollback:
        runtime = Runtime(backend, settings, asyncio.get_running_loop(), None, observers)
        await runtime.open()  # closes what it opened if it fails
        pool = runtime.pool
        logger.info(
            "connected to %s: pool open (%d of at most %d connections)",
            name,
            pool.stats().size,
            pool.max_size,
        )
        return runtime, None
    thread = LoopThread(f"aiodatabases {url.obscure_password}")
    # One connection serves everything; the pool only opens it.
    # pool_recycle does not apply: the one connection is held until disconnect.
    one = Settings(min_size=0, max_size=1, acquire_timeout=settings.acquire_timeout)
    runtime = Runtime(backend, one, thread.loop, thread, observers)
    opening = runtime.submit_to_thread(lambda: open_shared(runtime))
    try:
        shared = await asyncio.shield(asyncio.wrap_future(opening))
    except BaseException:
        # Cancelled or failed: let the opening settle in its thread, then undo it.
        await shielded(_undo_opening(runtime, opening))
        raise
    logger.info("connected to %s with force_rollback: one connection, in a transaction", name)
    return runtime, shared


async def _undo_opening(runtime: Runtime, opening: concurrent.futures.Future[Any]) -> None:
    shared: Connection | None = None
    with contextlib.suppress(BaseException):
        shared = await asyncio.wrap_future(opening)
    await close_runtime(runtime, shared)


async def close_runtime(runtime: Runtime, shared: Connection | None) -> None:
    """Close ``runtime`` and every connection still held (``shared`` among them:
    referenced here until then, as the runtime refers to connections weakly)."""
    loop = runtime.loop
    if loop.is_closed() or (not loop.is_running() and loop is not asyncio.get_running_loop()):
        # Nothing can be awaited there any more: drop the sockets.
        runtime.terminate()
    else:
        await runtime.call(runtime.close)
    if runtime.thread is not None:
        runtime.thread.stop()
    stats = runtime.pool.stats()
    logger.info(
        "disconnected from %s: pool closed (%d connection(s) opened, %d closed in all)",
        runtime.backend.url.obscure_password,
        stats.opened,
        stats.closed,
    )
