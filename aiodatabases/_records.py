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

    __slots__ = ("_row",)

    def __init__(self, row: Any) -> None:
        self._row = row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self._row[key]
        try:
            return self._row[key]
        except (KeyError, IndexError):
            raise KeyError(key) from None

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
        return iter(self._row.keys())

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, key: object) -> bool:
        return key in self._row.keys()  # noqa: SIM118 - the row itself holds values

    @property
    def _mapping(self) -> Mapping[str, Any]:
        """The record as a read-only mapping (SQLAlchemy ``Row._mapping`` style)."""
        return self

    def keys(self) -> KeysView[str]:
        return KeysView(self)

    def values(self) -> ValuesView[Any]:
        return ValuesView(self)

    def items(self) -> ItemsView[str, Any]:
        return ItemsView(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return list(self.items()) == list(other.items())
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other)
        if isinstance(other, tuple):
            return tuple(self._row) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"<Record {fields}>"
