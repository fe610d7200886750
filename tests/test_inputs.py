"""assetry.inputs: the checks every public entry point applies, proved over generated
inputs (anything is either accepted unchanged or refused with a typed assetry error, never
a driver's or Python's OverflowError)."""

from __future__ import annotations

import datetime as dt

import pytest
from assetry.backend import ANY_VERSION, EventQuery, NewEvent, StoreWrite
from assetry.errors import AssetryError, AssetTypeError, AssetValueError
from assetry.inputs import (
    MAX_ALIASES,
    MAX_ALIASES_BYTES,
    MAX_ID,
    MAX_SOURCE_ID_LENGTH,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    check_aliases,
    check_id,
    check_source_id,
    check_text,
    check_timestamp,
)
from assetry.models import MAX_NAME_LENGTH, AssetAlias
from hypothesis import given, settings
from hypothesis import strategies as st

_ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(),
    st.lists(st.integers(), max_size=3),
    st.datetimes(),
)


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


@given(st.text(alphabet=st.characters(codec=None), max_size=40), st.integers(0, 50))
def test_check_text_accepts_exactly_storable_text_within_length(text: str, limit: int) -> None:
    ok = _storable(text) and len(text) <= limit
    if ok:
        assert check_text(text, "x", max_length=limit) == text
    else:
        with pytest.raises(AssetValueError):
            check_text(text, "x", max_length=limit)


@given(_ANYTHING.filter(lambda v: not isinstance(v, str) and v is not None))
def test_check_source_id_refuses_every_non_str(value: object) -> None:
    with pytest.raises(AssetTypeError):
        check_source_id(value, "source_run_id")


def test_check_source_id_bounds() -> None:
    assert check_source_id(None, "source_run_id") is None
    assert check_source_id("r" * MAX_SOURCE_ID_LENGTH, "x") == "r" * MAX_SOURCE_ID_LENGTH
    with pytest.raises(AssetValueError, match="at most 1024"):
        check_source_id("r" * (MAX_SOURCE_ID_LENGTH + 1), "x")


@given(st.integers())
def test_check_id_accepts_exactly_the_signed_64_bit_range(value: int) -> None:
    if 0 <= value <= MAX_ID:
        assert check_id(value, "after") == value
    else:
        with pytest.raises(AssetValueError):
            check_id(value, "after")


@given(st.one_of(st.booleans(), st.floats(), st.text(), st.binary(), st.datetimes()))
def test_check_id_refuses_bools_and_non_ints(value: object) -> None:
    with pytest.raises(AssetTypeError):
        check_id(value, "limit")


def test_check_id_edges() -> None:
    assert check_id(None, "x") is None
    assert check_id(MAX_ID, "x") == MAX_ID
    assert check_id(1, "x", minimum=1) == 1
    with pytest.raises(AssetValueError):
        check_id(0, "page_size", minimum=1)
    with pytest.raises(AssetValueError):
        check_id(2**63, "x")


_OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


@given(st.datetimes(timezones=_OFFSETS))
def test_check_timestamp_never_overflows(value: dt.datetime) -> None:
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        utc = None
    if utc is not None and MIN_TIMESTAMP <= utc <= MAX_TIMESTAMP:
        checked = check_timestamp(value, "timestamp")
        assert checked == value
        assert checked is not None and checked.utcoffset() == dt.timedelta(0)
    else:
        with pytest.raises(AssetValueError, match="between"):
            check_timestamp(value, "timestamp")


@given(st.datetimes())
def test_check_timestamp_refuses_naive_datetimes(value: dt.datetime) -> None:
    with pytest.raises(AssetValueError, match="timezone-aware"):
        check_timestamp(value, "timestamp")


@given(st.one_of(st.dates(), st.integers(), st.text(), st.floats()))
def test_check_timestamp_refuses_non_datetimes(value: object) -> None:
    if isinstance(value, dt.datetime):
        return
    with pytest.raises(AssetTypeError):
        check_timestamp(value, "since")


@given(st.text(max_size=10))
def test_a_str_is_never_a_list_of_aliases(text: str) -> None:
    with pytest.raises(AssetTypeError, match="single str"):
        check_aliases(text)
    with pytest.raises(AssetTypeError):
        NewEvent("a", aliases=text)  # type: ignore[arg-type]


_ALIAS_NAMES = st.text(
    alphabet=st.characters(min_codepoint=32, exclude_characters="\x7f"), min_size=1, max_size=30
).filter(lambda s: s.strip() != "" and _storable(s))


@given(st.lists(_ALIAS_NAMES, max_size=MAX_ALIASES))
def test_check_aliases_keeps_valid_names_in_order(names: list[str]) -> None:
    assert check_aliases(names) == tuple(names)
    assert check_aliases(AssetAlias(n) for n in names) == tuple(names)


def test_check_aliases_limits() -> None:
    with pytest.raises(AssetValueError, match=f"at most {MAX_ALIASES}"):
        check_aliases([f"a{i}" for i in range(MAX_ALIASES + 1)])
    long = "x" * MAX_NAME_LENGTH
    assert check_aliases([long]) == (long,)
    with pytest.raises(AssetValueError, match="at most"):
        check_aliases([long + "x"])
    with pytest.raises(AssetValueError, match="bytes"):
        count = MAX_ALIASES_BYTES // MAX_NAME_LENGTH + 1
        check_aliases([f"{i:03d}{long}"[:MAX_NAME_LENGTH] for i in range(count)])
    for bad in (["", "a"], [" "], ["a\nb"], ["\ud800"]):
        with pytest.raises(AssetValueError):
            check_aliases(bad)
    with pytest.raises(AssetTypeError):
        check_aliases([1])
    with pytest.raises(AssetTypeError):
        check_aliases(5)


@settings(max_examples=200)
@given(
    source=_ANYTHING,
    aliases=_ANYTHING,
    timestamp=st.one_of(st.none(), st.datetimes(), st.datetimes(timezones=_OFFSETS)),
)
def test_new_event_is_built_or_refused_with_a_typed_error(
    source: object, aliases: object, timestamp: dt.datetime | None
) -> None:
    try:
        event = NewEvent("a", source_run_id=source, aliases=aliases, timestamp=timestamp)  # type: ignore[arg-type]
    except AssetryError as exc:
        assert isinstance(exc, TypeError | ValueError)
    else:
        assert type(event.aliases) is tuple
        assert event.timestamp is None or event.timestamp.utcoffset() == dt.timedelta(0)


@settings(max_examples=200)
@given(after=_ANYTHING, before=_ANYTHING, limit=_ANYTHING, since=_ANYTHING)
def test_event_query_is_built_or_refused_with_a_typed_error(
    after: object, before: object, limit: object, since: object
) -> None:
    try:
        EventQuery("a", after=after, before=before, limit=limit, since=since)  # type: ignore[arg-type]
    except AssetryError as exc:
        assert isinstance(exc, TypeError | ValueError)


def test_store_write_checks_its_expected_version() -> None:
    assert StoreWrite("a", "k", "1").expected_version is ANY_VERSION
    assert StoreWrite("a", "k", "1", expected_version=None).expected_version is None
    assert StoreWrite("a", "k", "1", expected_version=MAX_ID).expected_version == MAX_ID
    with pytest.raises(AssetValueError):
        StoreWrite("a", "k", "1", expected_version=2**63)
    with pytest.raises(AssetTypeError):
        StoreWrite("a", "k", "1", expected_version=True)


def test_the_http_api_edge_uses_the_same_limits() -> None:
    schemas = pytest.importorskip("assetry.server.schemas")
    assert schemas.MAX_ID == MAX_ID
    assert schemas.MAX_SOURCE_ID_LENGTH == MAX_SOURCE_ID_LENGTH
    assert schemas.MAX_ALIASES == MAX_ALIASES
    assert schemas.MAX_ALIASES_BYTES == MAX_ALIASES_BYTES
