"""``DatabaseURL``: the parts of ``dialect+driver://user:password@host:port/db?opts``.

Behaves like ``databases.DatabaseURL`` (0.9), with three differences where
``databases`` is silent or wrong: a string that is not a URL, or has an
invalid port, raises ``ConfigurationError`` at once instead of failing later;
``replace(options=...)`` rebuilds the query string; and ``replace`` keeps an
empty host empty (``sqlite:///file.db``), quotes a new user name or password,
and never moves a unix-socket ``?host=`` into the network location.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DatabaseURL"]

# Characters RFC 3986 allows unescaped in userinfo besides letters and digits;
# ':' '@' '/' and the rest are percent-encoded so the URL still parses.
_USERINFO_SAFE = "!$&'()*+,;="
# In the path, '/' must stay (sqlite:////abs/path.db) and ':' is common
# (sqlite:///:memory:); '?' and '#' would end the path, so they get quoted.
_PATH_SAFE = "/:@!$&'()*+,;="
_OBSCURED = "********"


class _Replacement(TypedDict, total=False):
    """The keyword arguments ``DatabaseURL.replace`` accepts."""

    scheme: str
    dialect: str
    driver: str
    username: str | None
    password: str | None
    hostname: str | None
    port: int | None
    database: str
    options: Mapping[str, Any]
    # The raw ``urlsplit`` fields, as ``databases`` also passes them through.
    netloc: str
    path: str
    query: str
    fragment: str


_NETLOC_KEYS = frozenset({"username", "password", "hostname", "port"})
_RAW_KEYS = frozenset({"scheme", "netloc", "path", "query", "fragment"})
_REPLACE_KEYS = _NETLOC_KEYS | _RAW_KEYS | {"dialect", "driver", "database", "options"}


class DatabaseURL:
    """A parsed database URL; immutable, compared and hashed as its string."""

    __slots__ = ("_parts", "_url")
    _url: str
    _parts: SplitResult

    def __init__(self, url: str | DatabaseURL) -> None:
        if isinstance(url, DatabaseURL):
            self._url, self._parts = url._url, url._parts
            return
        if not isinstance(url, str):
            raise TypeError(
                f"Invalid type for DatabaseURL. Expected str or DatabaseURL, got {type(url)}"
            )
        self._url = url
        self._parts = _parse(url)

    # --- the parts -------------------------------------------------------------

    @property
    def components(self) -> SplitResult:
        """The ``urllib.parse.urlsplit`` result (as in ``databases``)."""
        return self._parts

    @property
    def scheme(self) -> str:
        """``"postgresql+asyncpg"``: dialect and optional driver."""
        return self._parts.scheme

    @property
    def dialect(self) -> str:
        return self.scheme.split("+", 1)[0]

    @property
    def driver(self) -> str:
        """The part after ``+`` in the scheme, or ``""``."""
        return self.scheme.partition("+")[2]

    @property
    def userinfo(self) -> bytes | None:
        """Raw (still quoted) ``b"user:password"``; bytes, as in ``databases``."""
        username, password = self._parts.username, self._parts.password
        if not username:
            return None
        info = f"{username}:{password}" if password else username
        return info.encode("utf-8")

    @property
    def username(self) -> str | None:
        username = self._parts.username
        return None if username is None else unquote(username)

    @property
    def password(self) -> str | None:
        password = self._parts.password
        return None if password is None else unquote(password)

    @property
    def hostname(self) -> str | None:
        """The host, or a unix-socket directory given as ``?host=`` / ``?unix_sock=``."""
        options = self.options
        return self._parts.hostname or options.get("host") or options.get("unix_sock")

    @property
    def port(self) -> int | None:
        return self._parts.port

    @property
    def netloc(self) -> str | None:
        return self._parts.netloc

    @property
    def database(self) -> str:
        """The path without its first ``/``: ``sqlite:////abs.db`` gives ``"/abs.db"``."""
        path = self._parts.path
        return unquote(path[1:] if path.startswith("/") else path)

    @property
    def options(self) -> dict[str, str]:
        """The query string as a new dict on every access (safe to modify)."""
        return dict(parse_qsl(self._parts.query))

    # --- derived URLs -----------------------------------------------------------

    def replace(self, **changes: Unpack[_Replacement]) -> DatabaseURL:
        """A new URL with the given parts changed.

        ``None`` for ``username``, ``password``, ``hostname`` or ``port`` removes
        that part. ``dialect``/``driver`` rebuild the scheme, ``database`` the
        path, ``options`` (a mapping) the query string.
        """
        unknown = sorted(changes.keys() - _REPLACE_KEYS)
        if unknown:
            raise TypeError(f"DatabaseURL.replace() got unexpected keyword(s): {unknown}")
        fields = {key: str(value) for key, value in changes.items() if key in _RAW_KEYS}
        if changes.keys() & {"dialect", "driver"}:
            fields["scheme"] = self._scheme_with(changes, fields.get("scheme"))
        if changes.keys() & _NETLOC_KEYS:
            fields["netloc"] = self._netloc_with(changes)
        if "database" in changes:
            fields["path"] = "/" + quote(changes["database"], safe=_PATH_SAFE)
        if "options" in changes:
            fields["query"] = urlencode(changes["options"])
        return DatabaseURL(_unsplit(self._parts._replace(**fields)))

    def _scheme_with(self, changes: _Replacement, scheme: str | None) -> str:
        dialect, _, driver = (scheme or self.scheme).partition("+")
        dialect = changes.get("dialect", dialect)
        driver = changes.get("driver", driver)
        return f"{dialect}+{driver}" if driver else dialect

    def _netloc_with(self, changes: _Replacement) -> str:
        # Start from the raw pieces so that parts not being changed keep their
        # exact spelling (quoting, host case) instead of a decoded copy.
        userinfo, at, hostport = self._parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        raw_user = user if at else None
        raw_password = password if colon else None
        host, port = _split_hostport(hostport)
        if "username" in changes:
            raw_user = _quote_userinfo(changes["username"])
        if "password" in changes:
            raw_password = _quote_userinfo(changes["password"])
        if "hostname" in changes:
            host = _format_host(changes["hostname"])
        if "port" in changes:
            port = None if changes["port"] is None else str(changes["port"])
        return _join_netloc(raw_user, raw_password, host, port)

    @property
    def obscure_password(self) -> str:
        """The URL with its password replaced by ``********``, for logs: the one in
        the user part, and a query option whose name has ``password`` in it."""
        url = self._url if not self.password else str(self.replace(password=_OBSCURED))
        base, question, query = url.partition("?")
        if not question or "password" not in unquote(query).lower():
            return url
        pairs = []
        for pair in query.split("&"):
            key, equals, _ = pair.partition("=")
            hidden = equals and "password" in unquote(key).lower()
            pairs.append(f"{key}={_OBSCURED}" if hidden else pair)
        return f"{base}?{'&'.join(pairs)}"

    # --- identity ---------------------------------------------------------------

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.obscure_password!r})"

    def __eq__(self, other: object) -> bool:
        # A URL equals its own string, so `DatabaseURL(u) == u` holds.
        if isinstance(other, DatabaseURL | str):
            return self._url == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        # Equal to hash(str): consistent with __eq__ against plain strings.
        return hash(self._url)


def _parse(url: str) -> SplitResult:
    """``urlsplit`` plus the checks that make a bad URL fail at once."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unbalanced '[' of an IPv6 host
        raise ConfigurationError(f"invalid database URL: {exc}") from None
    if not parts.scheme or not url[len(parts.scheme) :].startswith("://"):
        raise ConfigurationError(
            f"not a database URL: {_redacted(url)!r}; expected "
            "'dialect[+driver]://[user[:password]@]host[:port]/database'"
            ", for example 'postgresql+asyncpg://user:pass@localhost/app'"
            " or 'sqlite+aiosqlite:///app.db'"
        )
    try:
        parts.port  # noqa: B018 - urlsplit only checks the port when asked
    except ValueError as exc:
        raise ConfigurationError(f"invalid port in database URL: {exc}") from None
    return parts


def _redacted(url: str) -> str:
    # Whatever precedes an '@' may be a password: never echo it in an error.
    _, at, rest = url.rpartition("@")
    return f"***@{rest}" if at else url


def _unsplit(parts: SplitResult) -> str:
    # Not SplitResult.geturl(): for schemes urllib does not know (sqlite,
    # postgresql+asyncpg) it drops the '//' of an empty host, giving
    # 'sqlite:/file.db'. A database URL always has the '//'.
    url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if parts.query:
        url += f"?{parts.query}"
    if parts.fragment:
        url += f"#{parts.fragment}"
    return url


def _split_hostport(hostport: str) -> tuple[str, str | None]:
    """``"[::1]:5432"`` -> ``("[::1]", "5432")``; the host stays raw."""
    if not hostport.startswith("["):
        host, colon, port = hostport.partition(":")
        return host, port if colon else None
    # urlsplit has already rejected a '[' without its ']'.
    end = hostport.index("]") + 1
    host, rest = hostport[:end], hostport[end:]
    return host, rest[1:] if rest.startswith(":") else None


def _format_host(hostname: str | None) -> str:
    if hostname is None:
        return ""
    # An IPv6 address needs brackets to be told apart from the port.
    return f"[{hostname}]" if ":" in hostname and not hostname.startswith("[") else hostname


def _quote_userinfo(value: str | None) -> str | None:
    return None if value is None else quote(value, safe=_USERINFO_SAFE)


def _join_netloc(user: str | None, password: str | None, host: str, port: str | None) -> str:
    netloc = host if port is None else f"{host}:{port}"
    if user is None and password is None:
        return netloc
    userinfo = user or ""
    if password is not None:
        userinfo += f":{password}"
    return f"{userinfo}@{netloc}"
