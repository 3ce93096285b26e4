"""The pytest plugin, driven through inner pytest sessions (``pytester``).

Every inner session runs against a real database (SQLite file, the run's
private PostgreSQL and MySQL databases) and must pass with the expected
counts. The inner app is a Starlette app with a module-level ``Database``;
the inner conftest hands that object to the plugin (``aiodatabases_database``)
and builds the schema with an async callable that records each call. In each
setting, tests write through the database and through the app and see each
other's writes; later tests, and the outer test after the session, see none.
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import dialect_of, drop_table, helper_database, notes_ddl, scheme_of, urls_for

from aiodatabases import DatabaseURL

pytest_plugins = ["pytester"]

# Inner sessions run in this process, and pytester drops the modules each one
# imported when it ends. Compiled extensions (SQLAlchemy's Cython parts, the
# drivers) cannot be imported twice: import them here, once, so they stay
# (and hypothesis, whose pytest plugin would cost half a second a session).
for _module in (
    "hypothesis",
    "sqlalchemy",
    "sqlalchemy.schema",
    "sqlalchemy.dialects.postgresql.base",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "sqlalchemy.dialects.mysql.pymysql",
    "aiodatabases._sqlalchemy",
    "aiodatabases.backends.postgres",
    "aiodatabases.backends.sqlite",
    "aiodatabases.backends.asyncmy",
    "aiodatabases.backends.aiomysql",
    "starlette.testclient",
    "httpx",
    "anyio",
):
    importlib.import_module(_module)

_INI = """\
[pytest]
addopts = -p no:cacheprovider --strict-markers --strict-config
filterwarnings = error
asyncio_default_fixture_loop_scope = function
{extra}
"""

_APP = """\
import asyncio

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiodatabases import Database
from aiodatabases.testing import lifespan

database = Database({url!r})


async def list_notes(request):
    rows = await database.fetch_all("SELECT text FROM notes ORDER BY id")
    return JSONResponse([row["text"] for row in rows])


async def add_notes(request):
    texts = (await request.json())["texts"]
    async with database.transaction():
        await asyncio.gather(
            *(database.execute("INSERT INTO notes (text) VALUES (:t)", {{"t": t}}) for t in texts)
        )
    return JSONResponse({{"count": await database.fetch_val("SELECT COUNT(*) FROM notes")}})


app = Starlette(
    routes=[
        Route("/notes", list_notes, methods=["GET"]),
        Route("/notes", add_notes, methods=["POST"]),
    ],
    lifespan=lifespan(database),
)

INSERT = "INSERT INTO notes (text) VALUES (:t)"
COUNT = "SELECT COUNT(*) FROM notes"
loops = []  # event loops seen by the tests (loop scope checks)
"""

_APP_CONFTEST = """\
import pytest

import notes_app


@pytest.fixture(scope="session")
def aiodatabases_database():
    return notes_app.database


@pytest.fixture(scope="session")
def aiodatabases_schema():
    async def build(database):
        with open({calls!r}, "a") as calls:
            calls.write("built\\n")
        await database.execute({ddl!r})

    return build
"""

# One test body per way of driving the app; each round starts from nothing.
_ASYNC_HTTPX_ROUNDS = """\
import asyncio

import httpx
import pytest

import notes_app


@pytest.mark.parametrize("round_", range(3))
async def test_round(aiodatabases_db, round_):
    notes_app.loops.append(asyncio.get_running_loop())
    assert aiodatabases_db is notes_app.database
    transport = httpx.ASGITransport(app=notes_app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/notes")).json() == []
        await aiodatabases_db.execute(notes_app.INSERT, {"t": f"test {round_}"})
        response = await client.post("/notes", json={"texts": ["a", "b", "c"]})
        assert response.json() == {"count": 4}
        assert (await client.get("/notes")).json()[0] == f"test {round_}"
    assert await aiodatabases_db.fetch_val(notes_app.COUNT) == 4
"""

_SYNC_TESTCLIENT = """\
import asyncio

import pytest
from starlette.testclient import TestClient

import notes_app


@pytest.fixture
def client(aiodatabases_db):
    with TestClient(notes_app.app) as client:
        yield client


@pytest.mark.parametrize("round_", range(3))
def test_round(aiodatabases_db, client, round_):
    assert aiodatabases_db is notes_app.database
    assert client.get("/notes").json() == []
    asyncio.run(aiodatabases_db.execute(notes_app.INSERT, {"t": f"test {round_}"}))
    assert client.post("/notes", json={"texts": ["a", "b", "c"]}).json() == {"count": 4}
    assert asyncio.run(aiodatabases_db.fetch_val(notes_app.COUNT)) == 4
    # From the client's own event loop thread too.
    client.portal.call(aiodatabases_db.execute, notes_app.INSERT, {"t": "portal"})
    assert client.portal.call(aiodatabases_db.fetch_val, notes_app.COUNT) == 5
    assert client.get("/notes").json()[-1] == "portal"
"""

_ASYNC_TESTCLIENT = """\
import pytest
from starlette.testclient import TestClient

import notes_app


@pytest.mark.parametrize("round_", range(3))
async def test_round(aiodatabases_db, round_):
    assert aiodatabases_db is notes_app.database
    with TestClient(notes_app.app) as client:
        assert client.get("/notes").json() == []
        await aiodatabases_db.execute(notes_app.INSERT, {"t": f"test {round_}"})
        assert client.post("/notes", json={"texts": ["a", "b", "c"]}).json() == {"count": 4}
        await aiodatabases_db.execute(notes_app.INSERT, {"t": "after"})
        assert client.get("/notes").json()[0] == f"test {round_}"
        assert len(client.get("/notes").json()) == 5
    assert await aiodatabases_db.fetch_val(notes_app.COUNT) == 5
"""

_ANYIO = """\
import httpx
import pytest

import notes_app


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("round_", range(3))
async def test_round(aiodatabases_db, round_):
    assert aiodatabases_db is notes_app.database
    transport = httpx.ASGITransport(app=notes_app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/notes")).json() == []
        await aiodatabases_db.execute(notes_app.INSERT, {"t": f"test {round_}"})
        response = await client.post("/notes", json={"texts": ["a", "b", "c"]})
        assert response.json() == {"count": 4}
    assert await aiodatabases_db.fetch_val(notes_app.COUNT) == 4
"""


def _loop_scoped(scope: str) -> str:
    return f'pytestmark = __import__("pytest").mark.asyncio(loop_scope="{scope}")\n' + (
        _ASYNC_HTTPX_ROUNDS
    )


_LOOPS_DISTINCT = """\
import notes_app


def test_loops():
    assert len(notes_app.loops) == 3
    assert len(set(map(id, notes_app.loops))) == {expected}
"""


@dataclass
class Inner:
    """An inner pytest session's directory, configured for one database URL."""

    pytester: pytest.Pytester
    url: str
    calls: Path

    def app_files(self, **tests: str) -> None:
        self.pytester.makepyfile(
            notes_app=_APP.format(url=self.url),
            conftest=_APP_CONFTEST.format(
                calls=str(self.calls),
                ddl=notes_ddl(self.url).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"),
            ),
            **tests,
        )

    def ini(self, extra: str = "") -> None:
        self.pytester.makeini(_INI.format(extra=extra))

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_inprocess(*args)

    def schema_builds(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0

    def committed_notes(self) -> int:
        """Rows in ``notes`` as another connection sees them (the table must exist)."""

        async def count() -> int:
            async with helper_database(self.url) as database:
                return int(await database.fetch_val("SELECT COUNT(*) FROM notes"))

        return asyncio.run(count())


@pytest.fixture
def inner(database_url: str, pytester: pytest.Pytester, tmp_path: Path) -> Iterator[Inner]:
    pytester.syspathinsert()
    if dialect_of(database_url) == "sqlite":
        # A file that does not exist yet: the plugin's session creates it.
        yield Inner(pytester, f"sqlite:///{tmp_path / 'inner.db'}", tmp_path / "calls.txt")
        return
    yield Inner(pytester, database_url, tmp_path / "calls.txt")
    asyncio.run(drop_table(database_url, "notes"))


def _assert_clean(inner: Inner) -> None:
    assert inner.schema_builds() == 1
    assert inner.committed_notes() == 0


# -- event loop settings ---------------------------------------------------


def test_pytest_asyncio_function_loop_scope_with_httpx_asgi_transport(inner: Inner) -> None:
    inner.ini("asyncio_mode = auto")
    inner.app_files(
        test_rounds=_ASYNC_HTTPX_ROUNDS, test_rounds_zz=_LOOPS_DISTINCT.format(expected=3)
    )
    inner.run("--aiodatabases-url", inner.url).assert_outcomes(passed=4)
    _assert_clean(inner)


def test_pytest_asyncio_module_loop_scope(inner: Inner) -> None:
    inner.ini()  # strict mode: the module markers do the work
    inner.app_files(
        test_one=_loop_scoped("module"),
        test_one_zz=_LOOPS_DISTINCT.format(expected=1),
        test_two=_loop_scoped("module"),
    )
    inner.run().assert_outcomes(passed=7)
    _assert_clean(inner)


def test_pytest_asyncio_session_loop_scope(inner: Inner) -> None:
    inner.ini("asyncio_mode = auto")
    inner.app_files(test_one=_loop_scoped("session"), test_two=_loop_scoped("session"))
    inner.pytester.makepyfile(
        test_zz="""
            import notes_app

            def test_one_loop_for_all():
                assert len(notes_app.loops) == 6
                assert len(set(map(id, notes_app.loops))) == 1
        """
    )
    inner.run().assert_outcomes(passed=7)
    _assert_clean(inner)


def test_anyio_plugin_asyncio_backend(inner: Inner) -> None:
    inner.ini()  # pytest-asyncio in strict mode leaves anyio's tests alone
    inner.app_files(test_anyio=_ANYIO)
    inner.run().assert_outcomes(passed=3)
    _assert_clean(inner)


# -- ways of driving the app -----------------------------------------------


def test_sync_tests_through_testclient(inner: Inner) -> None:
    inner.ini()
    inner.app_files(test_sync=_SYNC_TESTCLIENT)
    inner.run().assert_outcomes(passed=3)
    _assert_clean(inner)


def test_testclient_inside_async_tests(inner: Inner) -> None:
    inner.ini("asyncio_mode = auto")
    inner.app_files(test_inside=_ASYNC_TESTCLIENT)
    inner.run().assert_outcomes(passed=3)
    _assert_clean(inner)


def test_all_settings_in_one_session(inner: Inner) -> None:
    """Sync, async, anyio and loop-scoped tests share the session's connection."""
    inner.ini()
    inner.app_files(
        test_a_sync=_SYNC_TESTCLIENT,
        test_b_inside=_ASYNC_TESTCLIENT.replace("async def", "@pytest.mark.asyncio\nasync def"),
        test_c_anyio=_ANYIO,
        test_d_module=_loop_scoped("module"),
        test_e_sync=_SYNC_TESTCLIENT,
    )
    inner.run().assert_outcomes(passed=15)
    _assert_clean(inner)


# -- configuration and schema ----------------------------------------------

_METADATA_CONFTEST = """\
import pytest
import sqlalchemy as sa

metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(100)),
    sa.Column("completed", sa.Boolean),
)


@pytest.fixture(scope="session")
def aiodatabases_schema():
    return metadata
"""

_METADATA_TESTS = """\
import pytest
import sqlalchemy as sa

from conftest import notes


@pytest.mark.parametrize("round_", range(3))
async def test_round(aiodatabases_db, round_):
    count = sa.select(sa.func.count()).select_from(notes)
    assert await aiodatabases_db.fetch_val(count) == 0
    await aiodatabases_db.execute(notes.insert().values(text=f"round {round_}", completed=False))
    assert await aiodatabases_db.fetch_val(count) == 1


def test_default_database_is_built_from_the_configured_url(aiodatabases_db, aiodatabases_url):
    assert str(aiodatabases_db.url) == aiodatabases_url
"""


def test_schema_from_sqlalchemy_metadata_and_ini_url(inner: Inner) -> None:
    inner.ini(f"asyncio_mode = auto\naiodatabases_url = {inner.url}")
    inner.pytester.makepyfile(conftest=_METADATA_CONFTEST, test_metadata=_METADATA_TESTS)
    inner.run().assert_outcomes(passed=4)
    assert inner.committed_notes() == 0  # built outside the rolled-back transaction


def test_command_line_url_wins_over_the_ini(inner: Inner) -> None:
    inner.ini("asyncio_mode = auto\naiodatabases_url = sqlite:////nonexistent/dir/x.db")
    inner.pytester.makepyfile(conftest=_METADATA_CONFTEST, test_metadata=_METADATA_TESTS)
    inner.run("--aiodatabases-url", inner.url).assert_outcomes(passed=4)


# -- database lifecycle ----------------------------------------------------


async def _database_exists(url: str) -> bool:
    parsed = DatabaseURL(url)
    if parsed.dialect == "postgresql":
        admin_url, query = (
            parsed.replace(database="postgres"),
            "SELECT COUNT(*) FROM pg_database WHERE datname = :name",
        )
    else:
        admin_url, query = (
            parsed.replace(database=""),
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name",
        )
    async with helper_database(admin_url) as admin:
        return bool(await admin.fetch_val(query, {"name": parsed.database}))


async def _drop_database(url: str) -> None:
    parsed = DatabaseURL(url)
    if parsed.dialect == "postgresql":
        admin_url = parsed.replace(database="postgres")
        statement = f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'
    else:
        admin_url = parsed.replace(database="")
        statement = f"DROP DATABASE IF EXISTS `{parsed.database}`"
    async with helper_database(admin_url) as admin:
        await admin.execute(statement)


_LIFECYCLE_TESTS = """\
import pytest


@pytest.fixture(scope="session")
def aiodatabases_schema():
    async def build(database):
        await database.execute({ddl!r})

    return build


@pytest.mark.parametrize("round_", range(2))
async def test_round(aiodatabases_db, round_):
    assert await aiodatabases_db.fetch_val("SELECT COUNT(*) FROM notes") == 0
    await aiodatabases_db.execute("INSERT INTO notes (text) VALUES ('x')")
"""


@pytest.mark.parametrize("server_url", urls_for("postgresql", "mysql"), ids=scheme_of)
def test_creates_the_database_if_missing_and_drops_it_on_request(
    server_url: str, pytester: pytest.Pytester
) -> None:
    name = f"aiodatabases_plugin_{uuid.uuid4().hex[:8]}"
    url = str(DatabaseURL(server_url).replace(database=name))
    ddl = notes_ddl(url).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")
    pytester.makepyfile(test_lifecycle=_LIFECYCLE_TESTS.format(ddl=ddl))
    try:
        assert not asyncio.run(_database_exists(url))
        # Created, and kept without the drop option.
        pytester.makeini(_INI.format(extra="asyncio_mode = auto"))
        pytester.runpytest_inprocess("--aiodatabases-url", url).assert_outcomes(passed=2)
        assert asyncio.run(_database_exists(url))
        # Dropped by the ini option (it existed already: reused).
        pytester.makeini(
            _INI.format(
                extra=f"asyncio_mode = auto\naiodatabases_url = {url}\naiodatabases_drop = true"
            )
        )
        pytester.runpytest_inprocess().assert_outcomes(passed=2)
        assert not asyncio.run(_database_exists(url))
        # Created and dropped by the command line flag.
        pytester.makeini(_INI.format(extra="asyncio_mode = auto"))
        result = pytester.runpytest_inprocess("--aiodatabases-url", url, "--aiodatabases-drop")
        result.assert_outcomes(passed=2)
        assert not asyncio.run(_database_exists(url))
    finally:
        asyncio.run(_drop_database(url))


# -- inert without configuration -------------------------------------------


def test_inert_without_configuration(pytester: pytest.Pytester) -> None:
    pytester.makeini(_INI.format(extra="asyncio_mode = auto"))
    pytester.makepyfile(
        test_plain="""
            def test_sync():
                assert True

            async def test_async():
                assert True
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=2)
    # Loaded through the entry point, and silent.
    result.stdout.fnmatch_lines(["plugins:*aiodatabases*"])
    lines = result.stdout.lines + result.stderr.lines
    assert [line for line in lines if "aiodatabases" in line and "plugins:" not in line] == []
    # The plugin's options are there all the same.
    help_text = pytester.runpytest_inprocess("--help").stdout.str()
    assert "--aiodatabases-url" in help_text
    assert "--aiodatabases-drop" in help_text


def test_the_fixture_without_a_url_names_the_option(pytester: pytest.Pytester) -> None:
    pytester.makeini(_INI.format(extra="asyncio_mode = auto"))
    pytester.makepyfile(
        test_needs_db="""
            def test_plain():
                assert True

            async def test_db(aiodatabases_db):
                raise AssertionError("never runs")
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*--aiodatabases-url*"])


def test_an_already_connected_database_is_refused(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The plugin connects the database itself (with force_rollback)."""
    url = f"sqlite:///{tmp_path / 'connected.db'}"
    pytester.makeini(_INI.format(extra="asyncio_mode = auto"))
    pytester.makepyfile(
        test_connected=f"""
            import asyncio
            import pytest
            from aiodatabases import Database

            @pytest.fixture(scope="session")
            def aiodatabases_database():
                database = Database({url!r}, force_rollback=True)
                asyncio.run(database.connect())
                yield database
                asyncio.run(database.disconnect())

            def test_db(aiodatabases_db):
                raise AssertionError("never runs")
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*already connected*"])


# -- MySQL DDL inside a test -----------------------------------------------

_MYSQL_DDL_TESTS = """\
import notes_app


async def test_ddl_then_write(aiodatabases_db):
    # Commits implicitly on MySQL: what ran before it in the session is committed.
    await aiodatabases_db.execute("CREATE TABLE IF NOT EXISTS ddl_other (i INTEGER)")
    await aiodatabases_db.execute(notes_app.INSERT, {"t": "after the DDL"})


async def test_later_test_sees_nothing(aiodatabases_db):
    assert await aiodatabases_db.fetch_all("SELECT text FROM notes") == []
"""


# Regression: the isolation's savepoint was not taken again after MySQL's
# implicit commit, so writes after DDL in a test leaked into later tests.
@pytest.mark.parametrize("database_url", urls_for("mysql"), ids=scheme_of)
def test_mysql_writes_after_ddl_in_a_test_are_still_undone(inner: Inner) -> None:
    inner.ini("asyncio_mode = auto")
    inner.app_files(test_ddl=_MYSQL_DDL_TESTS)
    try:
        result = inner.run()
    finally:
        asyncio.run(drop_table(inner.url, "ddl_other"))
    result.assert_outcomes(passed=2)
