"""``Retry``: when a transaction that lost a conflict runs again, and after how long.

``@database.transaction(retry=5)`` (or ``retry=Retry(...)``) reruns the whole
decorated function in a new transaction when the transaction fails with a
serialization failure or a deadlock (``_error_codes.RETRYABLE``): the server
rolled it back, so nothing of it is kept and running it again is safe. Only a
whole transaction the decorator began is retried, never a statement on its
own, and never a transaction nested in another one (the enclosing one is
lost with it: the error goes to where that one began).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from ._error_codes import error_code, is_retryable
from .exceptions import ConfigurationError

logger = logging.getLogger("aiodatabases")


@dataclass(frozen=True)
class Retry:
    """How a transaction that lost a conflict is run again.

    ``attempts``: runs in all, the first included (at least 1). Before run
    ``n + 1`` it waits a random time between 0 and ``backoff * 2 ** (n - 1)``
    seconds, at most ``max_backoff`` ("full jitter": contenders that failed
    together do not all come back together).
    """

    attempts: int = 5
    backoff: float = 0.02
    max_backoff: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigurationError(f"Retry(attempts=) must be an int, not {self.attempts!r}")
        if self.attempts < 1:
            raise ConfigurationError(f"Retry(attempts=) must be at least 1, not {self.attempts}")
        if not (self.backoff >= 0 and self.max_backoff >= 0):  # NaN fails too
            raise ConfigurationError(
                f"Retry(backoff=, max_backoff=) must be seconds >= 0, "
                f"not {self.backoff!r} and {self.max_backoff!r}"
            )

    def delay(self, failed: int) -> float:
        """Seconds to wait after the ``failed``-th run failed (jittered)."""
        cap = min(self.max_backoff, self.backoff * 2 ** min(failed - 1, 60))
        return random.uniform(0.0, cap)

    def again(self, error: BaseException, failed: int) -> bool:
        """Whether to run again after run ``failed`` raised ``error``."""
        if failed >= self.attempts or not is_retryable(error):
            return False
        logger.info(
            "transaction lost a conflict (%s %s), running it again (run %d of at most %d)",
            type(error).__name__,
            error_code(error),
            failed + 1,
            self.attempts,
        )
        return True


def retry_policy(value: Retry | int | None) -> Retry | None:
    """``transaction(retry=)``: a ``Retry``, a number of attempts, or None."""
    if value is None or isinstance(value, Retry):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            f"transaction(retry=) takes a number of attempts or a Retry, not {value!r}"
        )
    return Retry(attempts=value)
