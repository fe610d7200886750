"""Asset URI normalisation and secret masking (``assetry.uri``): the one place for these rules."""

from __future__ import annotations

import warnings

import pytest
from assetry import normalize_uri
from assetry.uri import MAX_URI_LENGTH, mask_url
from assetry.urls import parse_asset_uri, render_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# (input, expected canonical form)
VALID = [
    # scheme lower-cased, nothing else
    ("S3://bucket/key", "s3://bucket/key"),
    ("HTTPS://example.com/data", "https://example.com/data"),
    ("Postgresql://host/db/public/orders", "postgresql://host:5432/db/public/orders"),
    ("gs://Bucket/Key", "gs://Bucket/Key"),
    # trailing slashes stripped, including the root path after a host
    ("s3://bucket/key/", "s3://bucket/key"),
    ("s3://bucket/key///", "s3://bucket/key"),
    # a bucket alone keeps its root path, as in Airflow's Amazon provider
    ("s3://bucket/", "s3://bucket/"),
    ("s3://bucket", "s3://bucket/"),
    # Airflow's provider rules: default ports written out, mariadb is mysql
    ("postgres://h/db/s/t", "postgres://h:5432/db/s/t"),
    ("mysql://h/db/t", "mysql://h:3306/db/t"),
    ("MariaDB://h:3307/db/t", "mysql://h:3307/db/t"),
    ("mariadb://h/db/t", "mysql://h:3306/db/t"),
    ("HTTP://Host:8080/", "http://Host:8080"),
    ("s3://data/orders/", "s3://data/orders"),
    # query parameters sorted, fragment dropped
    ("https://h/p?b=2&a=1", "https://h/p?a=1&b=2"),
    ("https://h/p?b=2&a=1#frag", "https://h/p?a=1&b=2"),
    ("s3://b/k?x=1&x=0", "s3://b/k?x=0&x=1"),
    ("http://h/p?a=&b", "http://h/p?a=&b="),
    ("s3://b/k?", "s3://b/k"),
    ("s3://b/k#", "s3://b/k"),
    ("s3://b/k#section", "s3://b/k"),
    ("s3://b/k?a=b+c", "s3://b/k?a=b%20c"),
    # a user without password is kept
    ("s3://user@host/x", "s3://user@host/x"),
    ("s3://@host/x", "s3://host/x"),
    # ports, IPv6 hosts
    ("postgresql://host:5432/db/t", "postgresql://host:5432/db/t"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    # file and memory URIs keep their empty authority
    ("file:///tmp/x", "file:///tmp/x"),
    ("file:///tmp/x/", "file:///tmp/x"),
    ("FILE:///tmp/data.parquet", "file:///tmp/data.parquet"),
    ("file://localhost/tmp/x", "file://localhost/tmp/x"),
    ("memory://x", "memory://x"),
    ("memory://x/", "memory://x"),
    ("s3:///key", "s3:///key"),
    ("duckdb:///warehouse.duckdb/orders", "duckdb:///warehouse.duckdb/orders"),
    ("sqlite:////data/warehouse.db/orders", "sqlite:////data/warehouse.db/orders"),
    # opaque forms and identifiers without a scheme
    ("urn:x:y", "urn:x:y"),
    ("URN:x:y#frag", "urn:x:y"),
    ("mailto:a@b", "mailto:a@b"),
    ("orders", "orders"),
    ("orders/", "orders"),
    ("team/orders/daily/", "team/orders/daily"),
    ("/", "/"),
    ("c:/x", "c:/x"),
    ("orders v2", "orders v2"),
    ("s3://b/päth/ü", "s3://b/päth/ü"),
]

# (input, exception type, text the message must contain)
INVALID: list[tuple[object, type[Exception], str]] = [
    ("assetry://x", ValueError, "reserved"),
    ("ASSETRY://x/y", ValueError, "reserved"),
    ("assetry:x", ValueError, "reserved"),
    ("s3://" + "k" * MAX_URI_LENGTH, ValueError, "at most"),
    ("", ValueError, "empty"),
    ("   ", ValueError, "empty"),
    ("\t", ValueError, "empty"),
    (" s3://b/k", ValueError, "white space"),
    ("s3://b/k ", ValueError, "white space"),
    ("s3://b/k /", ValueError, "white space"),
    ("orders /", ValueError, "white space"),
    (None, TypeError, "NoneType"),
    (b"s3://b/k", TypeError, "bytes"),
    (42, TypeError, "int"),
    (["s3://b/k"], TypeError, "list"),
    ("s3://b/k\x00", ValueError, "control"),
    ("s3://b/k\nx", ValueError, "control"),
    ("s3://b/\x7f", ValueError, "control"),
    ("s3://b/\ud800", ValueError, "surrogate"),
    ("\udfffname", ValueError, "surrogate"),
    ("http://h:99999/x", ValueError, "port"),
    ("http://h:abc/x", ValueError, "port"),
    ("s3://", ValueError, "location"),
    ("s3:///", ValueError, "location"),
    ("gs://?x=1", ValueError, "location"),
    ("http://[::1/x", ValueError, "invalid"),
    ("urn:", ValueError, "after its scheme"),
    ("urn:#only-fragment", ValueError, "after its scheme"),
]


@pytest.mark.parametrize(("uri", "expected"), VALID, ids=[c[0] for c in VALID])
def test_normalize_uri_returns_canonical_form(uri: str, expected: str) -> None:
    assert normalize_uri(uri) == expected


@pytest.mark.parametrize(("uri", "expected"), VALID, ids=[c[0] for c in VALID])
def test_normalize_uri_is_idempotent_on_table(uri: str, expected: str) -> None:
    assert normalize_uri(normalize_uri(uri)) == normalize_uri(uri)


@pytest.mark.parametrize(("uri", "error", "text"), INVALID, ids=[repr(c[0])[:40] for c in INVALID])
def test_normalize_uri_rejects_invalid_input(
    uri: object, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        normalize_uri(uri)


def test_uri_at_the_length_limit_is_accepted() -> None:
    uri = "s3://b/" + "k" * (MAX_URI_LENGTH - len("s3://b/"))
    assert len(uri) == MAX_URI_LENGTH
    assert normalize_uri(uri) == uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://user:pw@host/x", "s3://host/x"),
        ("postgres://u:p@h:5432/db/t", "postgres://h:5432/db/t"),
        ("s3://:pw@host/x", "s3://host/x"),
        ("HTTPS://me:s%40cret@h/p?b=1&a=2", "https://h/p?a=2&b=1"),
    ],
)
def test_password_drops_the_whole_user_info_with_a_warning(uri: str, expected: str) -> None:
    with pytest.warns(UserWarning, match="password") as record:
        assert normalize_uri(uri) == expected
    assert all("pw" not in str(w.message) and "cret" not in str(w.message) for w in record)


def test_uri_without_password_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert normalize_uri("s3://user@host/x") == "s3://user@host/x"


@pytest.mark.parametrize(
    "uri",
    [
        "assetry://u:SECRETPW@x",
        "s3://u:SECRETPW@",
        "http://u:SECRETPW@h:99999/x",
        " s3://u:SECRETPW@h/x",
        "s3://u:SECRETPW@h/k /",
    ],
)
def test_error_messages_never_contain_the_password(uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError) as info:
            normalize_uri(uri)
    assert "SECRETPW" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://u:p@h/x", "s3://u:***@h/x"),
        ("http://u:p@h", "http://u:***@h"),
        ("postgresql+psycopg://u:s3cr:et@h/db", "postgresql+psycopg://u:***@h/db"),
        ("mysql://root:pw@127.0.0.1:3306/test?x=1#f", "mysql://root:***@127.0.0.1:3306/test?x=1#f"),
    ],
)
def test_render_url_masks_only_the_password(url: str, expected: str) -> None:
    assert render_url(url) == expected
    assert mask_url(url) == expected  # the former name


@pytest.mark.parametrize(
    "url",
    [
        "s3://u@h/x",
        "http://h/p?x=a:b@c",
        "orders",
        "S3://Bucket/Key/?b=1&a=2#frag",
        "mailto:a@b",
        "sqlite:///state.db",
    ],
)
def test_render_url_leaves_urls_without_secrets_unchanged(url: str) -> None:
    assert render_url(url) == url


# -- idempotence over generated URIs ---------------------------------------------------------

_SCHEMES = st.sampled_from(["s3", "S3", "gs", "file", "memory", "http", "HTTPS", "x-y.z", "urn"])
_TEXT = st.text(alphabet=st.sampled_from(list("aZ09-._~%+:@ é/")), max_size=8)
_HOSTS = st.one_of(
    st.just(""),
    st.text(alphabet=st.sampled_from(list("abcXYZ019-.")), min_size=1, max_size=8),
    st.just("[::1]"),
)


@st.composite
def _uris(draw: st.DrawFn) -> str:
    scheme = draw(_SCHEMES)
    if draw(st.booleans()):  # opaque or scheme-less forms
        return (
            draw(st.sampled_from(["", f"{scheme}:"]))
            + draw(_TEXT)
            + draw(st.sampled_from(["", "/", "#f", "//"]))
        )
    user = draw(st.sampled_from(["", "user@", "user:pw@", ":pw@", "@"]))
    port = draw(st.sampled_from(["", ":0", ":5432", ":65535", ":"]))
    segments = draw(st.lists(_TEXT, max_size=4))
    query = draw(
        st.lists(st.tuples(_TEXT.filter(lambda t: "#" not in t), _TEXT), max_size=3).map(
            lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
        )
    )
    fragment = draw(st.sampled_from(["", "#", "#frag"]))
    path = "/" + "/".join(segments) + draw(st.sampled_from(["", "/", "//"]))
    return (
        f"{scheme}://{user}{draw(_HOSTS)}{port}{path}" + (f"?{query}" if query else "") + fragment
    )


def _normalize_or_none(uri: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return normalize_uri(uri)
        except ValueError:
            return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_uris())
def test_normalize_uri_twice_equals_once(uri: str) -> None:
    once = _normalize_or_none(uri)
    if once is not None:
        assert _normalize_or_none(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZ0:/?#@&=%.+_[]é \t~")), max_size=25))
def test_normalize_uri_of_any_text_is_idempotent_or_an_error(text: str) -> None:
    once = _normalize_or_none(text)
    if once is not None:
        assert _normalize_or_none(once) == once
        assert once == once.strip()


@pytest.mark.parametrize(
    ("uri", "fmt", "scheme", "authority", "path"),
    [
        ("DELTA+S3://bucket/orders/", "delta", "s3", "bucket", "/orders"),
        ("iceberg+file:///tmp/wh/t", "iceberg", "file", "", "/tmp/wh/t"),
        ("parquet+memory://x/y", "parquet", "memory", "x", "/y"),
        ("postgresql+psycopg://db/wh/public/t", None, "postgresql+psycopg", "db", "/wh/public/t"),
        ("s3://bucket/key", None, "s3", "bucket", "/key"),
    ],
)
def test_asset_uri_value_splits_format_from_storage_scheme(
    uri: str, fmt: str | None, scheme: str, authority: str, path: str
) -> None:
    value = parse_asset_uri(uri)
    assert (value.format, value.scheme, value.authority, value.path) == (
        fmt,
        scheme,
        authority,
        path,
    )
    assert value.render(hide_secrets=False) == normalize_uri(uri)


def test_format_scheme_uri_normalises_with_its_format_lower_cased_and_kept() -> None:
    assert normalize_uri("Delta+S3://Bucket/t/?b=1&a=2") == "delta+s3://Bucket/t?a=2&b=1"
    assert str(parse_asset_uri("delta+s3://b/t").storage_uri) == "s3://b/t"


def test_asset_uri_renders_secret_query_values_hidden() -> None:
    value = parse_asset_uri("az://c/blob?sig=Zs3cr3tSig&sv=2024")
    assert "Zs3cr3tSig" not in str(value) and "Zs3cr3tSig" not in repr(value)
    assert "sv=2024" in str(value)
    assert value.render(hide_secrets=False) == "az://c/blob?sig=Zs3cr3tSig&sv=2024"


@given(_uris())
def test_asset_uri_value_renders_back_to_the_normalised_text(uri: str) -> None:
    once = _normalize_or_none(uri)
    if once is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a dropped password is warned of
            assert parse_asset_uri(uri).render(hide_secrets=False) == once


def test_a_registered_normalizer_runs_last_and_its_value_error_is_an_asset_value_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from assetry import uri_normalizers

    monkeypatch.setattr(uri_normalizers, "_RULES", dict(uri_normalizers._RULES))

    def rule(uri):
        if not uri.path.strip("/"):
            raise ValueError("needs a topic")
        return uri._replace(netloc=uri.netloc.lower())

    uri_normalizers.register_uri_normalizer("KAFKA", rule)
    assert normalize_uri("kafka://Broker:9092/topic/") == "kafka://broker:9092/topic"
    with pytest.raises(ValueError, match="needs a topic"):
        normalize_uri("kafka://broker:9092/")
    with pytest.raises(TypeError):
        uri_normalizers.register_uri_normalizer("kafka", "not callable")  # type: ignore[arg-type]


def test_normalizers_load_from_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    from assetry import uri_normalizers

    class EP:
        name = "x-demo"

        @staticmethod
        def load():
            return lambda uri: uri._replace(path="/fixed")

    monkeypatch.setattr(uri_normalizers, "_RULES", dict(uri_normalizers._RULES))
    monkeypatch.setattr(uri_normalizers, "_LOADED", False)
    monkeypatch.setattr(
        uri_normalizers,
        "entry_points",
        lambda group: [EP] if group == uri_normalizers.ENTRY_POINT_GROUP else [],
    )
    assert normalize_uri("x-demo://h/anything") == "x-demo://h/fixed"
