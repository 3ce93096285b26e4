"""The core's options (aiodatabases/_options.py): read from keywords and the
URL query, checked when the ``Database`` is made, before any I/O."""

from __future__ import annotations

import pytest

from aiodatabases import Database
from aiodatabases._options import (
    DEFAULT_ACQUIRE_TIMEOUT,
    DEFAULT_HEALTH_CHECK_AFTER,
    take_settings,
)
from aiodatabases.exceptions import ConfigurationError, UnknownOptionError


def test_defaults() -> None:
    settings = take_settings({}, {})
    assert (settings.min_size, settings.max_size) == (1, 10)
    assert settings.acquire_timeout == DEFAULT_ACQUIRE_TIMEOUT
    assert settings.pool_recycle is None
    assert settings.health_check_after == DEFAULT_HEALTH_CHECK_AFTER


@pytest.mark.parametrize("off", [None, "none", 0, "0", "0.0"])
def test_the_health_check_is_off_with_none_or_zero(off: object) -> None:
    assert take_settings({}, {"health_check_after": off}).health_check_after is None


def test_the_health_check_threshold_from_the_url() -> None:
    assert take_settings({"health_check_after": "0.5"}, {}).health_check_after == 0.5


def test_options_are_taken_out_of_both_sources() -> None:
    url_options = {"min_size": "2", "other": "x"}
    kwargs = {"max_size": 5, "driver_option": 1}
    settings = take_settings(url_options, kwargs)
    assert (settings.min_size, settings.max_size) == (2, 5)
    # What the core does not take is left for the backend.
    assert url_options == {"other": "x"}
    assert kwargs == {"driver_option": 1}


def test_a_keyword_wins_over_the_url() -> None:
    settings = take_settings({"max_size": "3"}, {"max_size": 7})
    assert settings.max_size == 7


@pytest.mark.parametrize("no_limit", [None, "none", "None", " NONE "])
def test_none_means_no_limit(no_limit: object) -> None:
    settings = take_settings({}, {"acquire_timeout": no_limit, "pool_recycle": no_limit})
    assert settings.acquire_timeout is None
    assert settings.pool_recycle is None


def test_timeouts_from_the_url_are_numbers() -> None:
    settings = take_settings({"acquire_timeout": "2.5", "pool_recycle": "60"}, {})
    assert settings.acquire_timeout == 2.5
    assert settings.pool_recycle == 60.0


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"min_size": -1}, "0 <= min_size <= max_size"),
        ({"max_size": 0}, "max_size >= 1"),
        ({"min_size": 4, "max_size": 2}, "got min_size=4, max_size=2"),
        ({"max_size": "many"}, "invalid pool option"),
        ({"acquire_timeout": 0}, "positive number of seconds"),
        ({"acquire_timeout": -3}, "positive number of seconds"),
        ({"pool_recycle": "soon"}, "invalid pool option"),
        ({"health_check_after": -1}, "positive number of seconds"),
        ({"health_check_after": "often"}, "invalid pool option"),
    ],
)
def test_bad_values_are_refused_when_the_database_is_made(
    options: dict[str, object], said: str
) -> None:
    with pytest.raises(ConfigurationError, match=said):
        Database("sqlite:///ignored.db", **options)  # type: ignore[arg-type]


def test_bad_values_in_the_url_are_refused_too() -> None:
    with pytest.raises(ConfigurationError, match="invalid pool option"):
        Database("sqlite:///ignored.db?max_size=lots")


def test_an_option_nobody_takes_is_unknown() -> None:
    with pytest.raises(UnknownOptionError):
        Database("sqlite:///ignored.db", max_sizes=3)
