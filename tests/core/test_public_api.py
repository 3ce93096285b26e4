from pathlib import Path

import aiodatabases


def test_exported_names_are_exactly_all() -> None:
    public = {name for name in vars(aiodatabases) if not name.startswith("_")}
    modules = {
        "backends",
        "connection",
        "database",
        "exceptions",
        "hooks",
        "otel",
        "testing",
        "transaction",
    }
    assert public - modules == set(aiodatabases.__all__)
    assert aiodatabases.__all__ == sorted(aiodatabases.__all__)


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("aiodatabases").joinpath("py.typed").is_file()


#: ``databases`` 0.9's ``Connection`` API, which README.md and docs/ document;
#: internals (frames, holds, closing) must not leak back into it.
CONNECTION_API = {
    "execute",
    "execute_many",
    "fetch_all",
    "fetch_one",
    "fetch_val",
    "iterate",
    "raw_connection",
    "transaction",
}


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def test_connection_offers_exactly_the_documented_api() -> None:
    assert _public(aiodatabases.Connection) == CONNECTION_API


async def test_a_held_connection_offers_exactly_the_documented_api(tmp_path: Path) -> None:
    database = aiodatabases.Database(f"sqlite:///{tmp_path / 'api.db'}")
    async with database, database.connection() as connection, connection.transaction():
        assert _public(connection) == CONNECTION_API
