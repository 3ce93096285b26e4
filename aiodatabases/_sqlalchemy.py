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
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from .exceptions import ConfigurationError, ParameterError, UnknownParameterError

_CACHE_SIZE = 2048
Processor = Callable[[Any], Any]


def _postgresql() -> Dialect:
    from ._pg_dialect import postgresql_dialect

    return postgresql_dialect()


def _psycopg() -> Dialect:
    from ._pg_dialect import psycopg_dialect

    return psycopg_dialect()


def _sqlite() -> Dialect:
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    return SQLiteDialect_pysqlite(paramstyle="qmark")


def _mysql() -> Dialect:
    from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql

    return MySQLDialect_pymysql(paramstyle="format")


_DIALECTS: Mapping[str, Callable[[], Dialect]] = {
    "postgresql": _postgresql,
    "postgresql+psycopg": _psycopg,
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
    """Where each result column is, and how to turn its raw value into Python.

    ``keys``, ``processors`` and ``by_name`` belong to the compiled shape and
    are shared; ``by_object`` maps the column objects of the statement that
    was actually run (a cached shape may have been compiled from another
    statement object with other columns of the same shape).
    """

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
        if position is None:
            raise KeyError(key)  # a column this statement did not select
        return position

    def for_statement(self, statement: Any) -> ResultMeta:
        """This shape's metadata, with the column objects of ``statement``."""
        columns = getattr(statement, "exported_columns", None)
        if not columns or len(columns) != len(self.keys):
            return self
        by_object: dict[int, int] = {}
        for position, column in enumerate(columns):
            by_object.setdefault(id(column), position)
            # A labelled column answers to the column it labels too.
            element = getattr(column, "element", None)
            if element is not None:
                by_object.setdefault(id(element), position)
        return ResultMeta(self.keys, self.processors, self.by_name, by_object)


@dataclass
class _Shape:
    compiled: SQLCompiler
    meta: ResultMeta | None
    bind_processors: dict[str, Processor]


class _ShapeCache:
    """A small LRU of compiled shapes (what SQLAlchemy's engine keeps per dialect)."""

    def __init__(self) -> None:
        self._shapes: OrderedDict[tuple[Any, ...], _Shape] = OrderedDict()
        self._lock = threading.Lock()  # statements are prepared in any thread

    def get(self, key: tuple[Any, ...]) -> _Shape | None:
        with self._lock:
            shape = self._shapes.get(key)
            if shape is not None:
                self._shapes.move_to_end(key)
            return shape

    def put(self, key: tuple[Any, ...], shape: _Shape) -> None:
        with self._lock:
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
    return meta


def _bind_processors(compiled: SQLCompiler, dialect: Dialect) -> dict[str, Processor]:
    processors: dict[str, Processor] = {}
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    return processors


def _with_values(
    statement: ClauseElement, values: Mapping[str, Any] | None
) -> tuple[ClauseElement, dict[str, Any]]:
    """Apply ``values`` as ``databases`` does: ``.values()`` for INSERT/UPDATE,
    bound parameters for text; for anything else they are bind parameter values.
    Returns the statement and the bind values for this execution."""
    params = dict(getattr(statement, "_params", None) or {})  # from .params()
    if not values:
        return statement, params
    if isinstance(statement, sqlalchemy.TextClause):
        return statement.bindparams(**values), params
    if isinstance(statement, (sqlalchemy.Insert, sqlalchemy.Update)):
        return statement.values(**values), params
    return statement, {**params, **values}


def _shape(
    statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
) -> tuple[_Shape, Any]:
    cache_key = statement._generate_cache_key()
    key = None
    if cache_key is not None:
        # By paramstyle too: asyncpg's and psycopg's dialects share a name.
        key = (dialect.name, dialect.paramstyle, cache_key.key, tuple(column_keys or ()))
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
    statement, params = _with_values(statement, values)
    shape, cache_key = _shape(statement, dialect)
    _check_bind_names(shape, params)
    sql, args = _positional(shape, cache_key, params)
    meta = shape.meta.for_statement(statement) if shape.meta is not None else None
    return sql, args, meta


def _check_bind_names(shape: _Shape, params: Mapping[str, Any]) -> None:
    compiled = shape.compiled
    if not params or not isinstance(compiled, SQLCompiler):
        return
    unknown = sorted(set(params) - set(compiled.binds))
    if unknown:
        raise UnknownParameterError(
            f"value(s) given for {', '.join(map(repr, unknown))}, which the statement "
            f"does not use; its bind parameters: {sorted(compiled.binds)}"
        )


def compile_many(
    statement: ClauseElement, values: Sequence[Mapping[str, Any]], dialect_name: str
) -> tuple[str, list[tuple[Any, ...]]]:
    """One SQL text and an argument tuple per mapping: one driver batch."""
    dialect = dialect_for(dialect_name)
    if not values:
        shape, _ = _shape(statement, dialect)
        return str(shape.compiled), []
    # Compiled for the keys of the first mapping, as SQLAlchemy's executemany;
    # a mapping with other keys would lose values silently, so it is refused.
    keys = set(values[0])
    for number, each in enumerate(values):
        if set(each) != keys:
            raise ParameterError(
                f"execute_many(): mapping {number} has keys {sorted(each)}, the first has "
                f"{sorted(keys)}; one batch runs one statement: every mapping needs the same keys"
            )
    shape, cache_key = _shape(statement, dialect, column_keys=list(values[0]))
    batch = [_positional(shape, cache_key, each) for each in values]
    return batch[0][0], [args for _, args in batch]
