"""URLs as values, and the one secret policy: the only way a URL becomes text.

A URL is parsed once where it enters: a state-backend or database URL into SQLAlchemy's
immutable :class:`sqlalchemy.engine.URL` (:func:`parse_database_url`), an asset URI into an
:class:`AssetURI` (built by :func:`normalize_uri`, the one normalisation rule). What counts as a secret is
one rule (:func:`is_secret_name`: a user-info password, query parameters and connection
fields such as ``password``, ``sslpassword``, ``token``, ``api_key``, ``secret``, SAS
signatures). :func:`render_url` is the one renderer (secrets hidden unless asked), and
:func:`scrub_text` cleans free text such as a driver's error message.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import (
    parse_qsl,
    quote,
    quote_plus,
    unquote,
    unquote_plus,
    urlencode,
    urlsplit,
    urlunsplit,
)

from .errors import AssetTypeError, AssetValueError, ConfigurationError
from .uri_normalizers import uri_normalizer

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "MASK",
    "MAX_URI_LENGTH",
    "RESERVED_SCHEMES",
    "SECRET_NAMES",
    "AssetURI",
    "is_secret_name",
    "normalize_uri",
    "parse_asset_uri",
    "parse_database_url",
    "redact",
    "render_url",
    "scrub_text",
    "secrets_of",
    "split_format",
    "uri_scheme",
]

#: What a hidden secret renders as.
MASK = "***"

#: Field and query-parameter names whose values are secrets (compared case-insensitively,
#: ignoring ``_`` and ``-``), besides any name containing one of :data:`SECRET_FRAGMENTS`.
SECRET_NAMES = frozenset(
    {
        "pwd",
        "key",  # fsspec/s3fs: the access key id
        "sig",  # Azure SAS signature
        "signature",
        "auth",
        "authorization",
        "sas",
    }
)

#: A name containing one of these (case-insensitive, ``_``/``-`` ignored) holds a secret:
#: password, sslpassword, secret, aws_secret_access_key, token, api_token, session_token,
#: api_key, access_key, private_key, account_key (Azure), sas_token, credentials.
SECRET_FRAGMENTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "accountkey",
    "sastoken",
    "credential",
)


def _fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(".", "")


def is_secret_name(name: object) -> bool:
    """Whether a field or query parameter called ``name`` holds a secret (the one list)."""
    if not isinstance(name, str) or not name:
        return False
    folded = _fold(name)
    if folded in SECRET_NAMES:
        return True
    return any(fragment in folded for fragment in SECRET_FRAGMENTS)


# -- asset URIs ---------------------------------------------------------------------------

#: The longest asset URI accepted.
MAX_URI_LENGTH = 1500
#: URI schemes an asset may not use.
RESERVED_SCHEMES = frozenset({"assetry"})

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


def uri_scheme(uri: str) -> str:
    """Return the lower-cased scheme of ``uri`` (``""`` when it has none)."""
    head, sep, _ = uri.partition("://")
    if sep and _SCHEME_RE.match(head):
        return head.lower()
    head, sep, _ = uri.partition(":")
    if sep and _SCHEME_RE.match(head) and len(head) > 1:
        return head.lower()
    return ""


def normalize_uri(uri: object) -> str:
    """Return the canonical form of an asset URI.

    The scheme is lower-cased, user-info carrying a password is dropped whole, user name
    included (with a warning: secrets belong in connections; Airflow drops the same),
    query parameters are sorted, the fragment and a trailing slash are removed, and last
    the scheme's own rule runs (:mod:`assetry.uri_normalizers`: default ports,
    ``mariadb://`` as ``mysql://``, ``s3://bucket/``), as Airflow's providers do. A URI without a scheme is kept as an opaque identifier
    (Airflow accepts those too). Raises :class:`AssetTypeError` (a TypeError) for a
    non-string and :class:`AssetValueError` (a ValueError) for an empty, too long,
    control-character or reserved-scheme URI.
    """
    if not isinstance(uri, str):
        raise AssetTypeError(f"an asset URI must be a str, not {type(uri).__name__}")
    if not uri or not uri.strip():
        raise AssetValueError("an asset URI must not be empty")
    if uri != uri.strip():
        raise AssetValueError(
            f"an asset URI must not start or end with white space: {render_url(uri)!r}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in uri):
        raise AssetValueError("an asset URI must not contain control characters")
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        raise AssetValueError("an asset URI must be valid unicode (no lone surrogates)") from None
    if len(uri) > MAX_URI_LENGTH:
        raise AssetValueError(
            f"an asset URI must be at most {MAX_URI_LENGTH} characters, got {len(uri)}"
        )

    scheme = uri_scheme(uri)
    if not scheme:
        return _no_trailing_space(uri.rstrip("/") or uri, uri)
    if scheme in RESERVED_SCHEMES:
        raise AssetValueError(
            f"the {scheme!r} URI scheme is reserved by assetry: {render_url(uri)!r}"
        )

    if not uri[len(scheme) + 1 :].startswith("//"):  # opaque: "urn:x:y", "mailto:a@b"
        rest = uri.split(":", 1)[1].split("#", 1)[0]
        if not rest:
            raise AssetValueError(
                f"an asset URI needs something after its scheme: {render_url(uri)!r}"
            )
        return _no_trailing_space(f"{scheme}:{rest}", uri)

    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # e.g. an invalid IPv6 host
        raise AssetValueError(f"invalid asset URI {render_url(uri)!r}: {exc}") from None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            warnings.warn(
                "an asset URI must not carry a password; its user-info was removed. Put "
                "credentials in a connection (ASSETRY_CONN_<ID>) instead.",
                UserWarning,
                stacklevel=3,
            )
            user = ""
        netloc = f"{user}@{hostport}" if user else hostport
    try:
        port = parts.port  # validates the port
    except ValueError:
        raise AssetValueError(f"invalid port in asset URI {render_url(uri)!r}") from None
    del port
    host = netloc.rpartition("@")[2]
    if not host and not parts.path.strip("/"):
        raise AssetValueError(
            f"an asset URI needs a location after '{scheme}://': {render_url(uri)!r}"
        )
    path = parts.path
    if len(path) > 1 or netloc:
        path = path.rstrip("/") or ("" if netloc else "/")
    query = ""
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode(sorted(pairs), quote_via=quote)
    normalized = urlunsplit((scheme, netloc, path, query, ""))
    if not netloc:  # urlunsplit drops the empty authority of "s3:///key" and "file:///tmp"
        normalized = f"{scheme}://{path}" + (f"?{query}" if query else "")
    try:
        urlsplit(normalized)  # the host must still parse once the password is gone
    except ValueError:
        raise AssetValueError(f"invalid host in asset URI {render_url(uri)!r}") from None
    rule = uri_normalizer(scheme)
    if rule is not None and netloc:
        split = urlsplit(normalized)
        try:
            ruled = rule(split)
        except ValueError as exc:
            raise AssetValueError(
                f"invalid {scheme}:// asset URI {render_url(uri)!r}: {exc}"
            ) from None
        if ruled != split:
            normalized = urlunsplit(ruled)
    return _no_trailing_space(normalized, uri)


def _no_trailing_space(normalized: str, uri: str) -> str:
    """Reject a URI that would end in white space once its slash or fragment is dropped."""
    if normalized != normalized.rstrip():
        raise AssetValueError(
            f"an asset URI must not end with white space before a '/' or '#': {render_url(uri)!r}"
        )
    return normalized


#: Storage schemes known without asking fsspec (``format+scheme`` is told apart from a
#: database ``dialect+driver`` by its second half being a storage scheme).
_STORAGE_SCHEMES = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "file", "local", "memory", "http", "https"}
)


def _is_storage_scheme(scheme: str) -> bool:
    if scheme in _STORAGE_SCHEMES:
        return True
    try:
        from fsspec.registry import known_implementations, registry
    except ImportError:  # pragma: no cover - fsspec is a dependency
        return False
    return scheme in known_implementations or scheme in registry


def split_format(scheme: str) -> tuple[str | None, str]:
    """``"delta+s3"`` -> ``("delta", "s3")``; a database ``dialect+driver`` such as
    ``"postgresql+psycopg"`` and a plain scheme have no format: ``(None, scheme)``."""
    scheme = scheme.lower()
    head, plus, tail = scheme.partition("+")
    if plus and head and tail and "+" not in tail and _is_storage_scheme(tail):
        return head, tail
    return None, scheme


@dataclass(frozen=True, slots=True)
class AssetURI:
    """An asset URI parsed once: ``delta+s3://bucket/orders?v=1`` has format ``delta``,
    scheme ``s3``, authority ``bucket``, path ``/orders`` and query ``(("v", "1"),)``.

    Built by :func:`parse_asset_uri` from the normalised text; ``str()`` and ``repr()`` hide
    secret query values (a SAS signature, a token); :meth:`render` with
    ``hide_secrets=False`` is for the driver call only.
    """

    scheme: str
    format: str | None
    authority: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    opaque: bool = False

    @property
    def full_scheme(self) -> str:
        """The scheme as written: ``delta+s3``, ``postgresql+psycopg``, ``s3``."""
        return f"{self.format}+{self.scheme}" if self.format else self.scheme

    @property
    def storage_uri(self) -> AssetURI:
        """The same location without its format (``delta+s3://b/t`` -> ``s3://b/t``)."""
        if self.format is None:
            return self
        return AssetURI(self.scheme, None, self.authority, self.path, self.query, self.opaque)

    def render(self, *, hide_secrets: bool = True) -> str:
        """The URI as text; secret query values become ``***`` unless ``hide_secrets=False``."""
        query = "&".join(
            f"{quote(k, safe='')}="
            + (MASK if hide_secrets and is_secret_name(k) and v else quote(v, safe=""))
            for k, v in self.query
        )
        tail = f"?{query}" if query else ""
        if not self.full_scheme:
            return self.path
        if self.opaque:
            return f"{self.full_scheme}:{self.path}{tail}"
        return f"{self.full_scheme}://{self.authority}{self.path}{tail}"

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"AssetURI({self.render()!r})"


def parse_asset_uri(uri: str | AssetURI) -> AssetURI:
    """The :class:`AssetURI` of ``uri``, normalised (:func:`normalize_uri`)."""
    if isinstance(uri, AssetURI):
        return uri
    text = normalize_uri(uri)
    full = uri_scheme(text)
    if not full:
        return AssetURI("", None, "", text)
    fmt, scheme = split_format(full)
    rest = text[len(full) + 1 :]
    if not rest.startswith("//"):
        return AssetURI(scheme, fmt, "", rest, opaque=True)
    rest = rest[2:]
    rest, _, query = rest.partition("?")
    slash = rest.find("/")
    authority, path = (rest, "") if slash == -1 else (rest[:slash], rest[slash:])
    pairs = tuple(parse_qsl(query, keep_blank_values=True))
    return AssetURI(scheme, fmt, authority, path, pairs)


# -- database URLs ------------------------------------------------------------------------


def parse_database_url(url: str | URL) -> URL:
    """SQLAlchemy's immutable URL for ``url``; a :class:`ConfigurationError` that does not
    echo the secrets when it cannot be parsed."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(url, URL):
        return url
    if isinstance(url, str):
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no driver nor renderer can take it
            raise ConfigurationError(
                "a database URL must be valid Unicode text (it holds a lone surrogate)"
            ) from None
    try:
        return make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise ConfigurationError(
            f"{render_url(str(url))!r} is not a database URL; use sqlite:///path/state.db, "
            "postgresql://user@host/db or mysql://user@host/db"
        ) from None


# -- rendering ----------------------------------------------------------------------------

# ``scheme://user:password@``: as SQLAlchemy reads it, the password runs to the last ``@``
# of the URL's user-info, so one holding an unencoded ``/``, ``#`` or ``?`` is still hidden.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@?#'\"]*):(?P<pw>[^\s@'\"]*)@")
_QUERY_PAIR = re.compile(r"(?<![^&;=?#\s])(?P<name>[^&;=?#\s]+)=(?P<value>[^&;#\s]*)")
# ``name=value``, ``name: value``, ``"name": "value"`` in free text.
_TEXT_PAIR = re.compile(
    # (a name starts only where no name character precedes it: else a long word is tried
    # from each of its positions, which is quadratic)
    r"(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<q1>[\"']?)(?P<sep>\s*[=:]\s*)"
    r"(?:(?P<q2>[\"'])(?P<quoted>.*?)(?P=q2)|(?P<bare>[^\s&;,'\")}\]]+))"
)


def _mask_userinfo(text: str) -> str:
    def repl(match: re.Match[str]) -> str:
        return f"{match['head']}:{MASK}@" if match["pw"] else match[0]

    return _USERINFO.sub(repl, text)


def _mask_query(query: str) -> str:
    def repl(match: re.Match[str]) -> str:
        if match["value"] and is_secret_name(unquote_plus(match["name"])):
            return f"{match['name']}={MASK}"
        return match[0]

    return _QUERY_PAIR.sub(repl, query)


def _render_text(url: str) -> str:
    masked = _mask_userinfo(url)
    head, sep, rest = masked.partition("?")
    if not sep:
        head, sep, rest = masked.partition(";")  # key=value;key=value connection strings
        if not sep or "=" not in rest:
            return masked if "=" not in masked or "://" in masked else _mask_query(masked)
    return f"{head}{sep}{_mask_query(rest)}"


def render_url(url: str | URL | AssetURI | None, *, hide_secrets: bool = True) -> str:
    """The one way a URL becomes text: a database URL, an asset URI or URL text, with the
    password and every secret query value shown as ``***`` (unless ``hide_secrets=False``,
    for the driver call only)."""
    if url is None:
        return ""
    if isinstance(url, AssetURI):
        return url.render(hide_secrets=hide_secrets)
    if isinstance(url, str):
        return _render_text(url) if hide_secrets else url
    if not hide_secrets:
        return url.render_as_string(hide_password=False)
    return _render_text(url.render_as_string(hide_password=True))


def secrets_of(value: Any) -> set[str]:
    """Every secret a URL, URL text or mapping holds (the password, secret query values,
    secret fields), as written and decoded: what :func:`scrub_text` removes from free text."""
    found: set[str] = set()

    def add(secret: Any) -> None:
        if isinstance(secret, str) and secret:
            found.update({secret, unquote(secret), unquote_plus(secret)})
        elif isinstance(secret, bytes | int) and not isinstance(secret, bool):
            found.add(str(secret))

    if value is None:
        return found
    if hasattr(value, "render_as_string") and hasattr(value, "query"):  # a SQLAlchemy URL
        add(value.password)
        for k, v in value.query.items():
            if is_secret_name(k):
                for item in (v,) if isinstance(v, str) else v:
                    add(item)
        return found
    if isinstance(value, AssetURI):
        value = value.render(hide_secrets=False)
    if isinstance(value, Mapping):
        for k, v in value.items():
            if is_secret_name(k):
                add(v) if not isinstance(v, Mapping | list | tuple) else found.update(secrets_of(v))
            else:
                found |= secrets_of(v)
        return found
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            found |= secrets_of(item)
        return found
    if isinstance(value, str):
        for match in _USERINFO.finditer(value):
            add(match["pw"])
        for match in _QUERY_PAIR.finditer(value):
            if is_secret_name(unquote_plus(match["name"])):
                add(match["value"])
        for match in _TEXT_PAIR.finditer(value):
            if is_secret_name(match["name"]):
                add(match["quoted"] if match["q2"] else match["bare"])
        return found
    return found


_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]*")


def _secret_in_text(match: re.Match[str]) -> bool:
    """Whether a ``name=value`` / ``name: value`` pair of free text holds a secret: any
    secret name when quoted (a mapping's key) or given with ``=`` (a keyword argument), but
    for ``key=``; in prose (``name: value``) only the unmistakable names, not the generic
    ``key``, ``auth`` or ``sig``, which are ordinary words there."""
    name = match["name"]
    if not is_secret_name(name):
        return False
    if match["q1"]:
        return True
    if "=" in match["sep"]:
        return _fold(name) != "key"
    return _fold(name) not in SECRET_NAMES


def scrub_text(text: object, known: Iterable[str] = ()) -> str:
    """``text`` (a driver's error message, a log line, a traceback) with every ``known``
    secret (raw and URL-encoded), each URL's password and secret query values, and secret
    ``name=value`` / ``"name": "value"`` pairs replaced by ``***``."""
    text = str(text)
    for secret in sorted({s for s in known if isinstance(s, str) and len(s) >= 3}, key=len)[::-1]:
        for form in {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}:
            text = text.replace(form, MASK)
    text = _mask_userinfo(text)
    text = _URL_IN_TEXT.sub(lambda m: _render_text(m[0]), text)

    def repl(match: re.Match[str]) -> str:
        if not _secret_in_text(match):
            return match[0]
        value = match["quoted"] if match["q2"] else match["bare"]
        if not value or value == MASK:
            return match[0]
        q2 = match["q2"] or ""
        return f"{match['name']}{match['q1']}{match['sep']}{q2}{MASK}{q2}"

    return _TEXT_PAIR.sub(repl, text)


def redact(value: Any) -> Any:
    """A copy of ``value`` for display: secret fields of mappings (at any depth) shown as
    ``***`` and every string rendered through :func:`render_url`."""
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_name(k) and value_present(v) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return render_url(value)
    return value


def value_present(value: Any) -> bool:
    """Whether a field holds something to hide (``None`` and ``""`` are shown as they are)."""
    return value is not None and value != ""
