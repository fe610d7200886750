"""JSON validation of store keys, values and event extra (``assetry.values``)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections import OrderedDict

import pytest
from assetry import StoreValueError
from assetry.values import (
    DEFAULT_MAX_VALUE_BYTES,
    MAX_KEY_LENGTH,
    MAX_NESTING,
    canonical_json,
    decode_value,
    encode_extra,
    encode_value,
    validate_key,
    validate_partition_key,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (-1.5, "-1.5"),
        (True, "true"),
        ("é", '"é"'),
        ("", '""'),
        ([None], "[null]"),
        ({"a": None}, '{"a":null}'),
        ((1, 2), "[1,2]"),
        (OrderedDict(b=1, a=2), '{"b":1,"a":2}'),
        ({"a": [1, {"b": 1e308}]}, '{"a":[1,{"b":1e+308}]}'),
        (2**64, "18446744073709551616"),
        ([], "[]"),
        ({}, "{}"),
    ],
)
def test_encode_value_returns_compact_json(value: object, text: str) -> None:
    assert encode_value(value) == text


def test_none_is_rejected_at_top_level_with_advice() -> None:
    with pytest.raises(StoreValueError, match="delete"):
        encode_value(None)


def test_null_inside_containers_is_allowed() -> None:
    assert decode_value(encode_value({"a": [None, {"b": None}]})) == {"a": [None, {"b": None}]}


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (math.nan, "value"),
        (math.inf, "value"),
        (-math.inf, "value"),
        ([1, math.inf], "value[1]"),
        ({"a": [1, {"b": -math.inf}]}, "value['a'][1]['b']"),
    ],
)
def test_nan_and_infinity_are_rejected_with_their_path(value: object, path: str) -> None:
    with pytest.raises(StoreValueError, match="not JSON") as info:
        encode_value(value)
    assert f" at {path} " in str(info.value)


@pytest.mark.parametrize(
    ("value", "type_name", "path"),
    [
        ({1, 2}, "set", "value"),
        (b"x", "bytes", "value"),
        ({"a": object()}, "object", "value['a']"),
        ({"a": [1, complex(1, 2)]}, "complex", "value['a'][1]"),
        ({"price": decimal.Decimal("1.5")}, "Decimal", "value['price']"),
        ({"day": dt.date(2024, 1, 1)}, "date", "value['day']"),
        ([dt.datetime(2024, 1, 1)], "datetime", "value[0]"),
    ],
)
def test_non_json_types_are_rejected_with_the_path(
    value: object, type_name: str, path: str
) -> None:
    with pytest.raises(StoreValueError) as info:
        encode_value(value)
    message = str(info.value)
    assert type_name in message
    assert f"at {path} " in message
    assert "JSON" in message


def test_non_string_dict_keys_are_rejected() -> None:
    with pytest.raises(StoreValueError, match=r"dict keys must be str.*int"):
        encode_value({"a": {1: "x"}})


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert decode_value(encode_value(_nested(MAX_NESTING))) == _nested(MAX_NESTING)


def test_nesting_beyond_the_limit_is_rejected() -> None:
    with pytest.raises(StoreValueError, match=f"deeper than {MAX_NESTING}"):
        encode_value(_nested(MAX_NESTING + 1))


def test_self_referencing_value_is_rejected_not_a_recursion_error() -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(StoreValueError, match="deeper than"):
        encode_value(loop)


def test_size_limit_counts_utf8_bytes_of_the_json() -> None:
    assert encode_value("é" * 10, max_bytes=22) == '"' + "é" * 10 + '"'
    with pytest.raises(StoreValueError, match=r"22 bytes.*limit of 21"):
        encode_value("é" * 10, max_bytes=21)


def test_default_size_limit_is_exact() -> None:
    fits = "x" * (DEFAULT_MAX_VALUE_BYTES - 2)  # two quote characters
    assert len(encode_value(fits)) == DEFAULT_MAX_VALUE_BYTES
    with pytest.raises(StoreValueError, match="IO manager"):
        encode_value(fits + "x")


@pytest.mark.parametrize(
    "value",
    ["a\ud800", {"k": "\udfff"}, {"\ud800": 1}, ["ok", "\udc00"]],
)
def test_lone_surrogates_are_rejected(value: object) -> None:
    with pytest.raises(StoreValueError, match="surrogates"):
        encode_value(value)


@pytest.mark.parametrize("value", ["a\x00b", {"k": "\x00"}, {"a\x00": 1}, ["\x00"]])
def test_nul_characters_are_rejected_in_strings_and_keys(value: object) -> None:
    with pytest.raises(StoreValueError, match="NUL"):
        encode_value(value)


def test_text_that_only_looks_like_an_escaped_nul_is_accepted() -> None:
    value = {"path": "C:\\u0000", "deep": [{"k": ["\\u0000"]}]}
    assert decode_value(encode_value(value)) == value


@pytest.mark.parametrize(
    "value",
    [{"a": [{"b": {1: "x"}}]}, [{"ok": 1}, {2.5: 1}], {"a": [{"b": {None: 1}}]}],
)
def test_non_string_keys_are_rejected_however_deep(value: object) -> None:
    with pytest.raises(StoreValueError, match="dict keys must be str"):
        encode_value(value)


def test_store_value_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        encode_value(None)


# -- event extra -----------------------------------------------------------------------------


def test_encode_extra_accepts_none_and_dicts_only() -> None:
    assert encode_extra(None) == "{}"
    assert encode_extra({"rows": 3}) == '{"rows":3}'
    with pytest.raises(StoreValueError, match="extra must be a dict"):
        encode_extra([1])  # type: ignore[arg-type]
    with pytest.raises(StoreValueError, match="not JSON"):
        encode_extra({"x": math.nan})
    with pytest.raises(StoreValueError, match="limit of 5"):
        encode_extra({"rows": 123}, max_bytes=5)


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("validate", [validate_key, validate_partition_key])
@pytest.mark.parametrize("key", ["k", "watermark", " ", "a/b", "é" * MAX_KEY_LENGTH, "2024-06-01"])
def test_usable_keys_are_returned_unchanged(validate, key: str) -> None:
    assert validate(key) == key


@pytest.mark.parametrize("validate", [validate_key, validate_partition_key])
@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("", "empty"),
        ("k" * (MAX_KEY_LENGTH + 1), "at most"),
        ("a\x00b", "NUL"),
        ("\udc00", "surrogates"),
        (1, "must be a str"),
        (None, "must be a str"),
        (b"k", "must be a str"),
    ],
)
def test_unusable_keys_are_rejected(validate, key: object, text: str) -> None:
    with pytest.raises(StoreValueError, match=text):
        validate(key)


# -- round trip ------------------------------------------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=20,
)
_SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    _TEXT,
)
_JSON = st.recursive(
    st.one_of(st.none(), _SCALARS),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_TEXT, inner, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_JSON.filter(lambda v: v is not None))
def test_any_json_value_round_trips(value: object) -> None:
    text = encode_value(value)
    assert decode_value(text) == value
    assert json.loads(text) == value
    assert encode_value(decode_value(text)) == text


@settings(max_examples=300, deadline=None)
@given(_JSON.filter(lambda v: v is not None))
def test_encoded_text_is_the_canonical_json_text(value: object) -> None:
    assert encode_value(value) == canonical_json(value)
