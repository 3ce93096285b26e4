"""SQLAlchemy Core statements: compiled by SQLAlchemy, cached per statement shape.

Imported only when a query is not a string, so the library works without
SQLAlchemy for raw SQL. A statement is compiled once per *shape* (SQLAlchemy's
cache key: the same statement with other literal values shares it) and
dialect; each call then only extracts its values. Result types
(TypeDecorator, Enum, JSON, Numeric, dates) are applied by ``Record`` when a
column is read, from the ``ResultMeta`` made here once per compiled shape.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from .exceptions import ConfigurationError

_CACHE_SIZE = 2048
Processor = Callable[[Any], Any]


def _postgresql() -> Dialect:
    from sqlalchemy.dialects.postgresql.base import PGDialect

    # The generic dialect: its JSON type decodes the text asyncpg returns.
    return PGDialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


def _sqlite() -> Dialect:
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    return SQLiteDialect_pysqlite(paramstyle="qmark")


def _mysql() -> Dialect:
    from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql

    return MySQLDialect_pymysql(paramstyle="format")


_DIALECTS: Mapping[str, Callable[[], Dialect]] = {
    "postgresql": _postgresql,
    "sqlite": _sqlite,
    "mysql": _mysql,
}


@functools.cache
def dialect_for(name: str) -> Dialect:
    """The SQLAlchemy dialect that compiles for the backend named ``name``."""
    try:
        return _DIALECTS[name]()
    except KeyError:
        raise ConfigurationError(f"no SQLAlchemy dialect for backend {name!r}") from None


@dataclass
class ResultMeta:
    """Where each result column is, and how to turn its raw value into Python."""

    keys: tuple[str, ...]
    processors: tuple[Processor | None, ...]
    by_name: dict[str, int] = field(default_factory=dict)
    by_object: dict[int, int] = field(default_factory=dict)

    def index(self, key: Any) -> int:
        if isinstance(key, int):
            return key if key >= 0 else len(self.keys) + key
        if isinstance(key, str):
            return self.by_name[key]
        position = self.by_object.get(id(key))
        if position is not None:
            return position
        name = getattr(key, "key", None) or getattr(key, "name", None)
        if isinstance(name, str) and name in self.by_name:
            return self.by_name[name]
        raise KeyError(key)


@dataclass
class _Shape:
    compiled: SQLCompiler
    meta: ResultMeta | None
    bind_processors: dict[str, Processor]


class _ShapeCache:
    """A small LRU of compiled shapes (what SQLAlchemy's engine keeps per dialect)."""

    def __init__(self) -> None:
        self._shapes: OrderedDict[tuple[Any, ...], _Shape] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> _Shape | None:
        shape = self._shapes.get(key)
        if shape is not None:
            self._shapes.move_to_end(key)
        return shape

    def put(self, key: tuple[Any, ...], shape: _Shape) -> None:
        self._shapes[key] = shape
        if len(self._shapes) > _CACHE_SIZE:
            self._shapes.popitem(last=False)


_cache = _ShapeCache()


def _result_processor(type_: Any, dialect: Dialect) -> Processor | None:
    if dialect.name == "mysql" and isinstance(type_, sqlalchemy.Time):
        return None  # the backend already turns MySQL's timedelta into a time
    processor: Processor | None = type_.dialect_impl(dialect).result_processor(dialect, None)
    return processor


def _result_meta(compiled: SQLCompiler, dialect: Dialect) -> ResultMeta | None:
    columns = compiled._result_columns  # (keyname, name, objects, type) per result column
    if not columns:
        return None
    meta = ResultMeta(
        keys=tuple(entry[0] for entry in columns),
        processors=tuple(_result_processor(entry[3], dialect) for entry in columns),
    )
    for position, entry in enumerate(columns):
        meta.by_name.setdefault(entry[0], position)
        for obj in entry[2]:
            meta.by_object.setdefault(id(obj), position)
    return meta


def _bind_processors(compiled: SQLCompiler, dialect: Dialect) -> dict[str, Processor]:
    processors: dict[str, Processor] = {}
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    return processors


def _with_values(statement: ClauseElement, values: Mapping[str, Any] | None) -> ClauseElement:
    """Apply ``values`` as ``databases`` does, for every kind of statement."""
    if not values:
        return statement
    if isinstance(statement, sqlalchemy.TextClause):
        return statement.bindparams(**values)
    if hasattr(statement, "values") and not isinstance(statement, sqlalchemy.Select):
        return statement.values(**values)  # type: ignore[no-any-return]
    return statement.params(**values)


def _shape(
    statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
) -> tuple[_Shape, Any]:
    cache_key = statement._generate_cache_key()
    key = None
    if cache_key is not None:
        key = (dialect.name, cache_key.key, tuple(column_keys or ()))
        shape = _cache.get(key)
        if shape is not None:
            return shape, cache_key
    options: dict[str, Any] = {}
    if column_keys:
        options["column_keys"] = list(column_keys)
    if cache_key is not None:
        options["cache_key"] = cache_key
    compiled = statement.compile(dialect=dialect, **options)
    if not isinstance(compiled, SQLCompiler):
        # DDL and other non-SQL compilers: plain text, no parameters.
        compiled_shape = _Shape(compiled, None, {})  # type: ignore[arg-type]
    else:
        compiled_shape = _Shape(
            compiled, _result_meta(compiled, dialect), _bind_processors(compiled, dialect)
        )
    if key is not None:
        _cache.put(key, compiled_shape)
    return compiled_shape, cache_key


def _positional(
    shape: _Shape, cache_key: Any, params: Mapping[str, Any] | None
) -> tuple[str, tuple[Any, ...]]:
    compiled = shape.compiled
    if not isinstance(compiled, SQLCompiler):
        return str(compiled), ()
    extracted = cache_key.bindparams if cache_key is not None else None
    parameters = compiled.construct_params(
        params=dict(params) if params else None, extracted_parameters=extracted
    )
    processors: Mapping[str, Processor] = shape.bind_processors
    values: Mapping[str, Any] = parameters
    if compiled.post_compile_params or compiled.literal_execute_params:
        # Expanding IN: one placeholder per value, rendered for these values.
        expanded = compiled._process_parameters_for_postcompile(parameters)
        sql, names, values = expanded.statement, expanded.positiontup, expanded.parameters
        processors = {**processors, **expanded.processors}
    else:
        sql, names = compiled.string, compiled.positiontup
    args = tuple(
        processors[name](values[name]) if name in processors else values[name]
        for name in names or ()
    )
    return sql, args


def compile_statement(
    statement: ClauseElement, values: Mapping[str, Any] | None, dialect_name: str
) -> tuple[str, tuple[Any, ...], ResultMeta | None]:
    """SQL, positional arguments and result metadata for one execution."""
    dialect = dialect_for(dialect_name)
    shape, cache_key = _shape(_with_values(statement, values), dialect)
    sql, args = _positional(shape, cache_key, None)
    return sql, args, shape.meta


def compile_many(
    statement: ClauseElement, values: Sequence[Mapping[str, Any]], dialect_name: str
) -> tuple[str, list[tuple[Any, ...]]]:
    """One SQL text and an argument tuple per mapping: one driver batch."""
    dialect = dialect_for(dialect_name)
    if not values:
        shape, cache_key = _shape(statement, dialect)
        return _positional(shape, cache_key, None)[0], []
    # Compiled for the keys of the first mapping, as SQLAlchemy's executemany.
    shape, cache_key = _shape(statement, dialect, column_keys=list(values[0]))
    batch = [_positional(shape, cache_key, each) for each in values]
    return batch[0][0], [args for _, args in batch]
