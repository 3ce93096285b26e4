"""Result rows as ``Record``: a driver's tuples, named by a class made once per result shape.

For drivers whose rows are plain tuples (the MySQL drivers, psycopg): each
distinct list of column names gets a subclass of ``TupleRow`` holding the
names, so a row costs one tuple, built in C, and nothing per column.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from .._records import record_type


class TupleRow(tuple[Any, ...]):
    """A result row: the values as a tuple (built in C), names from its class."""

    __slots__ = ()
    _index: ClassVar[Mapping[str, int]] = {}
    _names: ClassVar[tuple[str, ...]] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> Iterator[str]:
        return iter(self._names)

    # A tuple's own methods would hide columns named "count" or "index".
    @property
    def count(self) -> Any:
        return self._column("count")

    @property
    def index(self) -> Any:
        return self._column("index")

    def _column(self, name: str) -> Any:
        position = self._index.get(name)
        if position is None:
            raise AttributeError(f"'Record' object has no column or attribute {name!r}")
        return tuple.__getitem__(self, position)


#: ``TupleRow`` as a ``Record``: the base of every shape's row class.
TupleRecord = record_type(TupleRow)


def shape_namespace(names: tuple[str, ...]) -> dict[str, Any]:
    """The class attributes of the row class for columns ``names``."""
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name, position)  # the first of duplicate names wins
    return {"__slots__": (), "_index": index, "_names": names}


@functools.lru_cache(maxsize=1024)
def row_class(names: tuple[str, ...]) -> type[Any]:
    """The row class of results with columns ``names`` (made once per shape)."""
    return type("Record", (TupleRecord,), shape_namespace(names))
