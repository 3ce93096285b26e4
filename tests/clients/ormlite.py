"""A small ORM-style layer on a `databases` Database, written the way ormar/orm are.

It is what a third-party library built on `databases` does with it: models
declared with SQLAlchemy Table metadata, queries built with SQLAlchemy Core,
compiled with the private ``database._backend._dialect`` where the library needs
SQL text, ids from ``execute(insert)``, bulk updates through
``execute_many(str(update), ...)`` with ``:new_<column>`` binds, counts over a
subquery, LIKE filters with escaped wildcards. It only uses ``databases``'
public (and commonly used private) API, so it runs on ``databases`` 0.9 too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa

M = TypeVar("M", bound="Model")
_LIKE_OPERATORS = {"contains": "%{}%", "startswith": "{}%", "endswith": "%{}"}


class NoMatch(Exception):
    pass


class MultipleMatches(Exception):
    pass


class Registry:
    """One database and its tables, as ormar's ``OrmarConfig``/orm's ``ModelRegistry``."""

    def __init__(self, database: Any) -> None:
        self.database = database
        self.metadata = sa.MetaData()

    def sql(self, statement: Any) -> str:
        """The statement as the database's dialect renders it, values inlined (for logs)."""
        dialect = self.database._backend._dialect
        return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    def transaction(self, **options: Any) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
        """A decorator running the function in one transaction (``@registry.transaction()``)."""
        return self.database.transaction(**options)  # type: ignore[no-any-return]


class Model:
    """Subclass with ``registry`` and ``columns``; the table is built at class creation."""

    registry: ClassVar[Registry]
    tablename: ClassVar[str]
    columns: ClassVar[list[sa.Column[Any]]]
    table: ClassVar[sa.Table]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.table = sa.Table(cls.tablename, cls.registry.metadata, *cls.columns)

    def __init__(self, **fields: Any) -> None:
        for column in self.table.columns:
            setattr(self, column.name, fields.get(column.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.pk!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.pk == self.pk  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    @property
    def pk(self) -> Any:
        return getattr(self, "id", None)

    def values(self) -> dict[str, Any]:
        return {column.name: getattr(self, column.name) for column in self.table.columns}

    @classmethod
    def objects(cls: type[M]) -> QuerySet[M]:
        return QuerySet(cls)

    async def save(self) -> None:
        database = self.registry.database
        if self.pk is None:
            fields = {key: value for key, value in self.values().items() if key != "id"}
            self.id = await database.execute(self.table.insert().values(**fields))
        else:
            statement = self.table.update().where(self.table.c.id == self.pk)
            await database.execute(statement.values(**self.values()))

    async def delete(self) -> None:
        await self.registry.database.execute(self.table.delete().where(self.table.c.id == self.pk))

    async def load(self) -> None:
        fresh = await type(self).objects().get(id=self.pk)
        for key, value in fresh.values().items():
            setattr(self, key, value)


class QuerySet(Generic[M]):
    """Filters compose; the terminal coroutines run one statement each."""

    def __init__(self, model: type[M], where: tuple[Any, ...] = (), order: tuple[Any, ...] = ()):
        self.model = model
        self.table = model.table
        self.database = model.registry.database
        self._where = where
        self._order = order

    def filter(self, **lookups: Any) -> QuerySet[M]:
        clauses = [self._clause(key, value) for key, value in lookups.items()]
        return QuerySet(self.model, (*self._where, *clauses), self._order)

    def order_by(self, *names: str) -> QuerySet[M]:
        order = [
            self.table.c[name[1:]].desc() if name.startswith("-") else self.table.c[name]
            for name in names
        ]
        return QuerySet(self.model, self._where, (*self._order, *order))

    def _clause(self, key: str, value: Any) -> Any:
        name, _, operator = key.partition("__")
        column = self.table.c[name]
        if operator == "":
            return column == value
        if operator == "in":
            return column.in_(value)
        if operator in ("gt", "lt", "gte", "lte"):
            return getattr(column, f"__{operator.replace('te', 'e')}__")(value)
        if operator in _LIKE_OPERATORS:
            escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clause = column.like(_LIKE_OPERATORS[operator].format(escaped))
            if escaped != value:  # what ormar does: set the escape after building the clause
                clause.modifiers["escape"] = "\\"
            return clause
        raise ValueError(f"unknown lookup {key!r}")

    def select(self) -> sa.Select[Any]:
        statement = sa.select(self.table)
        if self._where:
            statement = statement.where(sa.and_(*self._where))
        return statement.order_by(*(self._order or (self.table.c.id,)))

    async def all(self) -> list[M]:
        rows = await self.database.fetch_all(self.select())
        return [self.model(**dict(row._mapping)) for row in rows]

    async def get(self, **lookups: Any) -> Any:
        rows = await self.database.fetch_all(self.filter(**lookups).select().limit(2))
        if not rows:
            raise NoMatch(lookups)
        if len(rows) > 1:
            raise MultipleMatches(lookups)
        return self.model(**dict(rows[0]._mapping))

    async def iterate(self) -> Any:
        async for row in self.database.iterate(self.select()):
            yield self.model(**dict(row._mapping))

    async def joined(self, related: type[Model], key: str) -> list[tuple[Any, Any]]:
        """Each row with its related row (``key`` -> related.id), as ormar's select_related:
        one query whose columns carry ``<table>_<column>`` labels."""
        other = related.table
        columns = [
            column.label(f"{column.table.name}_{column.name}")  # type: ignore[attr-defined]
            for column in (*self.table.columns, *other.columns)
        ]
        statement = self.select().with_only_columns(*columns)
        statement = statement.join_from(self.table, other, self.table.c[key] == other.c.id)
        rows = await self.database.fetch_all(statement)
        return [(self._labelled(self.model, row), self._labelled(related, row)) for row in rows]

    @staticmethod
    def _labelled(model: type[Model], row: Any) -> Any:
        table = model.table
        return model(**{c.name: row[f"{table.name}_{c.name}"] for c in table.columns})

    async def first(self) -> Any:
        row = await self.database.fetch_one(self.select().limit(1))
        return None if row is None else self.model(**dict(row._mapping))

    async def count(self) -> int:
        subquery = self.select().order_by(None).alias("subquery_for_count")
        return int(await self.database.fetch_val(sa.select(sa.func.count()).select_from(subquery)))

    async def exists(self) -> bool:
        # As libraries that log their SQL do: run the dialect's own text, values inlined.
        statement = sa.select(sa.exists(self.select().order_by(None)))
        return bool(await self.database.fetch_val(self.model.registry.sql(statement)))

    async def create(self, **fields: Any) -> Any:
        instance = self.model(**fields)
        await instance.save()
        return instance

    async def bulk_create(self, instances: list[Any]) -> None:
        rows = [{k: v for k, v in i.values().items() if k != "id"} for i in instances]
        await self.database.execute_many(self.table.insert(), rows)

    async def bulk_update(self, instances: list[Any], columns: list[str]) -> None:
        """One ``execute_many`` of the UPDATE's default string, as ormar sends it."""
        statement = self.table.update().where(self.table.c.id == sa.bindparam("id"))
        statement = statement.values({name: sa.bindparam(f"new_{name}") for name in columns})
        rows = [
            {"id": i.pk, **{f"new_{name}": getattr(i, name) for name in columns}}
            for i in instances
        ]
        await self.database.execute_many(str(statement), rows)

    async def update(self, **fields: Any) -> Any:
        """What ``execute`` gives, as ormar returns it: the rows changed (None on PostgreSQL)."""
        statement = self.table.update().values(**fields)
        if self._where:
            statement = statement.where(sa.and_(*self._where))
        return await self.database.execute(statement)

    async def delete(self) -> Any:
        """What ``execute`` gives: the rows deleted (None on PostgreSQL)."""
        statement = self.table.delete()
        if self._where:
            statement = statement.where(sa.and_(*self._where))
        return await self.database.execute(statement)

