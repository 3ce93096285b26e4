"""The statement log: a ``Hook`` writing each statement to the logger ``aiodatabases.statements``.

At DEBUG, one record per statement (operation, duration, rows, SQL; the
values only with ``log_values=True``, and a failure's message too, which
drivers write values into) and per transaction. A statement that took
``slow_statement_threshold`` seconds or more is a WARNING, DEBUG or not.
Each record carries the event as ``record.aiodatabases`` (a
``StatementEvent`` or ``TransactionEvent``) for structured handlers.
"""

from __future__ import annotations

import logging

from ._error_codes import error_code
from .hooks import Hook, StatementEvent, TransactionEvent

logger = logging.getLogger("aiodatabases.statements")

#: The longest ``repr`` of the values written (``log_values=True``): a bulk
#: ``execute_many`` must not write megabytes per record.
VALUES_SHOWN = 2000


class StatementLog(Hook):
    """Log statements and transactions (see the module docstring)."""

    def __init__(self, *, log_values: bool = False, slow_after: float | None = None) -> None:
        self._log_values = log_values
        self._slow_after = slow_after

    @property
    def always(self) -> bool:
        """Whether every statement must be timed (a slow threshold is set); else only
        while ``logger`` is enabled for DEBUG (``Observers.hooks`` asks it)."""
        return self._slow_after is not None

    def after_statement(self, event: StatementEvent) -> None:
        duration = event.duration or 0.0
        slow = self._slow_after is not None and duration >= self._slow_after
        level = logging.WARNING if slow else logging.DEBUG
        if not logger.isEnabledFor(level):
            return
        message = "%s in %.3f ms"
        args: list[object] = [event.operation, duration * 1000]
        if slow:
            message = "slow statement (slow_statement_threshold=%ss): " + message
            args.insert(0, self._slow_after)
        if event.error is not None:
            message += " failed: %s"
            args.append(error_text(event.error, self._log_values))
        elif event.rows is not None:
            message += ", %d row(s)"
            args.append(event.rows)
        message += ": %s"
        args.append(event.sql)
        if self._log_values:
            message += " values: %s"
            args.append(_shown(event.values))
        logger.log(level, message, *args, extra={"aiodatabases": event})

    def after_transaction(self, event: TransactionEvent) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return
        message = "transaction %s after %.3f ms"
        args: list[object] = [event.outcome, (event.duration or 0.0) * 1000]
        if event.options:
            message += " (%s)"
            args.append(", ".join(f"{key}={value!r}" for key, value in event.options.items()))
        if event.error is not None:
            message += ", failed: %s"
            args.append(error_text(event.error, self._log_values))
        logger.debug(message, *args, extra={"aiodatabases": event})


def error_text(error: BaseException, with_message: bool) -> str:
    """``error`` for a log record or a span: its class and code, and its message
    only ``with_message`` (drivers put values in their messages: ``Duplicate
    entry 'alice@example.com'``, ``invalid input syntax for type integer: "x"``)."""
    text = type(error).__name__
    code = error_code(error)
    if code is not None:
        text += f" ({code})"
    message = str(error) if with_message else ""
    return f"{text}: {message}" if message else text


def _shown(values: object) -> str:
    text = repr(values)
    if len(text) <= VALUES_SHOWN:
        return text
    return f"{text[:VALUES_SHOWN]}... ({len(text) - VALUES_SHOWN} more characters)"
