"""``DatabaseURL`` (aiodatabases._url): the ``databases`` 0.9 behaviour."""

from __future__ import annotations

import pytest

from aiodatabases._url import DatabaseURL
from aiodatabases.exceptions import ConfigurationError

# --- properties ----------------------------------------------------------------


def test_postgresql_parts() -> None:
    url = DatabaseURL("postgresql+asyncpg://user:secret@localhost:5433/app?ssl=true&min_size=2")
    assert url.scheme == "postgresql+asyncpg"
    assert url.dialect == "postgresql"
    assert url.driver == "asyncpg"
    assert url.userinfo == b"user:secret"
    assert url.username == "user"
    assert url.password == "secret"
    assert url.hostname == "localhost"
    assert url.port == 5433
    assert url.netloc == "user:secret@localhost:5433"
    assert url.database == "app"
    assert url.options == {"ssl": "true", "min_size": "2"}


def test_parts_that_are_absent() -> None:
    url = DatabaseURL("postgresql://localhost/app")
    assert url.driver == ""
    assert url.userinfo is None
    assert url.username is None
    assert url.password is None
    assert url.port is None
    assert url.options == {}


def test_user_without_password() -> None:
    url = DatabaseURL("mysql://root@db/app")
    assert (url.username, url.password, url.userinfo) == ("root", None, b"root")


def test_mysql_parts() -> None:
    url = DatabaseURL("mysql+asyncmy://app:pw@127.0.0.1:3306/shop?charset=utf8mb4")
    assert (url.dialect, url.driver) == ("mysql", "asyncmy")
    assert (url.hostname, url.port, url.database) == ("127.0.0.1", 3306, "shop")
    assert url.options == {"charset": "utf8mb4"}


@pytest.mark.parametrize(
    ("raw", "database"),
    [
        ("sqlite:///file.db", "file.db"),
        ("sqlite:///./data/file.db", "./data/file.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite+aiosqlite:///my%20file.db", "my file.db"),
    ],
)
def test_sqlite_database_path(raw: str, database: str) -> None:
    url = DatabaseURL(raw)
    assert url.database == database
    assert url.dialect == "sqlite"
    assert (url.hostname, url.port, url.username) == (None, None, None)
    assert url.netloc == ""


def test_unix_socket_host_from_options() -> None:
    url = DatabaseURL("postgresql://user@/app?host=/var/run/postgresql")
    assert url.hostname == "/var/run/postgresql"
    assert url.username == "user"
    assert url.database == "app"


def test_unix_sock_option_for_mysql() -> None:
    url = DatabaseURL("mysql://user@/app?unix_sock=/tmp/mysql.sock")
    assert url.hostname == "/tmp/mysql.sock"


def test_quoted_user_and_password_are_unquoted() -> None:
    url = DatabaseURL("postgresql://us%40er:p%40ss%3Aw%2Fd@localhost/app")
    assert url.username == "us@er"
    assert url.password == "p@ss:w/d"
    assert url.userinfo == b"us%40er:p%40ss%3Aw%2Fd"  # raw, as in databases


def test_ipv6_host() -> None:
    url = DatabaseURL("postgresql://u@[::1]:5432/app")
    assert (url.hostname, url.port) == ("::1", 5432)


def test_options_are_a_fresh_dict_each_time() -> None:
    url = DatabaseURL("postgresql://localhost/app?ssl=true")
    url.options["ssl"] = "false"
    assert url.options == {"ssl": "true"}


def test_built_from_another_url() -> None:
    url = DatabaseURL("sqlite:///file.db")
    assert DatabaseURL(url) == url
    assert DatabaseURL(url).database == "file.db"


# --- replace -------------------------------------------------------------------

PG = "postgresql+asyncpg://user:secret@localhost:5432/app?ssl=true"


@pytest.mark.parametrize(
    ("changes", "old", "new"),
    [
        ({"scheme": "postgresql"}, "postgresql+asyncpg:", "postgresql:"),
        ({"dialect": "mysql"}, "postgresql+", "mysql+"),
        ({"driver": "psycopg"}, "+asyncpg", "+psycopg"),
        ({"driver": ""}, "+asyncpg", ""),
        ({"username": "admin"}, "user:", "admin:"),
        ({"password": "new"}, ":secret@", ":new@"),
        ({"password": None}, ":secret@", "@"),
        ({"username": None, "password": None}, "user:secret@", ""),
        ({"hostname": "db.internal"}, "@localhost:", "@db.internal:"),
        ({"hostname": "::1"}, "@localhost:", "@[::1]:"),
        ({"port": 6543}, ":5432/", ":6543/"),
        ({"port": None}, ":5432/", "/"),
        ({"database": "test_app"}, "/app?", "/test_app?"),
        ({"options": {"ssl": "false", "x": "1"}}, "?ssl=true", "?ssl=false&x=1"),
        ({"options": {}}, "?ssl=true", ""),
    ],
)
def test_replace_each_part(changes: dict[str, object], old: str, new: str) -> None:
    # PG with `old` spelled as `new`: the rest of the URL must not move.
    assert str(DatabaseURL(PG).replace(**changes)) == PG.replace(old, new)  # type: ignore[arg-type]


def test_replace_quotes_user_and_password() -> None:
    url = DatabaseURL("postgresql://localhost/app").replace(username="us@er", password="p@ss:/")
    assert str(url) == "postgresql://us%40er:p%40ss%3A%2F@localhost/app"
    assert (url.username, url.password) == ("us@er", "p@ss:/")
    assert url.hostname == "localhost"


def test_replace_keeps_parts_it_does_not_change_as_written() -> None:
    url = DatabaseURL("postgresql://us%40er:p%40ss@LocalHost:5432/app")
    assert str(url.replace(port=1)) == "postgresql://us%40er:p%40ss@LocalHost:1/app"


def test_replace_database_round_trips() -> None:
    url = DatabaseURL("postgresql://localhost/app").replace(database="my db?#")
    assert url.database == "my db?#"
    assert url.options == {}


@pytest.mark.parametrize(
    ("raw", "database", "expected"),
    [
        ("sqlite:///file.db", "test_file.db", "sqlite:///test_file.db"),
        ("sqlite:///file.db", "/abs/test.db", "sqlite:////abs/test.db"),
        ("sqlite:////abs/file.db", "/abs/test_file.db", "sqlite:////abs/test_file.db"),
        ("sqlite+aiosqlite:///file.db", ":memory:", "sqlite+aiosqlite:///:memory:"),
    ],
)
def test_replace_sqlite_database_keeps_the_empty_host(
    raw: str, database: str, expected: str
) -> None:
    url = DatabaseURL(raw).replace(database=database)
    assert str(url) == expected
    assert url.database == database


def test_replace_on_unix_socket_url_keeps_the_socket_in_options() -> None:
    url = DatabaseURL("postgresql://user@/app?host=/var/run/postgresql")
    replaced = url.replace(username="other")
    assert str(replaced) == "postgresql://other@/app?host=/var/run/postgresql"
    assert replaced.hostname == "/var/run/postgresql"


def test_replace_returns_a_new_url() -> None:
    url = DatabaseURL(PG)
    url.replace(database="other")
    assert str(url) == PG


def test_replace_rejects_unknown_keys() -> None:
    with pytest.raises(TypeError, match="hostnme"):
        DatabaseURL(PG).replace(hostnme="x")  # type: ignore[call-arg]


# --- obscure_password, str, repr -----------------------------------------------


def test_obscure_password() -> None:
    url = DatabaseURL("postgresql://user:secret@localhost/app")
    assert url.obscure_password == "postgresql://user:********@localhost/app"


def test_obscure_password_with_quoted_password() -> None:
    url = DatabaseURL("postgresql://user:p%40ss@localhost:5432/app")
    assert url.obscure_password == "postgresql://user:********@localhost:5432/app"


@pytest.mark.parametrize("raw", ["postgresql://user@localhost/app", "sqlite:///file.db"])
def test_obscure_password_without_password(raw: str) -> None:
    assert DatabaseURL(raw).obscure_password == raw


def test_str_is_the_url() -> None:
    assert str(DatabaseURL(PG)) == PG


def test_repr_hides_the_password() -> None:
    url = DatabaseURL("postgresql://user:secret@localhost/db")
    assert repr(url) == "DatabaseURL('postgresql://user:********@localhost/db')"
    assert "secret" not in repr(url)


# --- equality --------------------------------------------------------------------


def test_equal_to_its_string_and_to_an_equal_url() -> None:
    url = DatabaseURL(PG)
    assert url == PG
    assert PG == url  # noqa: SIM300 - str.__eq__ first, then the reflected one
    assert url == DatabaseURL(PG)
    assert url != DatabaseURL("sqlite:///file.db")
    assert url != "sqlite:///file.db"


def test_not_equal_to_other_types() -> None:
    assert DatabaseURL("sqlite:///1") != 1
    assert DatabaseURL("sqlite:///1") != None  # noqa: E711 - testing __eq__ itself


def test_hash_agrees_with_equality() -> None:
    url = DatabaseURL(PG)
    assert hash(url) == hash(DatabaseURL(PG)) == hash(PG)
    by_url: dict[object, int] = {url: 1}
    assert by_url[PG] == 1
    assert len({url, DatabaseURL(PG), PG}) == 1


# --- bad URLs --------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["not a url", "", "localhost:5432", "/var/lib/app.db"])
def test_not_a_url_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="not a database URL"):
        DatabaseURL(raw)


def test_bad_url_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        DatabaseURL("user:secret@localhost/app")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    "raw", ["postgresql://localhost:port/app", "postgresql://localhost:99999/app"]
)
def test_invalid_port_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="port"):
        DatabaseURL(raw)


def test_unbalanced_ipv6_bracket_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="IPv6"):
        DatabaseURL("postgresql://[::1/app")


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a database URL"):
        DatabaseURL("nope")


def test_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Expected str or DatabaseURL"):
        DatabaseURL(42)  # type: ignore[arg-type]


def test_obscure_password_hides_a_password_in_the_query() -> None:
    url = DatabaseURL("postgresql://app@db/shop?password=s3cret&ssl=require&sslpassword=k3y")
    assert url.obscure_password == (
        "postgresql://app@db/shop?password=********&ssl=require&sslpassword=********"
    )
    assert "s3cret" not in repr(url)
    both = DatabaseURL("postgresql://app:one@db/shop?password=two")
    assert both.obscure_password == "postgresql://app:********@db/shop?password=********"
    plain = "postgresql://app@db/shop?ssl=require"
    assert DatabaseURL(plain).obscure_password == plain
