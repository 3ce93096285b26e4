"""The plugin isolates the app's own ``database``: each test's writes, and the
app's, vanish after the test. Run: ``pytest tests --aiodatabases-url URL``
(or set ``DATABASE_URL``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient


def pytest_configure(config: pytest.Config) -> None:
    # The app builds its Database from DATABASE_URL when it is imported (after
    # this hook): point it at the test database given to the plugin, if any.
    url = config.getoption("aiodatabases_url") or config.getini("aiodatabases_url")
    if url:
        os.environ["DATABASE_URL"] = url


@pytest.fixture(scope="session")
def aiodatabases_database() -> Any:
    from app import database

    return database  # the plugin connects it, with force_rollback


@pytest.fixture(scope="session")
def aiodatabases_schema() -> Any:
    from app import create_schema

    return create_schema  # awaited once per session with a connected Database


@pytest.fixture
def client(aiodatabases_db: Any) -> Iterator[TestClient]:
    """The app, lifespan included (depends on aiodatabases_db: the plugin
    connects the database before the lifespan does)."""
    from app import app

    with TestClient(app) as client:
        yield client
