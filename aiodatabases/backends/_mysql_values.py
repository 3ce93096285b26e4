"""What the MySQL drivers bind: statement values, checked before anything is sent."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from ..exceptions import ParameterError
from .base import Args

# Types both drivers bind as they are; any other is looked at once (see bindable).
_PLAIN = frozenset(
    {str, int, float, bool, type(None), bytes, bytearray, Decimal}
    | {datetime.datetime, datetime.date, datetime.time, datetime.timedelta}
)
_CONTAINERS = (list, tuple, set, frozenset, dict)  # the drivers' own (or their error)
_OBJECT_STR: Any = object.__str__


def bindable(args: Args) -> tuple[Any, ...]:
    """``args`` as the tuple the driver binds; refuses a value whose text is only its repr().

    Both drivers bind a type they do not know as ``str(value)``: right for a
    UUID or a Path, but an ``object()``, a function or a class without
    ``__str__`` would be stored as ``'<object object at 0x...>'``, silently.
    """
    values = tuple(args)
    if _PLAIN.issuperset(map(type, values)):
        return values  # the common case: one C-level pass
    for position, value in enumerate(values, 1):
        kind = type(value)
        own_text = getattr(kind, "__str__", None) is not _OBJECT_STR
        if not own_text and not isinstance(value, _CONTAINERS):
            raise ParameterError(
                f"value {position} of the statement is a {kind.__qualname__!r} object, "
                "which MySQL cannot bind: the driver would store its repr() as text. "
                "Pass a str, a number, bytes, a date/time or a Decimal (convert it first)"
            )
    return values
