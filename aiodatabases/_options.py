"""The core's options (pool, timeouts, recycling, statement log): read, checked, defaulted.

``Database(url, **options)`` hands every option, from the keywords and from
the URL query, to this module first; what it does not take goes on to the
backend, which rejects what it does not know.
"""

from __future__ import annotations

from typing import Any

from ._runtime import Settings
from .backends.base import to_bool, to_float, to_int
from .exceptions import ConfigurationError

DEFAULT_MIN_SIZE = 1
DEFAULT_MAX_SIZE = 10
DEFAULT_ACQUIRE_TIMEOUT = 30.0
#: Seconds: a connection idle longer is pinged before use (found dead after a restart).
DEFAULT_HEALTH_CHECK_AFTER = 5.0


def optional_timeout(value: Any) -> float | None:
    """Seconds (positive), or ``None`` / ``"none"`` for no limit."""
    if value is None or str(value).strip().lower() == "none":
        return None
    timeout = to_float(value)
    if timeout <= 0:
        raise ValueError("expected a positive number of seconds, or None for no limit")
    return timeout


def _off_or_seconds(value: Any) -> float | None:
    """Seconds (positive), or ``None`` / ``"none"`` / 0 for off."""
    if value is not None and str(value).strip().lower() != "none" and to_float(value) == 0:
        return None
    return optional_timeout(value)


def take_settings(url_options: dict[str, str], kwargs: dict[str, Any]) -> Settings:
    """Remove the core options from both dicts (a keyword wins over the URL)
    and return them, validated."""

    def take(name: str, default: Any) -> Any:
        return kwargs.pop(name, url_options.pop(name, default))

    try:
        min_size = to_int(take("min_size", DEFAULT_MIN_SIZE))
        max_size = to_int(take("max_size", DEFAULT_MAX_SIZE))
        timeout = optional_timeout(take("acquire_timeout", DEFAULT_ACQUIRE_TIMEOUT))
        recycle = optional_timeout(take("pool_recycle", None))
        check_after = _off_or_seconds(take("health_check_after", DEFAULT_HEALTH_CHECK_AFTER))
        log_values = to_bool(take("log_values", False))
        slow = _off_or_seconds(take("slow_statement_threshold", None))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid pool option: {exc}") from exc
    if min_size < 0 or max_size < 1 or min_size > max_size:
        raise ConfigurationError(
            f"pool sizes must satisfy 0 <= min_size <= max_size and max_size >= 1; "
            f"got min_size={min_size}, max_size={max_size}"
        )
    return Settings(
        min_size=min_size,
        max_size=max_size,
        acquire_timeout=timeout,
        pool_recycle=recycle,
        health_check_after=check_after,
        log_values=log_values,
        slow_statement_threshold=slow,
    )
