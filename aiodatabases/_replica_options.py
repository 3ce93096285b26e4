"""The replica options (``replicas``, ``read_your_writes``, ``replica_retry_after``): read, checked.

``Database`` takes them out of its options before the core's and the
driver's (``_options``, the backend) see the rest; the rest applies to each
replica too (``_replicas``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._url import DatabaseURL
from .backends.base import to_float
from .exceptions import ConfigurationError

DEFAULT_READ_YOUR_WRITES = 2.0
DEFAULT_RETRY_AFTER = 5.0


@dataclass(frozen=True)
class Routing:
    """The replica options of one ``Database``, read and checked."""

    urls: tuple[DatabaseURL, ...]
    read_your_writes: float
    retry_after: float


def take_routing(url_options: dict[str, str], kwargs: dict[str, Any]) -> Routing:
    """Remove ``replicas``, ``read_your_writes`` and ``replica_retry_after`` from
    the options (the last two also from the primary's URL query; a keyword wins)."""
    given = kwargs.pop("replicas", None) or ()
    if isinstance(given, (str, DatabaseURL)):
        raise ConfigurationError("replicas= takes a list of URLs, not one URL")
    try:
        urls = tuple(DatabaseURL(url) for url in given)
        window = _seconds(kwargs, url_options, "read_your_writes", DEFAULT_READ_YOUR_WRITES)
        retry = _seconds(kwargs, url_options, "replica_retry_after", DEFAULT_RETRY_AFTER)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid replica option: {exc}") from exc
    if retry == 0:
        raise ConfigurationError("replica_retry_after must be more than 0 seconds")
    return Routing(urls, window, retry)


def _seconds(
    kwargs: dict[str, Any], url_options: dict[str, str], name: str, default: float
) -> float:
    value = kwargs.pop(name, url_options.pop(name, default))
    seconds = 0.0 if value is None or str(value).strip().lower() == "none" else to_float(value)
    if seconds < 0:
        raise ValueError(f"{name} must be 0 or more seconds, got {value!r}")
    return seconds
