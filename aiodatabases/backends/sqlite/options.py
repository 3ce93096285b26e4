"""What a SQLite URL opens: its options (PRAGMAs, ``sqlite3.connect`` keywords,
URI parameters, the default BEGIN) and the file or in-memory database it names."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from ..._url import DatabaseURL
from ..base import OptionSpec, passthrough, to_bool, to_float, to_int


def _pragma_word(value: Any) -> str:
    # PRAGMA values cannot be bound as parameters, so only plain words pass.
    text = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("expected a plain word or number")
    return text


def _pragma_bool(value: Any) -> str:
    return "ON" if to_bool(value) else "OFF"


def _pragma_int(value: Any) -> str:
    return str(to_int(value))


#: PRAGMAs that may be set by option; they are applied to every pooled connection.
PRAGMAS: Mapping[str, Callable[[Any], str]] = {
    "foreign_keys": _pragma_bool,
    "journal_mode": _pragma_word,
    "synchronous": _pragma_word,
    "busy_timeout": _pragma_int,
    "cache_size": _pragma_int,
    "temp_store": _pragma_word,
    "mmap_size": _pragma_int,
    "recursive_triggers": _pragma_bool,
    "case_sensitive_like": _pragma_bool,
    "secure_delete": _pragma_bool,
}

#: Keyword arguments of ``sqlite3.connect`` passed through as they are.
CONNECT_OPTIONS: Mapping[str, Callable[[Any], Any]] = {
    "timeout": to_float,
    "uri": to_bool,
    "factory": passthrough,
    "check_same_thread": to_bool,
    "detect_types": to_int,
    "cached_statements": to_int,
}

#: The BEGIN of each transaction mode (the ``isolation`` option).
BEGIN = {
    "deferred": "BEGIN DEFERRED",
    "immediate": "BEGIN IMMEDIATE",
    "exclusive": "BEGIN EXCLUSIVE",
}


def isolation_mode(value: Any) -> str:
    level = str(value).strip().lower()
    if level not in BEGIN:
        raise ValueError(f"expected one of {', '.join(BEGIN)}")
    return level


#: Options of the backend itself: ``isolation`` is the default transaction
#: mode (``transaction(isolation=...)`` picks one per transaction).
_BACKEND_OPTIONS: Mapping[str, Callable[[Any], Any]] = {"isolation": isolation_mode}


def _one_of(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return convert


def _uri_bool(value: Any) -> str:
    return "1" if to_bool(value) else "0"


#: SQLite's own URI query parameters (https://sqlite.org/uri.html): given in
#: the URL query (``sqlite:///file:app?mode=memory&cache=shared``) they are
#: put in the ``file:`` URI that sqlite3 opens (with ``uri=True``).
URI_PARAMETERS: Mapping[str, Callable[[Any], str]] = {
    "mode": _one_of("ro", "rw", "rwc", "memory"),
    "cache": _one_of("shared", "private"),
    "vfs": _pragma_word,
    "immutable": _uri_bool,
    "nolock": _uri_bool,
    "psow": _uri_bool,
    "modeof": str,
}

OPTIONS = OptionSpec(
    scheme="sqlite",
    options={**CONNECT_OPTIONS, **PRAGMAS, **URI_PARAMETERS, **_BACKEND_OPTIONS},
)

#: The statements ``begin_sql`` returns (see ``BriefReads.control_now``).
BEGIN_STATEMENTS = frozenset(BEGIN.values())


@dataclass(frozen=True)
class Target:
    """What sqlite3 opens: the path (or ``file:`` URI) and what kind of database it is."""

    path: str
    is_uri: bool
    #: Each connection to a private in-memory database is its own database.
    private_memory: bool
    #: A named in-memory database in shared cache (``mode=memory&cache=shared``,
    #: ``file::memory:?cache=shared``): SQLite drops it when its last connection
    #: closes, so one connection is kept open while the database is connected.
    shared_memory: bool


def database_target(url: DatabaseURL, uri_parameters: Mapping[str, str]) -> Target:
    """The path of ``url`` with SQLite's URI parameters (if any) in its ``file:`` URI."""
    path = url.database or ":memory:"
    if uri_parameters:
        if not path.startswith("file:"):
            # '?', '#' and '%' in a file name would be read as URI syntax.
            path = "file:" + quote(path, safe="/:")
        path += ("&" if "?" in path else "?") + urlencode(uri_parameters)
    if not path.startswith("file:"):
        return Target(path, False, path == ":memory:", False)
    name, _, query = path[len("file:") :].partition("?")
    parameters = {key: value.lower() for key, value in parse_qsl(query)}
    memory = name == ":memory:" or parameters.get("mode") == "memory"
    shared = memory and parameters.get("cache") == "shared"
    return Target(path, True, memory and not shared, shared)


def file_name(target: Target) -> str | None:
    """The file ``target`` opens (a ``file:`` URI's path unquoted), or None in memory."""
    if target.private_memory or target.shared_memory:
        return None
    if not target.is_uri:
        return target.path
    name = target.path[len("file:") :].partition("?")[0].partition("#")[0]
    return unquote(name.removeprefix("//localhost").removeprefix("//"))


def cannot_open_error(exc: sqlite3.OperationalError, target: Target) -> sqlite3.OperationalError:
    """sqlite3's bare "unable to open database file" naming the file, and its
    directory when that is missing: still an ``sqlite3.OperationalError``
    starting with SQLite's own words, as code catching it expects."""
    name = file_name(target)
    if name is None or not str(exc).startswith("unable to open database file"):
        return exc
    directory = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(directory):
        reason = (
            f"the directory {directory!r} does not exist "
            "(SQLite creates the file, not its directory)"
        )
    else:
        reason = "check that it is a file this process may read and write"
    explained = sqlite3.OperationalError(f"{exc} {name!r}: {reason}")
    for attribute in ("sqlite_errorcode", "sqlite_errorname"):
        if hasattr(exc, attribute):
            setattr(explained, attribute, getattr(exc, attribute))
    return explained
