"""The private paths of ``databases`` 0.9 that popular clients reach, kept working.

Libraries written for ``databases`` (ORMs, query builders, test helpers)
reach past its public API into its backend objects. So that they work
unchanged, the backends mix these classes in; aiodatabases itself never
uses them (``tests/core/test_compat_private.py`` checks both). What is kept:

- ``database._backend._dialect``: the SQLAlchemy dialect (``Database.dialect``).
- ``database._backend._database_url``: the ``DatabaseURL`` the database was built with.
- SQLite ``database._backend._options``: the mutable dict of ``sqlite3.connect``
  keywords (``timeout``, ``uri``, ``factory``, ...) given as keywords or in the
  URL; it is read at every connect, so ``_options["factory"] = MyConnection``
  before ``connect()`` makes every later connection a ``MyConnection``.
- SQLite ``database._backend._pool``: a ``SQLitePool``;
  ``backend._pool = backend._pool.__class__(backend._database_url, **backend._options)``
  installs a replacement whose URL and options the later connections use
  (an ORM does this to turn on ``PRAGMA foreign_keys`` through a factory).

Public already, and also what ``databases`` code reads: ``database.url._url``
(the URL string, a slot of ``DatabaseURL``), ``Connection.raw_connection``
(the driver's connection) and the driver's own exceptions, never wrapped.
"""

from __future__ import annotations

from typing import Any

from ._optional import sqlalchemy_support
from ._url import DatabaseURL

__all__ = ["BackendPaths", "SQLitePaths", "SQLitePool"]


class BackendPaths:
    """``backend._dialect`` and ``backend._database_url``, on every backend."""

    dialect_name: str
    #: The URL the backend was built for (set by the backend or ``create_backend``).
    url: DatabaseURL

    @property
    def _dialect(self) -> Any:
        return sqlalchemy_support().dialect_for(self.dialect_name)

    @property
    def _database_url(self) -> DatabaseURL:
        return self.url


class SQLitePool:
    """What ``databases`` called the SQLite pool; built as it was, ``(url, **options)``.

    Holds a URL and ``sqlite3.connect`` keywords; assigned to
    ``backend._pool`` it makes the backend open its later connections with
    them. Options are checked when it is assigned.
    """

    def __init__(self, database_url: str | DatabaseURL, **options: Any) -> None:
        self._database_url = DatabaseURL(database_url)
        self._options: dict[str, Any] = options

    def __repr__(self) -> str:
        return f"<SQLitePool {self._database_url!r} {self._options!r}>"


class SQLitePaths(BackendPaths):
    """``_options`` and ``_pool`` on the SQLite backend, as ``databases`` had them."""

    #: The ``sqlite3.connect`` keywords, read at every connect (the backend's own).
    connect_options: dict[str, Any]
    #: The URL later connections open (``url`` unless a ``_pool`` replaced it).
    target_url: DatabaseURL

    def use_target(self, url: DatabaseURL, connect_options: dict[str, Any]) -> None:
        raise NotImplementedError  # the backend's own

    @property
    def _options(self) -> dict[str, Any]:
        return self.connect_options

    @property
    def _pool(self) -> SQLitePool:
        pool = SQLitePool(self.target_url)
        pool._options = self.connect_options  # the same dict, as the backend's
        return pool

    @_pool.setter
    def _pool(self, pool: SQLitePool) -> None:
        self.use_target(pool._database_url, pool._options)
