"""Every registered backend implements the whole seam of ``backends/base.py``.

A structural check that needs no server: for each URL scheme, the backend
has every member of the ``Backend`` protocol and a ``Capabilities`` record,
and its connection class every member of ``DriverConnection``. So a new
backend cannot forget a flag or an operation and fail only on the one
server where the core happens to reach for it.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

import pytest

from aiodatabases import DatabaseURL
from aiodatabases.backends import SUPPORTED_SCHEMES, create_backend
from aiodatabases.backends.base import Backend, Capabilities, Cursor, DriverConnection
from aiodatabases.exceptions import MissingDriverError


def _members(protocol: type) -> set[str]:
    """The names a protocol declares: its annotated attributes, methods and properties."""
    names = set(inspect.get_annotations(protocol))
    names.update(
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    )
    return names


def _backend(scheme: str) -> Any:
    url = f"{scheme}:///:memory:" if scheme.startswith("sqlite") else f"{scheme}://localhost/test"
    try:
        return create_backend(DatabaseURL(url), {}, {})  # no I/O
    except MissingDriverError as exc:
        pytest.skip(str(exc))


def test_the_protocols_are_read() -> None:
    assert {"capabilities", "connect", "open_kept", "close_kept", "begin_sql"} <= _members(Backend)
    assert {"ran_inline", "raw", "fetch_all", "terminate"} <= _members(DriverConnection)
    assert {"in_own_transaction", "fetch", "keep", "close"} <= _members(Cursor)


@pytest.mark.parametrize("scheme", SUPPORTED_SCHEMES)
def test_backend_has_every_member_and_a_capabilities_record(scheme: str) -> None:
    backend = _backend(scheme)
    missing = sorted(name for name in _members(Backend) if not hasattr(backend, name))
    assert missing == [], f"{type(backend).__name__} lacks {missing}"
    assert isinstance(backend.capabilities, Capabilities)


@pytest.mark.parametrize("scheme", SUPPORTED_SCHEMES)
def test_driver_connection_class_has_every_member(scheme: str) -> None:
    backend = _backend(scheme)
    connection_class = typing.get_type_hints(type(backend).connect)["return"]
    missing = sorted(
        name for name in _members(DriverConnection) if not hasattr(connection_class, name)
    )
    assert missing == [], f"{connection_class.__name__} lacks {missing}"


def test_capabilities_are_frozen_flags_each_saying_why() -> None:
    fields = dataclasses.fields(Capabilities)
    assert fields
    assert all(field.type in (bool, "bool") for field in fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Capabilities().single_connection = True  # type: ignore[misc]
    lines = inspect.getsource(Capabilities).splitlines()
    undocumented = [
        field.name
        for field in fields
        for number, line in enumerate(lines)
        if line.strip().startswith(f"{field.name}:")
        and not lines[number - 1].strip().startswith("#:")
    ]
    assert undocumented == []
