"""MySQL result rows as ``Record``: the drivers' tuples, with names from a class per result shape.

Where MySQL differs from the other backends (BOOLEAN as an integer, TIME as
a timedelta) a column is converted when read, not when fetched.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from .._records import record_type
from ._tuple_rows import TupleRow, row_class, shape_namespace
from .base import Row

# MySQL field type codes (the protocol's, identical in both drivers).
_TINY = 1
_TIME = 11


class _ConvertingRow(TupleRow):
    """A row whose BOOLEAN and TIME values are converted when read, not when fetched."""

    __slots__ = ()
    _converters: ClassVar[Mapping[int, Callable[[Any], Any]]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            position = self._index[key]
        elif isinstance(key, slice):
            return tuple(self[i] for i in range(len(self))[key])
        else:
            position = key
        value = tuple.__getitem__(self, position)  # IndexError when out of range
        if position < 0:
            position += len(self)
        convert = self._converters.get(position)
        return value if convert is None else convert(value)

    def _column(self, name: str) -> Any:
        if name not in self._index:
            raise AttributeError(f"'Record' object has no column or attribute {name!r}")
        return self[name]


_ConvertingRecord = record_type(_ConvertingRow)


_DAY = datetime.timedelta(days=1)


def _time_of(value: Any) -> Any:
    # The drivers return TIME as a timedelta; other backends give datetime.time.
    if isinstance(value, datetime.timedelta) and datetime.timedelta(0) <= value < _DAY:
        return (datetime.datetime.min + value).time()
    return value


def _bool_of(value: Any) -> Any:
    return value if value is None else bool(value)


class _Shaper:
    """Turns one result's tuples into rows of a class made for the result's shape.

    The rows are the driver's tuples re-made as that class in C; columns
    where MySQL differs from the other backends (BOOLEAN as an integer, TIME
    as a timedelta) are converted when read.
    """

    def __init__(self, description: Sequence[Sequence[Any]]) -> None:
        names = tuple(column[0] for column in description)
        converters: dict[int, Callable[[Any], Any]] = {}
        for position, column in enumerate(description):
            type_code, length = column[1], column[3]
            if type_code == _TIME:
                converters[position] = _time_of
            elif type_code == _TINY and length == 1:  # BOOLEAN is TINYINT(1)
                converters[position] = _bool_of
        if not converters:
            self.row_class: type[Any] = row_class(names)
            return
        namespace = {**shape_namespace(names), "_converters": converters}
        self.row_class = type("Record", (_ConvertingRecord,), namespace)

    def rows(self, tuples: Sequence[tuple[Any, ...]]) -> list[Row]:
        return list(map(self.row_class, tuples))


@functools.lru_cache(maxsize=1024)
def shaper_for(description: tuple[tuple[Any, ...], ...]) -> _Shaper:
    """One shaper per distinct result description (built once, not per statement)."""
    return _Shaper(description)
