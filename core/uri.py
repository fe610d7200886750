"""Asset URI normalisation: the one place where this rule lives (secrets are hidden by
:func:`assetry.urls.render_url`, the one renderer)."""

from __future__ import annotations

import re
import warnings
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .errors import AssetTypeError, AssetValueError
from .urls import render_url

__all__ = ["MAX_URI_LENGTH", "RESERVED_SCHEMES", "mask_url", "normalize_uri", "uri_scheme"]

MAX_URI_LENGTH = 1500
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

    The scheme is lower-cased, a password in the user-info is dropped (with a warning:
    secrets belong in connections), query parameters are sorted, the fragment and a
    trailing slash are removed. A URI without a scheme is kept as an opaque identifier
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
                "an asset URI must not carry a password; it was removed. Put credentials "
                "in a connection (ASSETRY_CONN_<ID>) instead.",
                UserWarning,
                stacklevel=3,
            )
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
    return _no_trailing_space(normalized, uri)


def _no_trailing_space(normalized: str, uri: str) -> str:
    """Reject a URI that would end in white space once its slash or fragment is dropped."""
    if normalized != normalized.rstrip():
        raise AssetValueError(
            f"an asset URI must not end with white space before a '/' or '#': {render_url(uri)!r}"
        )
    return normalized


#: The former name of :func:`assetry.urls.render_url` (the one renderer), kept for callers.
mask_url = render_url
