"""The replica options (aiodatabases/_replica_options.py, _replicas.py): checked when the
``Database`` is made, before any I/O; which SQL a replica may run (``is_replica_read``).

Routing itself is tested against a real streaming standby in
``tests/faults/test_replicas.py``.
"""

from __future__ import annotations

import pytest

from aiodatabases import Database, NotConnectedError
from aiodatabases._query import is_replica_read
from aiodatabases._replica_options import (
    DEFAULT_READ_YOUR_WRITES,
    DEFAULT_RETRY_AFTER,
    take_routing,
)
from aiodatabases.exceptions import ConfigurationError, UnknownOptionError

PRIMARY = "postgresql://app:secret@127.0.0.1:1/app"
#: Nobody listens there: making the Database must not try.
REPLICA = "postgresql://app:secret@127.0.0.1:2/app"


def test_defaults_and_what_is_taken_out() -> None:
    url_options = {"read_your_writes": "0.5", "sslmode": "x"}
    kwargs = {"replicas": [REPLICA], "min_size": 2}
    routing = take_routing(url_options, kwargs)
    assert [str(url) for url in routing.urls] == [REPLICA]
    assert (routing.read_your_writes, routing.retry_after) == (0.5, DEFAULT_RETRY_AFTER)
    assert url_options == {"sslmode": "x"}
    assert kwargs == {"min_size": 2}  # left for the core, the driver and the replicas
    assert take_routing({}, {}).read_your_writes == DEFAULT_READ_YOUR_WRITES


def test_a_keyword_wins_over_the_url() -> None:
    routing = take_routing({"read_your_writes": "9"}, {"read_your_writes": 0})
    assert routing.read_your_writes == 0


def test_a_database_with_replicas_is_inert() -> None:
    database = Database(PRIMARY, replicas=[REPLICA, REPLICA], read_your_writes=1)
    assert not database.is_connected
    with pytest.raises(NotConnectedError):
        database.replica_stats()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"replicas": REPLICA}, "a list of URLs, not one URL"),
        ({"replicas": [REPLICA], "read_your_writes": -1}, "read_your_writes must be 0 or more"),
        ({"replicas": [REPLICA], "read_your_writes": "soon"}, "invalid replica option"),
        ({"replicas": [REPLICA], "replica_retry_after": 0}, "more than 0 seconds"),
    ],
)
def test_bad_options_are_refused_at_once(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Database(PRIMARY, **options)


@pytest.mark.parametrize(
    ("primary", "replica"),
    [
        (PRIMARY, "mysql://root@127.0.0.1:2/app"),
        ("mysql://root@127.0.0.1:1/app", "mysql+asyncmy://root@127.0.0.1:2/app"),
    ],
)
def test_a_replica_must_use_the_primarys_database_and_driver(primary: str, replica: str) -> None:
    with pytest.raises(ConfigurationError, match="the primary's database and driver") as error:
        Database(primary, replicas=[replica])
    assert "secret" not in str(error.value)


def test_the_two_names_of_aiomysql_are_one_driver() -> None:
    Database("mysql://root@127.0.0.1:1/app", replicas=["mysql+aiomysql://root@127.0.0.1:2/app"])


def test_sqlite_has_no_replicas() -> None:
    with pytest.raises(ConfigurationError, match="SQLite has no replicas"):
        Database("sqlite:///app.db", replicas=["sqlite:///copy.db"])


def test_a_replicas_url_options_are_checked_as_the_primarys() -> None:
    with pytest.raises(UnknownOptionError):
        Database(PRIMARY, replicas=[REPLICA + "?no_such_option=1"])
    with pytest.raises(ConfigurationError, match="pool sizes"):
        Database(PRIMARY, replicas=[REPLICA + "?min_size=5&max_size=2"])


async def test_without_replicas_there_are_no_replica_stats(tmp_path: object) -> None:
    async with Database(f"sqlite:///{tmp_path}/app.db") as database:
        assert database.replica_stats() == []


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select id, text from notes where id = $1",
        "WITH recent AS (SELECT * FROM notes) SELECT count(*) FROM recent",
        "SELECT forupdate FROM notes",  # a column's name, no lock
        "  /* report */ SELECT pg_is_in_recovery()",
    ],
)
def test_reads_a_replica_may_run(sql: str) -> None:
    assert is_replica_read(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO notes (text) VALUES ($1)",
        "WITH gone AS (DELETE FROM notes RETURNING id) SELECT count(*) FROM gone",
        "SELECT nextval('notes_id_seq')",
        "SELECT * FROM notes WHERE id = $1 FOR UPDATE",
        "SELECT * FROM notes FOR NO KEY UPDATE SKIP LOCKED",
        "SELECT * FROM notes FOR SHARE",
        "SELECT * FROM notes LOCK IN SHARE MODE",
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT GET_LOCK('job', 10)",
        "SELECT * INTO copy FROM notes",
        "CREATE TABLE t (id int)",
    ],
)
def test_reads_that_must_run_on_the_primary(sql: str) -> None:
    assert not is_replica_read(sql)
