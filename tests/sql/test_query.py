"""``:name`` translation to driver parameter styles (aiodatabases._query)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiodatabases._query import CompiledQuery, ParamStyle, compile_query
from aiodatabases.exceptions import MissingParameterError, UnknownParameterError

STYLES: tuple[ParamStyle, ...] = ("numeric_dollar", "qmark", "format")


def qmark(sql: str) -> tuple[str, tuple[str, ...]]:
    compiled = compile_query(sql, "qmark")
    return compiled.sql, compiled.names


# --- what is a parameter -------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected_sql", "expected_names"),
    [
        ("SELECT :a", "SELECT ?", ("a",)),
        ("WHERE id=:id AND x=(:_x1)", "WHERE id=? AND x=(?)", ("id", "_x1")),
        ("VALUES (:a,:b)", "VALUES (?,?)", ("a", "b")),
        ("SELECT :a, :b, :a", "SELECT ?, ?, ?", ("a", "b", "a")),
        (":first", "?", ("first",)),
        ("SELECT :Mixed_Case9", "SELECT ?", ("Mixed_Case9",)),
        # casts
        ("SELECT x::int", "SELECT x::int", ()),
        ("SELECT :x::int", "SELECT ?::int", ("x",)),
        ("SELECT (:x)::text[]", "SELECT (?)::text[]", ("x",)),
        ("SELECT '1'::int", "SELECT '1'::int", ()),
        # a colon after a word character: slices and the like
        ("SELECT arr[lo:hi]", "SELECT arr[lo:hi]", ()),
        ("SELECT arr[1:2]", "SELECT arr[1:2]", ()),
        ("SELECT arr[:hi]", "SELECT arr[?]", ("hi",)),
        # no identifier after the colon
        ("SELECT :1, : a, :", "SELECT :1, : a, :", ()),
        ("SELECT :-x", "SELECT :-x", ()),
    ],
)
def test_what_is_a_parameter(sql: str, expected_sql: str, expected_names: tuple[str, ...]) -> None:
    assert qmark(sql) == (expected_sql, expected_names)


def test_escaped_colon_is_literal_without_its_backslash() -> None:
    assert qmark(r"SELECT '{}'::json->>'a', \:name, :v") == (
        "SELECT '{}'::json->>'a', :name, ?",
        ("v",),
    )


def test_backslash_not_before_colon_is_kept() -> None:
    assert qmark(r"SELECT a \ b, :x") == (r"SELECT a \ b, ?", ("x",))


# --- what is not code ----------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    [
        "'it''s :x'",
        "'a:b'",
        "''",
        "'\\'",  # standard string: the backslash is just a character
        "E'\\' :x'",
        "e'\\\\' ",  # an E-string holding one backslash, then a space
        "E'it''s :x'",
        '"a "" :b"',
        "`a:b`",
        "`a `` :b`",
        "-- :x ' \" $$ /*\n",
        "/* :x */",
        "/* :x /* nested :y */ still :z */",
        "/* '' -- */",
        "$$ :x ' \" -- $$",
        "$tag$ :x $$ $other$ $tag$",
        "$_t1$ :x $_t1$",
    ],
)
def test_literals_are_copied_verbatim(literal: str) -> None:
    sql = f"SELECT {literal} :after"
    assert qmark(sql) == (f"SELECT {literal} ?", ("after",))


@pytest.mark.parametrize(
    "literal",
    ["'it\\'s :x'", "'a\\\\' ", '"say \\" :x"', "'\\\\\\' :x'", "'it''s \\n :x'"],
)
def test_mysql_strings_take_backslash_escapes(literal: str) -> None:
    # MySQL (without NO_BACKSLASH_ESCAPES) reads \' inside '...' and "..." as a
    # quote: the :x after it is still inside the string.
    compiled = compile_query(f"SELECT {literal} :after", "format")
    assert compiled.sql == f"SELECT {literal} %s"
    assert compiled.names == ("after",)


def test_standard_strings_take_no_backslash_escapes() -> None:
    # PostgreSQL and SQLite: a backslash is a character, the string ends at the quote.
    for style in ("numeric_dollar", "qmark"):
        assert compile_query("SELECT 'it\\' :x", style).names == ("x",)


def test_e_prefix_only_counts_as_its_own_word() -> None:
    # In `name'...'` the E ends an identifier: a standard string follows,
    # where a backslash escapes nothing.
    assert qmark("SELECT nameE'\\' :x")[1] == ("x",)
    assert qmark("SELECT E'\\' :x'")[1] == ()


def test_line_comment_ends_at_newline() -> None:
    assert qmark("SELECT 1 -- :x\nWHERE a = :y") == ("SELECT 1 -- :x\nWHERE a = ?", ("y",))


def test_a_single_minus_or_slash_is_code() -> None:
    assert qmark("SELECT -:a / :b - 1") == ("SELECT -? / ? - 1", ("a", "b"))


def test_dollar_numbers_are_not_dollar_quotes() -> None:
    assert qmark("SELECT $1, :a, $2") == ("SELECT $1, ?, $2", ("a",))


def test_dollar_quote_ends_right_after_its_closing_tag() -> None:
    # After $$a$$ comes `x$`, a name ending in $, not a new $x$ opener.
    assert qmark("SELECT $$a$$x$ :y") == ("SELECT $$a$$x$ ?", ("y",))


def test_dollar_inside_identifier_does_not_open_a_quote() -> None:
    # PostgreSQL identifiers may contain $: a$$ is a name, :x a parameter.
    assert qmark("SELECT a$$ :x") == ("SELECT a$$ ?", ("x",))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'open :x",
        "SELECT E'open \\' :x",
        'SELECT "open :x',
        "SELECT `open :x",
        "SELECT 1 -- :x",
        "SELECT /* open :x",
        "SELECT /* a /* b */ :x",
        "SELECT $$ open :x",
        "SELECT $t$ open :x $$",
        "SELECT E'trailing backslash \\",
    ],
)
def test_unterminated_token_takes_the_rest(sql: str) -> None:
    assert qmark(sql) == (sql, ())


# --- output per style ----------------------------------------------------------


def test_numeric_dollar_numbers_each_name_once() -> None:
    compiled = compile_query("SELECT :a, :b, :a, :c, :b", "numeric_dollar")
    assert compiled.sql == "SELECT $1, $2, $1, $3, $2"
    assert compiled.names == ("a", "b", "c")


def test_format_uses_percent_s_and_doubles_every_literal_percent() -> None:
    sql = "SELECT 100 % 7, :a, '50%' /* 1% */ -- %s\n, `a%b` LIKE :b"
    compiled = compile_query(sql, "format")
    assert compiled.sql == "SELECT 100 %% 7, %s, '50%%' /* 1%% */ -- %%s\n, `a%%b` LIKE %s"
    assert compiled.names == ("a", "b")
    # What a MySQL driver does with it: %-formatting with the args tuple.
    assert compiled.sql % ("A", "B") == sql.replace(":a", "A").replace(":b", "B")


def test_percent_is_untouched_in_other_styles() -> None:
    for style in ("qmark", "numeric_dollar"):
        assert compile_query("SELECT '5%', 5 % 2", style).sql == "SELECT '5%', 5 % 2"


def test_unknown_style_is_rejected() -> None:
    with pytest.raises(ValueError, match="pyformat"):
        compile_query("SELECT 1", "pyformat")  # type: ignore[arg-type]


# --- caching -------------------------------------------------------------------


def test_same_sql_and_style_returns_the_same_object() -> None:
    sql = "SELECT :a FROM t WHERE b = :b"
    equal_copy = "".join(list(sql))  # equal, but not the same str object
    assert compile_query(sql, "qmark") is compile_query(equal_copy, "qmark")


def test_each_style_is_cached_separately() -> None:
    sql = "SELECT :a"
    results = {style: compile_query(sql, style) for style in STYLES}
    assert [results[style].sql for style in STYLES] == ["SELECT $1", "SELECT ?", "SELECT %s"]


def test_compiled_query_is_immutable() -> None:
    compiled = compile_query("SELECT :a", "qmark")
    with pytest.raises(dataclasses.FrozenInstanceError):
        compiled.sql = "DROP TABLE t"  # type: ignore[misc]


# --- binding -------------------------------------------------------------------


def test_bind_orders_values_by_slot() -> None:
    compiled = compile_query("SELECT :b, :a, :b", "qmark")
    assert compiled.bind({"a": 1, "b": 2}) == (2, 1, 2)


def test_bind_numeric_dollar_gives_each_name_once() -> None:
    compiled = compile_query("SELECT :b, :a, :b", "numeric_dollar")
    assert compiled.bind({"a": 1, "b": 2}) == (2, 1)


def test_bind_keeps_the_value_objects() -> None:
    value = object()
    assert compile_query("SELECT :v", "qmark").bind({"v": value})[0] is value


def test_bind_accepts_any_mapping() -> None:
    compiled = compile_query("SELECT :a", "format")
    assert compiled.bind(MappingProxyType({"a": None})) == (None,)


@pytest.mark.parametrize("values", [None, {}])
def test_bind_without_parameters(values: dict[str, object] | None) -> None:
    assert compile_query("SELECT 1", "qmark").bind(values) == ()


def test_missing_parameter_is_named() -> None:
    compiled = compile_query("SELECT * FROM t WHERE user_id = :user_id", "numeric_dollar")
    with pytest.raises(MissingParameterError) as info:
        compiled.bind({"id": 1, "name": "x"})
    assert str(info.value) == (
        "query parameter ':user_id' has no value; values given: ['id', 'name']"
    )
    assert isinstance(info.value, KeyError)  # as `databases` users may catch


def test_every_missing_parameter_is_named_once() -> None:
    compiled = compile_query("SELECT :a, :b, :c, :a", "qmark")
    with pytest.raises(MissingParameterError, match=r"':a', ':c' have no value"):
        compiled.bind({"b": 1})


@pytest.mark.parametrize("values", [None, {}])
def test_no_values_for_a_query_with_parameters(values: dict[str, object] | None) -> None:
    with pytest.raises(MissingParameterError, match=r"':a' has no value; values given: \[\]"):
        compile_query("SELECT :a", "qmark").bind(values)


def test_unknown_parameter_is_named() -> None:
    compiled = compile_query("SELECT :name", "qmark")
    with pytest.raises(UnknownParameterError) as info:
        compiled.bind({"name": 1, "nmae": 2})
    message = str(info.value)
    assert "':nmae'" in message
    assert "['name']" in message


@pytest.mark.parametrize("name", ["é", "naïve", "Ωμέγα", "名前", "_ü1"])
def test_unicode_names_are_parameters(name: str) -> None:
    # As in databases (SQLAlchemy's text() takes any word): a letter or
    # underscore of any script, then word characters.
    compiled = compile_query(f"SELECT :{name}, x::{name}, a:{name}", "qmark")
    assert compiled.sql == f"SELECT ?, x::{name}, a:{name}"
    assert compiled.bind({name: 1}) == (1,)


@pytest.mark.parametrize("key", ["1", "a-b", "", "x y"])
def test_a_value_for_what_cannot_be_a_name_says_so(key: str) -> None:
    with pytest.raises(UnknownParameterError) as info:
        compile_query("SELECT :1, :a-b", "qmark").bind({"a": 1, key: 2})
    message = str(info.value)
    assert f"':{key}'" in message
    assert "cannot be a parameter name" in message
    assert "['a']" in message


def test_unknown_parameter_for_a_query_without_any() -> None:
    with pytest.raises(UnknownParameterError, match="':x'"):
        compile_query("SELECT 1", "numeric_dollar").bind({"x": 1})


def test_error_messages_never_show_values() -> None:
    compiled = compile_query("SELECT :a", "qmark")
    with pytest.raises(UnknownParameterError) as info:
        compiled.bind({"a": "hunter2", "b": "s3cret"})
    assert "hunter2" not in str(info.value)
    assert "s3cret" not in str(info.value)


# --- properties ----------------------------------------------------------------
#
# SQL is generated as segments joined by spaces (so no two segments fuse into
# another token). Each segment knows its expected output; a parameter's output
# depends on the style.


@dataclass(frozen=True)
class Text:
    source: str
    output: str


@dataclass(frozen=True)
class Param:
    name: str
    cast: str  # "" or "::type", written right after the name


Segment = Text | Param

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)
# Text that looks like parameters, quotes and comment openers, to tempt the
# scanner inside tokens where none of it means anything.
TEMPTING = [":x", ":name", "::int", " ", "a", "%", "%s", "?", "$1", "\n"]


def verbatim(source: str) -> Text:
    return Text(source, source)


def body(pieces: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=6).map("".join)


words = st.sampled_from(["SELECT", "FROM t", "WHERE", "x", "=", "(", ")", ",", "1", "5 % 2", "*"])
casts = st.sampled_from(["x::int", "'1'::text", "::jsonb", "arr[lo:hi]", ":1", "a::b::c"])
# A backslash only as \\ or \\n: the same token whether it escapes (MySQL) or not.
single_quoted = body([*TEMPTING, "''", '"', "`", "--", "/*", "\\\\", "\\n"]).map(lambda s: f"'{s}'")
e_strings = body([*TEMPTING, "''", "\\'", "\\\\", '"']).map(lambda s: f"E'{s}'")
double_quoted = body([*TEMPTING, '""', "'", "--", "/*"]).map(lambda s: f'"{s}"')
backticked = body([*TEMPTING, "``", "'", '"']).map(lambda s: f"`{s}`")
line_comments = body([*TEMPTING[:-1], "'", '"', "/*", "$$"]).map(lambda s: f"--{s}\n")
block_comments = st.recursive(
    body([*TEMPTING, "'", '"', "--", "$$"]).map(lambda s: f"/*{s}*/"),
    lambda inner: st.lists(st.one_of(inner, body([":x", " ", "'"])), max_size=3).map(
        lambda parts: "/*" + "".join(parts) + "*/"
    ),
    max_leaves=4,
)
dollar_quoted = st.tuples(st.one_of(st.just(""), identifiers), body([*TEMPTING, "'", '"'])).map(
    lambda tag_body: f"${tag_body[0]}${tag_body[1]}${tag_body[0]}$"
)
escaped_colons = identifiers.map(lambda name: Text(f"\\:{name}", f":{name}"))

literal_segments = st.one_of(
    words, casts, single_quoted, e_strings, double_quoted, backticked,
    line_comments, block_comments, dollar_quoted,
).map(verbatim)  # fmt: skip


@st.composite
def segment_lists(draw: st.DrawFn) -> list[Segment]:
    # A small pool of names, so that names repeat as they do in real SQL.
    pool = draw(st.lists(identifiers, min_size=1, max_size=4, unique=True))
    params = st.builds(Param, st.sampled_from(pool), st.sampled_from(["", "::int", "::text[]"]))
    return draw(st.lists(st.one_of(literal_segments, escaped_colons, params), max_size=12))


def assemble(segments: list[Segment]) -> str:
    return " ".join(s.source if isinstance(s, Text) else f":{s.name}{s.cast}" for s in segments)


def expected_sql(segments: list[Segment], style: ParamStyle) -> str:
    numbers: dict[str, int] = {}
    out = []
    for segment in segments:
        if isinstance(segment, Text):
            text = segment.output
            out.append(text.replace("%", "%%") if style == "format" else text)
            continue
        if style == "numeric_dollar":
            mark = f"${numbers.setdefault(segment.name, len(numbers) + 1)}"
        else:
            mark = "?" if style == "qmark" else "%s"
        out.append(mark + segment.cast)
    return " ".join(out)


def param_names(segments: list[Segment]) -> list[str]:
    return [s.name for s in segments if isinstance(s, Param)]


@settings(max_examples=150, deadline=None)
@given(segment_lists(), st.sampled_from(STYLES))
def test_generated_sql_translates_exactly(segments: list[Segment], style: ParamStyle) -> None:
    compiled = compile_query(assemble(segments), style)
    names = param_names(segments)
    if style == "numeric_dollar":
        names = list(dict.fromkeys(names))
    assert list(compiled.names) == names
    assert compiled.sql == expected_sql(segments, style)


@settings(max_examples=100, deadline=None)
@given(segment_lists(), st.sampled_from(STYLES))
def test_binding_puts_each_value_in_its_slot(segments: list[Segment], style: ParamStyle) -> None:
    compiled = compile_query(assemble(segments), style)
    values = {name: f"value of {name}" for name in param_names(segments)}
    args = compiled.bind(values)
    occurrences = param_names(segments)
    if style == "numeric_dollar":
        occurrences = list(dict.fromkeys(occurrences))
    assert args == tuple(f"value of {name}" for name in occurrences)


# --- binding many (execute_many) ---------------------------------------------------


@pytest.mark.parametrize("sql", ["SELECT 1", "SELECT :a", "SELECT :b, :a, :b"])
@pytest.mark.parametrize("style", STYLES)
def test_bind_many_is_bind_for_each(sql: str, style: ParamStyle) -> None:
    compiled = compile_query(sql, style)
    names = set(compiled.names)
    rows = [{name: f"{name}{i}" for name in names} for i in range(3)]
    assert compiled.bind_many(rows) == [compiled.bind(row) for row in rows]
    assert compiled.bind_many(iter(rows)) == [compiled.bind(row) for row in rows]
    assert compiled.bind_many([]) == []


def test_bind_many_accepts_any_mapping() -> None:
    compiled = compile_query("SELECT :a, :b", "qmark")
    rows = [MappingProxyType({"a": 1, "b": 2}), {"b": 4, "a": 3}]
    assert compiled.bind_many(rows) == [(1, 2), (3, 4)]


def test_bind_many_names_a_missing_parameter_of_any_row() -> None:
    compiled = compile_query("SELECT :a, :b", "qmark")
    with pytest.raises(MissingParameterError, match=r"':b' has no value; values given: \['a'\]"):
        compiled.bind_many([{"a": 1, "b": 2}, {"a": 1}])


def test_bind_many_names_an_unknown_value_of_any_row() -> None:
    compiled = compile_query("SELECT :a, :b", "qmark")
    with pytest.raises(UnknownParameterError, match="':c'"):
        compiled.bind_many([{"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}])


def test_bind_many_refuses_a_row_that_is_not_a_mapping_as_bind_does() -> None:
    compiled = compile_query("SELECT :a, :b", "qmark")
    with pytest.raises(MissingParameterError):
        compiled.bind_many([{"a": 1, "b": 2}, None])
    with pytest.raises(TypeError):
        compiled.bind_many([{"a": 1, "b": 2}, [1, 2]])  # type: ignore[list-item]


@settings(max_examples=50, deadline=None)
@given(segment_lists(), st.sampled_from(STYLES))
def test_translation_is_deterministic_and_cached(
    segments: list[Segment], style: ParamStyle
) -> None:
    sql = assemble(segments)
    first = compile_query(sql, style)
    again = compile_query("".join(list(sql)), style)
    assert again is first
    assert isinstance(first, CompiledQuery)


# Arbitrary text over the characters the scanner cares about: it never raises,
# and putting ":name" back into the placeholders gives the input again.
scanner_soup = st.text(st.sampled_from(list(":'\"`$/*-\nEe_ax1%; ")), max_size=40)


@settings(max_examples=200, deadline=None)
@given(scanner_soup)
def test_any_text_round_trips_through_qmark(sql: str) -> None:
    compiled = compile_query(sql, "qmark")
    pieces = compiled.sql.split("?")  # the soup holds no '?' of its own
    assert len(pieces) == len(compiled.names) + 1
    pairs = zip(compiled.names, pieces[1:], strict=True)
    rebuilt = pieces[0] + "".join(f":{name}{piece}" for name, piece in pairs)
    assert rebuilt == sql


@settings(max_examples=200, deadline=None)
@given(scanner_soup)
def test_any_text_survives_percent_formatting(sql: str) -> None:
    compiled = compile_query(sql, "format")
    assert compiled.sql % tuple(f":{name}" for name in compiled.names) == sql
