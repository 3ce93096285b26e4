"""``Record``: one result row, read-only, by position, by name and as a mapping.

Raw SQL results cost no Python work per row: each backend makes its driver
build rows of a record type from ``record_type()`` (a subclass of the
driver's own row, ``asyncpg.Record`` or ``sqlite3.Row``, which index by
position and by name in C), registered as a ``Record``. Only SQLAlchemy Core
results, whose values go through their column types, are wrapped in a
``Record`` that applies the types on access.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any


class Record(Mapping[str, Any]):
    """One result row: ``row["name"]``, ``row[0]``, ``row.name``, ``dict(row)``.

    Like ``databases.Record`` it behaves as a mapping of column name to value
    (iterating yields the column names), and also accepts integer indexes.
    """

    __slots__ = ("_meta", "_row")

    def __init__(self, row: Any, meta: Any = None) -> None:
        self._row = row
        self._meta = meta  # SQLAlchemy result metadata for Core statements

    def __getitem__(self, key: Any) -> Any:
        meta = self._meta
        if meta is not None:
            return self._typed(meta, key)
        if isinstance(key, (int, slice)):
            return self._row[key]
        try:
            return self._row[key]
        except (KeyError, IndexError):
            raise KeyError(key) from None

    def _typed(self, meta: Any, key: Any) -> Any:
        """The value with its SQLAlchemy type's result processing, applied on access."""
        if isinstance(key, slice):
            return tuple(self._typed(meta, i) for i in range(len(meta.keys))[key])
        try:
            position = meta.index(key)
            value = self._row[position]
        except (KeyError, IndexError):
            if isinstance(key, int):
                raise IndexError(key) from None
            raise KeyError(key) from None
        processor = meta.processors[position]
        return value if processor is None else processor(value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no column or attribute {name!r}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        if self._meta is not None:
            return iter(self._meta.keys)
        return iter(self._row.keys())

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, key: object) -> bool:
        if self._meta is not None:
            return key in self._meta.keys
        return key in self._row.keys()  # noqa: SIM118 - iterating the row gives values

    @property
    def _mapping(self) -> Mapping[str, Any]:
        """The record as a read-only mapping (SQLAlchemy ``Row._mapping`` style)."""
        return self

    def keys(self) -> KeysView[str]:
        return KeysView(self)

    def values(self) -> ValuesView[Any]:
        return _Values(self)

    def items(self) -> ItemsView[str, Any]:
        return _Items(self)

    def __eq__(self, other: object) -> bool:
        return _equal(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return _repr(self)


def _equal(record: Any, other: object) -> bool:
    if isinstance(other, Record):
        return list(record.items()) == list(other.items())
    if isinstance(other, Mapping):
        return dict(record.items()) == dict(other)
    if isinstance(other, tuple):
        return tuple(record.values()) == other
    return NotImplemented  # type: ignore[no-any-return]


def _not_equal(record: Any, other: object) -> bool:
    equal = _equal(record, other)
    return equal if equal is NotImplemented else not equal


def _repr(record: Any) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in record.items())
    return f"<Record {fields}>"


# By position, not by name: duplicate column names keep their own values.
class _Values(ValuesView[Any]):
    _mapping: Record

    def __iter__(self) -> Iterator[Any]:
        record = self._mapping
        return (record[i] for i in range(len(record)))


class _Items(ItemsView[str, Any]):
    _mapping: Record

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        record = self._mapping
        return zip(record, (record[i] for i in range(len(record))), strict=False)


def records(rows: list[Any], meta: Any = None) -> list[Record]:
    """A backend's rows as the caller's records: as they are for raw SQL."""
    if meta is None:
        return rows
    return [Record(row, meta) for row in rows]


def record(row: Any, meta: Any = None) -> Record:
    return row if meta is None else Record(row, meta)


def record_type(row_type: type[Any], *, name_misses: type[Exception] = KeyError) -> type[Any]:
    """A subclass of a driver's row type whose rows behave as ``Record`` (and are one).

    ``row_type`` indexes by position, by name and slice itself and has
    ``keys()``; this adds the mapping behaviour of ``Record`` (iterating
    yields names, ``keys()``/``values()``/``items()`` views, attribute access,
    equality, repr) without a wrapper object per row. ``name_misses`` is what
    the row type raises for an unknown name (``sqlite3.Row``: IndexError); it
    becomes KeyError, as for every ``Record``.
    """
    row_keys = row_type.keys
    namespace: dict[str, Any] = {
        "__slots__": (),
        "__module__": __name__,
        "__iter__": lambda self: iter(row_keys(self)),
        "__contains__": lambda self, key: key in row_keys(self),
        "__getattr__": Record.__getattr__,
        "__eq__": _equal,
        "__ne__": _not_equal,  # the row type's own would compare as tuples
        "__hash__": None,
        "__repr__": _repr,
        "_mapping": Record._mapping,
        "keys": Record.keys,
        "values": Record.values,
        "items": Record.items,
        "get": Mapping.get,
    }
    if name_misses is not KeyError:
        row_getitem = row_type.__getitem__

        def __getitem__(self: Any, key: Any) -> Any:
            try:
                return row_getitem(self, key)
            except name_misses:
                if isinstance(key, str):
                    raise KeyError(key) from None
                raise

        namespace["__getitem__"] = __getitem__
    native = type("Record", (row_type,), namespace)
    Record.register(native)
    return native
