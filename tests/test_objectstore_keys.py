"""Key encoding of the objectstore backend: injective, confined to the prefix, bounded."""

from __future__ import annotations

import posixpath

import pytest
from assetry.backends.objectstore import Layout, decode_component, encode_component
from assetry.backends.objectstore.keys import MAX_COMPONENT_LENGTH, MAX_PREFIX_BYTES
from hypothesis import given, settings
from hypothesis import strategies as st

PREFIX = "bucket/some/prefix"

# Names as users write them, plus the characters that break naive encodings.
_TRICKY = st.sampled_from(["/", "_", "%", "%2F", "%25", ".", "..", "~", "\\", " ", "é", "É", "🚀"])
names = st.one_of(
    st.text(min_size=1, max_size=40),
    st.lists(st.one_of(_TRICKY, st.text(max_size=3)), min_size=1, max_size=12)
    .map("".join)
    .filter(bool),
    st.text(alphabet="ab/_%.", min_size=1, max_size=8),
    st.text(min_size=100, max_size=600),
)  # text() never draws lone surrogates
partitions = st.none() | names


def _full(key: str) -> str:
    return f"{PREFIX}/{key}"


def _confined(key: str) -> bool:
    full = _full(key)
    segments = full.split("/")
    return (
        posixpath.normpath(full) == full
        and full.startswith(PREFIX + "/")
        and not any(seg in ("", ".", "..") for seg in segments)
        and len(full.encode()) <= 1024
        and all(len(seg.encode()) <= 255 for seg in segments)
    )


@settings(max_examples=400, deadline=None)
@given(names, names)
def test_component_encoding_is_injective(a: str, b: str) -> None:
    assert (encode_component(a) == encode_component(b)) == (a == b)


@settings(max_examples=400, deadline=None)
@given(names)
def test_component_decodes_back_unless_hashed(name: str) -> None:
    component = encode_component(name)
    decoded = decode_component(component)
    if component.startswith("~"):
        assert decoded is None and len(component) == 65
    else:
        assert decoded == name and len(component) <= MAX_COMPONENT_LENGTH


@settings(max_examples=400, deadline=None)
@given(names, partitions, names, names, partitions, names)
def test_store_keys_are_injective_and_confined(
    asset_a: str, part_a: str | None, key_a: str, asset_b: str, part_b: str | None, key_b: str
) -> None:
    first = Layout.store_entry(asset_a, key_a, part_a)
    second = Layout.store_entry(asset_b, key_b, part_b)
    assert _confined(first) and _confined(second)
    assert (first == second) == ((asset_a, part_a, key_a) == (asset_b, part_b, key_b))


@settings(max_examples=300, deadline=None)
@given(names, names, st.integers(min_value=1, max_value=10**19))
def test_every_kind_of_key_is_confined_and_kinds_never_meet(
    name: str, other: str, seq: int
) -> None:
    keys = [
        Layout.asset(name),
        Layout.uri(name),
        Layout.event(name, seq),
        Layout.head(name),
        Layout.alias_marker(name, other),
        Layout.cursor(name),
        Layout.store_entry(name, other, None),
        Layout.store_entry(name, other, other),
    ]
    assert all(_confined(k) for k in keys)
    assert len(set(keys)) == len(keys)
    assert Layout.store_entry(name, other, other).startswith(Layout.store_root(name))
    assert Layout.event(name, seq).startswith(Layout.events_root(name))


@settings(max_examples=200, deadline=None)
@given(names, names)
def test_one_asset_folder_never_contains_another(a: str, b: str) -> None:
    if a != b:
        assert not Layout.store_root(a).startswith(Layout.store_root(b))
        assert not Layout.events_root(a).startswith(Layout.events_root(b))


NAMED = ["a/b", "a_b", "a%2Fb", "a%2fb", "A_B", "..", ".", "...", "ünïcödé", "🚀", "x" * 1500]


def test_named_cases_map_to_distinct_keys_under_the_prefix() -> None:
    components = [encode_component(n) for n in NAMED]
    assert len(set(components)) == len(NAMED)
    assert len({c.lower() for c in components}) == len(NAMED)  # case-insensitive disks too
    for name in NAMED:
        for key in (Layout.asset(name), Layout.store_entry(name, name[:512], name[:512])):
            assert _confined(key)


@pytest.mark.parametrize(
    ("name", "component"),
    [
        ("orders", "orders"),
        ("a/b", "a%2Fb"),
        ("a_b", "a_b"),
        ("a%2Fb", "a%252%46b"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("Orders", "%4Frders"),
        ("é", "%C3%A9"),
    ],
)
def test_component_examples(name: str, component: str) -> None:
    assert encode_component(name) == component


def test_long_names_are_hashed_into_a_short_component() -> None:
    long_name = "ü" * 1500
    component = encode_component(long_name)
    assert component.startswith("~") and len(component) == 65
    assert encode_component(long_name + "x") != component


@pytest.mark.parametrize("bad", ["", "\ud800"])
def test_empty_and_invalid_unicode_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_component(bad)


def test_prefix_budget_leaves_room_for_the_longest_key() -> None:
    longest = Layout.store_entry("x" * 2000, "y" * 2000, "z" * 2000)
    worst_plain = Layout.store_entry("%" * 40, "%" * 40, "%" * 40)
    assert len(("p" * MAX_PREFIX_BYTES + "/" + max(longest, worst_plain, key=len)).encode()) <= 1024
