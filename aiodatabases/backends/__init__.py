"""Backends by URL scheme, imported lazily so a missing driver costs nothing until used."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._url import DatabaseURL
from ..exceptions import MissingDriverError, UnknownSchemeError
from .base import Backend, OptionSpec


@dataclass(frozen=True)
class _Entry:
    module: str  # relative to this package
    factory: str
    driver: str  # top-level import name of the driver package
    extra: str  # the aiodatabases extra that installs it


_BY_SCHEME: Mapping[str, _Entry] = {
    "postgresql": _Entry(".postgres", "PostgresBackend", "asyncpg", "postgresql"),
    "postgresql+asyncpg": _Entry(".postgres", "PostgresBackend", "asyncpg", "postgresql"),
    "postgres": _Entry(".postgres", "PostgresBackend", "asyncpg", "postgresql"),
    "postgresql+psycopg": _Entry(".psycopg", "PsycopgBackend", "psycopg", "psycopg"),
    "sqlite": _Entry(".sqlite", "SQLiteBackend", "aiosqlite", "sqlite"),
    "sqlite+aiosqlite": _Entry(".sqlite", "SQLiteBackend", "aiosqlite", "sqlite"),
    # As in `databases`: plain `mysql://` is aiomysql (its errors are PyMySQL's).
    "mysql": _Entry(".aiomysql", "AiomysqlBackend", "aiomysql", "mysql"),
    "mysql+aiomysql": _Entry(".aiomysql", "AiomysqlBackend", "aiomysql", "mysql"),
    "mysql+asyncmy": _Entry(".asyncmy", "AsyncmyBackend", "asyncmy", "asyncmy"),
}

SUPPORTED_SCHEMES = tuple(_BY_SCHEME)


def _entry_for(url: DatabaseURL) -> _Entry:
    entry = _BY_SCHEME.get(url.scheme.lower())
    if entry is None:
        raise UnknownSchemeError(
            f"unsupported database URL scheme {url.scheme!r}; "
            f"supported: {', '.join(SUPPORTED_SCHEMES)}"
        )
    if importlib.util.find_spec(entry.driver) is None:
        error = MissingDriverError(
            f"the {url.scheme!r} backend needs the {entry.driver!r} package, which is not "
            f"installed; install it with: pip install 'aiodatabases[{entry.extra}]'"
        )
        error.name = entry.driver  # as ImportError would have it
        raise error
    return entry


def create_backend(
    url: DatabaseURL, url_options: Mapping[str, str], kwargs: Mapping[str, Any]
) -> Backend:
    """Validate the driver options for the URL's backend and build it (no I/O).

    ``url_options`` and ``kwargs`` hold what the core did not take for itself.
    """
    entry = _entry_for(url)
    module = importlib.import_module(entry.module, __name__)
    spec: OptionSpec = module.OPTIONS
    parsed = spec.parse(url_options, kwargs)
    backend: Backend = getattr(module, entry.factory)(url, parsed)
    backend.url = url
    return backend
