"""Translate raw SQL with ``:name`` parameters into a driver's parameter style.

Raw SQL is written once with named parameters (``WHERE id = :id``) and runs on
drivers that only take positional ones: asyncpg (``$1``), sqlite3 (``?``),
the MySQL drivers and psycopg (``%s``). :func:`compile_query` does the translation with a
small scanner that knows which parts of SQL are not code (strings, quoted
identifiers, comments, dollar quotes; for MySQL's ``%s`` style, strings
where a backslash escapes the next character), so a ``:word`` inside them
is left alone. Each distinct ``(sql, style)`` is translated once and cached; the
cached :class:`CompiledQuery` then turns a values mapping into the positional
tuple the driver wants. Values are never formatted into the SQL text.

What counts as a parameter: ``:`` then a name (a letter of any script or
``_``, then letters, digits or ``_``: ``:id``, ``:é``, as in ``databases``), where the
``:`` does not follow a word character, another ``:`` or a backslash, and is
not itself followed by ``:``. So ``x::int`` is a cast, ``arr[lo:hi]`` a slice
and ``:1`` nothing, while ``:x::int`` binds ``x`` and casts it. ``\\:name``
is a literal ``:name`` (the backslash is dropped, as SQLAlchemy's ``text()``
does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any, Literal, TypeAlias

from .exceptions import MissingParameterError, UnknownParameterError

__all__ = ["CompiledQuery", "ParamStyle", "compile_query"]

ParamStyle: TypeAlias = Literal["numeric_dollar", "qmark", "format", "format_pg"]
"""``$1`` (asyncpg), ``?`` (sqlite3), ``%s`` (MySQL drivers: a backslash in a
string escapes the next character), ``%s`` read with PostgreSQL's strings
(``format_pg``, psycopg: a backslash is a plain character except in ``E'...'``)."""

_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """One SQL text in a driver's style, and how to bind values to it."""

    sql: str
    """The SQL in the driver's parameter style."""
    names: tuple[str, ...]
    """The parameter name for each positional slot, in order."""
    # Precomputed so that bind() can detect unused values with one len().
    _unique: frozenset[str] = field(init=False, repr=False, compare=False)
    # Takes a mapping's values in slot order as a tuple (itemgetter: in C).
    _take: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_unique", frozenset(self.names))
        object.__setattr__(self, "_take", _taker(self.names))

    def bind(self, values: Mapping[str, Any] | None) -> tuple[Any, ...]:
        """Return the positional arguments for ``values``.

        Raises ``MissingParameterError`` if a parameter has no value and
        ``UnknownParameterError`` if a value names no parameter (a typo that
        would otherwise go unnoticed). Messages name keys, never values,
        which may be secrets.
        """
        if values is None:
            values = {}
        try:
            args = self._take(values)
        except KeyError:
            raise self._missing_error(values) from None
        # Every name was found, so a longer mapping must hold extra keys.
        if len(values) > len(self._unique):
            raise self._unknown_error(values)
        return args

    def bind_many(self, values_list: Iterable[Mapping[str, Any] | None]) -> list[tuple[Any, ...]]:
        """``bind()`` for each mapping, checked the same way, as one list."""
        take = self._take
        values_list = values_list if isinstance(values_list, (list, tuple)) else list(values_list)
        unique = len(self._unique)
        try:
            # map() keeps both passes in C: 5,000 rows bind in well under a millisecond.
            args: list[tuple[Any, ...]] = list(map(take, values_list))
            if not values_list or max(map(len, values_list)) <= unique:
                return args
        except (KeyError, TypeError):
            pass
        # Some mapping is wrong (or not a mapping): bind() says which and how.
        return [self.bind(values) for values in values_list]

    def _missing_error(self, values: Mapping[str, Any]) -> MissingParameterError:
        missing = [name for name in dict.fromkeys(self.names) if name not in values]
        listing = ", ".join(f"':{name}'" for name in missing)
        if len(missing) == 1:
            problem = f"query parameter {listing} has no value"
        else:
            problem = f"query parameters {listing} have no value"
        return MissingParameterError(f"{problem}; values given: {list(values)}")

    def _unknown_error(self, values: Mapping[str, Any]) -> UnknownParameterError:
        unknown = [key for key in values if key not in self._unique]
        listing = ", ".join(f"':{key}'" for key in unknown)
        used = list(dict.fromkeys(self.names))
        message = f"value given for {listing}, which the query does not use"
        odd = [f"':{key}'" for key in unknown if not _is_name(key)]
        if odd:
            message += (
                f" ({', '.join(odd)} cannot be a parameter name: a name is a letter or '_' "
                "then letters, digits or '_'; ':1' or ':a-b' in SQL is not a parameter, "
                "or is ':a' then '-b')"
            )
        return UnknownParameterError(f"{message}; query parameters: {used}")


def _is_name(key: object) -> bool:
    return isinstance(key, str) and _NAME.fullmatch(key) is not None


def _taker(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(names) > 1:
        return itemgetter(*names)  # several names: a tuple
    if names:
        name = names[0]
        return lambda values: (values[name],)  # itemgetter would give the bare value
    return lambda values: ()


@lru_cache(maxsize=_CACHE_SIZE)
def compile_query(sql: str, style: ParamStyle) -> CompiledQuery:
    """Translate ``sql`` to ``style``; cached per distinct ``(sql, style)``.

    Unterminated strings or comments do not raise here: the rest of the text
    is taken as that token and the server reports the syntax error.
    """
    # lru_cache (C implemented, thread safe) keeps the hit path to one
    # dict lookup and no frame of ours; the bound keeps generated SQL from
    # growing memory forever.
    texts, names = _Scanner(sql, _MYSQL_SKIP if style == "format" else _SKIP).run()
    return _render(texts, names, style)


def _render(texts: list[str], names: list[str], style: ParamStyle) -> CompiledQuery:
    """Join the literal ``texts`` with one placeholder per name."""
    if style == "numeric_dollar":
        # asyncpg numbers values, so a name used twice reuses its number.
        numbers: dict[str, int] = {}
        marks = [f"${numbers.setdefault(name, len(numbers) + 1)}" for name in names]
        return CompiledQuery(_interleave(texts, marks), tuple(numbers))
    if style == "qmark":
        return CompiledQuery(_interleave(texts, ["?"] * len(names)), tuple(names))
    if style in ("format", "format_pg"):
        # The drivers read ``%`` in the whole text (the MySQL drivers apply
        # ``sql % args``, psycopg turns ``%%`` into ``%`` wherever it is, as
        # we always pass an args tuple), so every literal % must be doubled,
        # even in strings.
        texts = [text.replace("%", "%%") for text in texts]
        return CompiledQuery(_interleave(texts, ["%s"] * len(names)), tuple(names))
    raise ValueError(f"unknown parameter style {style!r}")


def _interleave(texts: list[str], marks: list[str]) -> str:
    parts = [texts[0]]
    for mark, text in zip(marks, texts[1:], strict=True):
        parts += (mark, text)
    return "".join(parts)


# --- the scanner -------------------------------------------------------------
# (MySQL, the "format" style, reads a backslash in '...' and "..." as an
# escape, as its default sql_mode does: 'it\'s :x' is one string.)

# Characters that may start something other than plain SQL text; everything
# between them is copied without looking at it one character at a time.
_SPECIAL = re.compile(r"[:\\'\"`$/-]")
# A letter (any script) or "_", then word characters: what SQLAlchemy's text()
# binds, except that a name never starts with a digit (:1 is left alone).
_NAME = re.compile(r"[^\W\d]\w*")
# A dollar-quote opener: $$ or $tag$; the tag cannot start with a digit, which
# is what keeps $1 (a positional parameter) from opening one.
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_COMMENT_MARK = re.compile(r"/\*|\*/")
# Body of an E'...' string: backslash escapes anything, '' is a quote.
_ESCAPE_STRING_BODY = re.compile(r"(?:[^'\\]|\\.|'')*'?", re.DOTALL)


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


class _Scanner:
    """Split SQL into literal texts and the parameter names between them."""

    def __init__(self, sql: str, skips: Mapping[str, Callable[[str, int], int]]) -> None:
        self.sql = sql
        self.skips = skips
        self.texts: list[str] = []  # always len(names) + 1 once run() ends
        self.names: list[str] = []
        self.chunks: list[str] = []  # pieces of the text being collected
        self.start = 0  # where the not yet collected literal text begins

    def run(self) -> tuple[list[str], list[str]]:
        sql, pos = self.sql, 0
        while (match := _SPECIAL.search(sql, pos)) is not None:
            pos = match.start()
            char = sql[pos]
            if char == ":":
                pos = self._colon(pos)
            elif char == "\\":
                pos = self._backslash(pos)
            else:
                pos = self.skips[char](sql, pos)
        self.chunks.append(sql[self.start :])
        self.texts.append("".join(self.chunks))
        return self.texts, self.names

    def _colon(self, pos: int) -> int:
        name = _param_name(self.sql, pos)
        if name is None:
            return pos + 1
        self.chunks.append(self.sql[self.start : pos])
        self.texts.append("".join(self.chunks))
        self.chunks = []
        self.names.append(name)
        self.start = pos + 1 + len(name)
        return self.start

    def _backslash(self, pos: int) -> int:
        if not self.sql.startswith(":", pos + 1):
            return pos + 1
        # \:name is an escaped colon: keep the text, drop the backslash, and
        # step over the colon so it is never read as a parameter.
        self.chunks.append(self.sql[self.start : pos])
        self.start = pos + 1
        return pos + 2


def _param_name(sql: str, pos: int) -> str | None:
    """The name of the parameter whose ``:`` is at ``pos``, if it is one."""
    if pos > 0 and (_is_word(sql[pos - 1]) or sql[pos - 1] == ":"):
        return None  # arr[lo:hi], x::int (second colon)
    match = _NAME.match(sql, pos + 1)
    return match.group() if match else None


# Each function gets the SQL and the index of a special character and returns
# the index just past the token it starts (or pos + 1 if it starts none).
# Running off the end means an unterminated token: it takes the rest.


def _skip_quoted(sql: str, pos: int) -> int:
    """'...', "..." or `...` (where a doubled quote stands for itself)."""
    quote = sql[pos]
    if quote == "'" and _is_escape_string(sql, pos):
        match = _ESCAPE_STRING_BODY.match(sql, pos + 1)
        return match.end() if match else len(sql)
    # A doubled quote needs no special case: 'it''s' scans as 'it' then 's',
    # two tokens with the same boundaries and the same verbatim copy.
    end = sql.find(quote, pos + 1)
    return len(sql) if end == -1 else end + 1


def _is_escape_string(sql: str, pos: int) -> bool:
    """Whether the quote at ``pos`` opens a PostgreSQL E'...' string."""
    if pos == 0 or sql[pos - 1] not in "eE":
        return False
    # The E must be a word on its own: in name'...' it ends an identifier.
    return pos == 1 or not _is_word(sql[pos - 2])


def _skip_line_comment(sql: str, pos: int) -> int:
    if not sql.startswith("--", pos):
        return pos + 1
    end = sql.find("\n", pos)
    return len(sql) if end == -1 else end + 1


def _skip_block_comment(sql: str, pos: int) -> int:
    if not sql.startswith("/*", pos):
        return pos + 1
    # PostgreSQL nests block comments: /* a /* b */ still a comment */.
    depth = 0
    while (match := _COMMENT_MARK.search(sql, pos)) is not None:
        depth += 1 if match.group() == "/*" else -1
        pos = match.end()
        if depth == 0:
            return pos
    return len(sql)


def _skip_dollar_quoted(sql: str, pos: int) -> int:
    # PostgreSQL identifiers may contain $, so a$$ is a name, not an opener.
    if pos > 0 and _is_word(sql[pos - 1]):
        return pos + 1
    match = _DOLLAR_TAG.match(sql, pos)
    if match is None:
        return pos + 1
    end = sql.find(match.group(), match.end())
    return len(sql) if end == -1 else end + len(match.group())


_SKIP: dict[str, Callable[[str, int], int]] = {
    "'": _skip_quoted,
    '"': _skip_quoted,
    "`": _skip_quoted,
    "-": _skip_line_comment,
    "/": _skip_block_comment,
    "$": _skip_dollar_quoted,
}


def _skip_escaped_string(sql: str, pos: int) -> int:
    """MySQL's '...' or "...": a backslash escapes the next character, a doubled quote is one."""
    quote = sql[pos]
    body = _MYSQL_SINGLE_BODY if quote == "'" else _MYSQL_DOUBLE_BODY
    match = body.match(sql, pos + 1)
    return match.end() if match else len(sql)


_MYSQL_SINGLE_BODY = _ESCAPE_STRING_BODY
_MYSQL_DOUBLE_BODY = re.compile(r'(?:[^"\\]|\\.|"")*"?', re.DOTALL)
_MYSQL_SKIP: dict[str, Callable[[str, int], int]] = {
    **_SKIP,
    "'": _skip_escaped_string,
    '"': _skip_escaped_string,
}


# -- statement kind -----------------------------------------------------------------------

_READS = re.compile(
    r"^[\s(]*(?:/\*.*?\*/[\s(]*|--[^\n]*\n[\s(]*)*(select|values|show|table|with|fetch)\b",
    re.I | re.S,
)
_WRITES = re.compile(r"\b(insert|update|delete|merge|into|call|do|copy|nextval|setval)\b", re.I)


@lru_cache(maxsize=_CACHE_SIZE)
def is_read_only(sql: str) -> bool:
    """Whether ``sql`` surely writes nothing; when unsure, it counts as a write.

    Used where a wrong "read" would be costly and a wrong "write" only costs a
    round trip: the force_rollback statement guard and SQLite interrupts.
    """
    return bool(_READS.match(sql)) and not _WRITES.search(sql)


#: Reads that must run where the writes are: row locks, advisory and named locks.
_LOCKS = re.compile(
    r"\bfor\s+(?:update|share|no\s+key\s+update|key\s+share)\b|\block\s+in\s+share\s+mode\b"
    r"|advisory|\b(?:get|release|release_all)_lock\b",
    re.I,
)


@lru_cache(maxsize=_CACHE_SIZE)
def is_replica_read(sql: str) -> bool:
    """Whether ``sql`` may run on a read replica: surely read-only, and takes no lock
    (``FOR UPDATE``, an advisory lock) that only means something on the primary."""
    return is_read_only(sql) and not _LOCKS.search(sql)


_DDL = re.compile(
    r"^[\s(]*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*(create|alter|drop|truncate|rename)\b(?!\s+temporary\b)",
    re.I | re.S,
)


@lru_cache(maxsize=_CACHE_SIZE)
def is_ddl(sql: str) -> bool:
    """Whether ``sql`` is DDL that MySQL commits implicitly (TEMPORARY tables excepted)."""
    return bool(_DDL.match(sql))
