"""Issue 15 item 3: connect() to a server that is down, or that never answers.

It fails within the connect timeout (the outer ``wait_for`` is only the bound
whose expiry would mean a hang) with an error naming host and port, and never
the URL's password: not in the message, the repr, or the formatted traceback.
"""

from __future__ import annotations

import asyncio
import socket
import traceback
from collections.abc import Iterator

import pytest
from private_servers import Target, free_port

from aiodatabases import Database

PASSWORD = "s3cret-Pa55word"
BOUND = 60
#: Each driver's connect timeout option, set low for the server that never answers.
TIMEOUT_OPTION = {
    "postgresql": "timeout",
    "postgresql+psycopg": "connect_timeout",
    "mysql": "connect_timeout",
    "mysql+asyncmy": "connect_timeout",
}


def with_password(url: str, port: int | None = None) -> str:
    user, rest = url.split("://", 1)[1].split("@", 1)
    scheme = url.split("://", 1)[0]
    if port is not None:
        rest = f"127.0.0.1:{port}/" + rest.split("/", 1)[1]
    return f"{scheme}://{user}:{PASSWORD}@{rest}"


async def connect_error(url: str, **options: object) -> BaseException:
    database = Database(url, **options)  # type: ignore[arg-type]
    with pytest.raises(Exception) as failed:  # noqa: PT011 (each driver's own; checked below)
        await asyncio.wait_for(database.connect(), BOUND)
    assert not isinstance(failed.value, asyncio.TimeoutError) or "timed out after" in str(
        failed.value
    ), "connect() hung"
    assert not database.is_connected
    return failed.value


def assert_names_place_not_password(exc: BaseException, port: int) -> None:
    text = str(exc)
    assert "127.0.0.1" in text, text
    assert str(port) in text, text
    shown = "".join(traceback.format_exception(exc)) + repr(exc)
    assert PASSWORD not in shown


async def test_connect_to_a_stopped_server(target: Target) -> None:
    port = target.server.port
    await target.server.stop()
    exc = await connect_error(with_password(target.url))
    assert_names_place_not_password(exc, port)


async def test_connect_to_a_port_nothing_listens_on(target: Target) -> None:
    port = free_port()
    exc = await connect_error(with_password(target.url, port))
    assert_names_place_not_password(exc, port)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def test_connect_to_a_server_that_never_answers_times_out(
    target: Target, silent_port: int
) -> None:
    scheme = target.url.split("://", 1)[0]
    exc = await connect_error(
        with_password(target.url, silent_port), **{TIMEOUT_OPTION[scheme]: 0.5}
    )
    assert "timed out after 0.5s" in str(exc), repr(exc)
    assert_names_place_not_password(exc, silent_port)
