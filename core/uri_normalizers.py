"""Per-scheme asset URI rules, so that one asset has one identity in assetry and Airflow.

Airflow's providers each register a rule for their URI schemes (a function from a
:class:`urllib.parse.SplitResult` to another); assetry keeps a registry of the same shape.
A rule is added with :func:`register_uri_normalizer` or by a plugin through the entry-point
group ``assetry.uri_normalizers`` (name: the scheme, value: the function), and runs last in
:func:`assetry.urls.normalize_uri`, after the generic rules. The built-in rules follow
Airflow 3.3's providers: the default port of PostgreSQL (5432) and MySQL (3306) is written
out, ``mariadb://`` is ``mysql://``, and a bucket-only ``s3://bucket`` is ``s3://bucket/``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from urllib.parse import SplitResult

__all__ = [
    "ENTRY_POINT_GROUP",
    "UriNormalizer",
    "register_uri_normalizer",
    "uri_normalizer",
]

#: The entry-point group plugins register their per-scheme rules in.
ENTRY_POINT_GROUP = "assetry.uri_normalizers"

#: A per-scheme rule: the split URI (scheme lower-cased, password gone, query sorted) in,
#: the canonical one out; ``ValueError`` for a URI the scheme does not allow.
UriNormalizer = Callable[[SplitResult], SplitResult]

_LOCK = threading.Lock()
_RULES: dict[str, UriNormalizer] = {}
_LOADED = False


def register_uri_normalizer(scheme: str, rule: UriNormalizer) -> None:
    """Use ``rule`` for asset URIs of ``scheme`` (replacing the one registered before)."""
    if not callable(rule):
        raise TypeError(f"a URI normaliser must be callable, not {type(rule).__name__}")
    with _LOCK:
        _RULES[scheme.lower()] = rule


def uri_normalizer(scheme: str) -> UriNormalizer | None:
    """The rule registered for ``scheme``, or ``None``."""
    _load_plugins()
    return _RULES.get(scheme.lower())


def _load_plugins() -> None:
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        _LOADED = True
        found = list(entry_points(group=ENTRY_POINT_GROUP))
    for ep in found:  # registered outside the lock: a plugin may call register_uri_normalizer
        register_uri_normalizer(ep.name, ep.load())


def _default_port(port: int) -> UriNormalizer:
    def rule(uri: SplitResult) -> SplitResult:
        if uri.port is None and uri.hostname:
            host = uri.netloc.rstrip(":")
            return uri._replace(netloc=f"{host}:{port}")
        return uri

    return rule


def _mysql(uri: SplitResult) -> SplitResult:
    return _default_port(3306)(uri._replace(scheme="mysql"))


def _s3(uri: SplitResult) -> SplitResult:
    if uri.netloc and uri.path in ("", "/"):
        return uri._replace(path="/")
    return uri


for _scheme in ("postgres", "postgresql"):
    register_uri_normalizer(_scheme, _default_port(5432))
register_uri_normalizer("mysql", _mysql)
register_uri_normalizer("mariadb", _mysql)
register_uri_normalizer("s3", _s3)
