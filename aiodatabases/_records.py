"""``Record``: a thin read-only view of one driver row.

The driver's row (``asyncpg.Record``, ``sqlite3.Row``) already indexes by
position and by name in C; a ``Record`` only wraps it, so fetching costs one
small object per row and no per-column work.
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
        if isinstance(other, Record):
            return list(self.items()) == list(other.items())
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other)
        if isinstance(other, tuple):
            return tuple(self.values()) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.items())
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
    """Wrap a driver result (one small object per row, no per-column work)."""
    return [Record(row, meta) for row in rows]
