"""The SQLAlchemy dialects that compile Core statements for asyncpg and psycopg.

SQLAlchemy's generic PostgreSQL dialect is made for a DBAPI it has not met
yet; until it connects it guesses. Statements here are compiled without
ever connecting, so what it would have learnt from the server, or from a
DBAPI driver, is said here, as ``databases`` 0.9 says it:

- ``standard_conforming_strings`` is on (PostgreSQL's default since 9.1): a
  backslash inside a string literal is a plain character, so a literal the
  compiler writes into the SQL (an ``ESCAPE '\\'``, a ``literal_execute``
  value) keeps one backslash. SQLAlchemy 2.0 doubles it otherwise, which
  PostgreSQL reads as two characters ("invalid escape string").
- asyncpg reads ``NUMERIC`` as ``Decimal``: the value is returned as it is,
  never through a float. A value bound to a ``Numeric`` is sent as its text
  (a float's is its shortest form), which PostgreSQL reads exactly; asyncpg
  given the float itself would store its full binary expansion
  (0.700000000000001 into ``NUMERIC(30, 20)`` as 0.70000000000000095479).
  As text it also binds where PostgreSQL infers no type (``SELECT $1``).

psycopg's is the same dialect with ``%s`` placeholders: the psycopg backend
reads JSON as text and ``NUMERIC`` as ``Decimal`` as asyncpg does, and a
value bound as text has its type inferred by the server, as asyncpg's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import types
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine.interfaces import Dialect

Processor = Callable[[Any], Any]


def _as_text(value: Any) -> Any:
    return None if value is None else str(value)


class _AsyncpgNumeric(types.Numeric):  # type: ignore[type-arg]
    """``Numeric`` for asyncpg: bound as text, read as the ``Decimal`` asyncpg returns."""

    def bind_processor(self, dialect: Dialect) -> Processor:
        return _as_text

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        # Also for asdecimal=False: asyncpg's Decimal is returned, as databases returns it.
        return None


class AsyncpgCompileDialect(PGDialect):
    """PostgreSQL as asyncpg and a server with standard strings see it."""

    supports_native_decimal = True
    _backslash_escapes = False
    colspecs = {  # noqa: RUF012 (SQLAlchemy reads it from the class)
        **PGDialect.colspecs,
        types.Numeric: _AsyncpgNumeric,
        types.Float: types.Float,  # a Float (a Numeric subclass) stays a Float
    }


def postgresql_dialect() -> Dialect:
    # numeric_dollar: asyncpg's $1, $2 placeholders. The generic dialect's JSON
    # type decodes the text asyncpg returns.
    return AsyncpgCompileDialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


def psycopg_dialect() -> Dialect:
    # format: psycopg's %s placeholders; otherwise what asyncpg's compiles,
    # as psycopg here reads JSON as text and NUMERIC as Decimal too.
    return AsyncpgCompileDialect(paramstyle="format")  # type: ignore[no-untyped-call]
