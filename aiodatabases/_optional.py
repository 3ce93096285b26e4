"""Optional dependencies, imported on first use, with an error naming the extra."""

from __future__ import annotations

from typing import Any

from .exceptions import MissingDriverError


def sqlalchemy_support() -> Any:
    """``_sqlalchemy``, or a clear error naming the extra to install."""
    try:
        from . import _sqlalchemy
    except ImportError as exc:
        if exc.name != "sqlalchemy":
            raise
        error = MissingDriverError(
            "SQLAlchemy Core statements (and Database.dialect) need SQLAlchemy, which is "
            "not installed; install it with: pip install 'aiodatabases[sqlalchemy]'"
        )
        error.name = "sqlalchemy"
        raise error from exc
    return _sqlalchemy
