"""Query preparation: SQL text or a Core statement, with its values, made ready
for a backend's driver (SQL in the driver's style, positional arguments)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

from ._optional import sqlalchemy_support
from ._query import compile_query
from .backends.base import Backend

Query: TypeAlias = Any  # SQL text, or a SQLAlchemy Core statement
Values: TypeAlias = Mapping[str, Any] | None


class Prepared(NamedTuple):
    """A query ready for the driver."""

    sql: str
    args: Any  # a tuple, or a list of tuples for execute_many
    meta: Any = None  # SQLAlchemy result metadata (``_sqlalchemy.ResultMeta``) or None


def prepare(query: Query, values: Values, backend: Backend) -> Prepared:
    """SQL in the driver's style and positional arguments, checked against the query."""
    if isinstance(query, str):
        compiled = compile_query(query, backend.paramstyle)
        return Prepared(compiled.sql, compiled.bind(values))
    return Prepared(*_core().compile_statement(_clause(query), values, backend.dialect_name))


def prepare_many(query: Query, values: Sequence[Mapping[str, Any]], backend: Backend) -> Prepared:
    if isinstance(values, Mapping):
        raise TypeError("execute_many() takes a sequence of mappings, one per statement")
    if isinstance(query, str):
        compiled = compile_query(query, backend.paramstyle)
        return Prepared(compiled.sql, compiled.bind_many(values))
    return Prepared(*_core().compile_many(_clause(query), values, backend.dialect_name))


def _core() -> Any:
    """The SQLAlchemy support module, imported on first use of a Core statement."""
    return sqlalchemy_support()


def _clause(query: Any) -> Any:
    if hasattr(query, "_generate_cache_key") and hasattr(query, "compile"):
        return query
    raise TypeError(
        "query must be a SQL string with :name parameters or a SQLAlchemy Core "
        f"statement, not {type(query).__name__}"
    )
