"""Stored asset URIs brought to this version's normal form (the backends' data upgrades).

assetry 0.1.0 stored URIs before :mod:`assetry.uri_normalizers` existed: without default
ports (``postgresql://db/x``, not ``postgresql://db:5432/x``), ``mariadb://`` as written,
a bucket-only ``s3://bucket`` without its slash. The same asset registered now arrives in
the new form, so a stored URI must be normalised again for the two to meet. Each backend's
upgrade (the sql backend's migration 0005, the objectstore's layout 2) plans the change
with :func:`plan_renormalisation` and writes it; two assets whose URIs would become one
stop the upgrade before anything is written.

A URI stored by 0.1.0 from one carrying a password kept its user name (``user@host``);
that cannot be told apart from a user name given without a password, so it is kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from .errors import AssetryError, ConflictError
from .urls import normalize_uri, render_url

__all__ = ["UriChange", "plan_renormalisation", "renormalised"]

#: ``(asset name, stored URI, normalised URI)``.
UriChange = tuple[str, str, str]


def renormalised(uri: str) -> str:
    """``uri`` in this version's normal form; a URI that no longer normalises (a rule of a
    plugin refusing it) is kept as it is stored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return normalize_uri(uri)
        except (AssetryError, ValueError, TypeError):
            return uri


def plan_renormalisation(assets: Iterable[tuple[str, str]]) -> list[UriChange]:
    """The URI changes that bring the stored ``(name, uri)`` pairs to the normal form, in
    the order given; :class:`ConflictError` naming every pair of assets whose URIs would
    become one (the caller then writes nothing)."""
    changes: list[UriChange] = []
    owners: dict[str, list[tuple[str, str]]] = {}
    for name, uri in assets:
        new = renormalised(uri)
        owners.setdefault(new, []).append((name, uri))
        if new != uri:
            changes.append((name, uri, new))
    clashes = [(new, found) for new, found in owners.items() if len(found) > 1]
    if clashes:
        described = "; ".join(
            f"{' and '.join(f'asset {name!r} ({render_url(uri)!r})' for name, uri in found)} "
            f"would both have uri {render_url(new)!r}"
            for new, found in clashes[:10]
        )
        more = f" (and {len(clashes) - 10} more)" if len(clashes) > 10 else ""
        raise ConflictError(
            f"the stored asset URIs cannot be brought to this assetry's normal form: "
            f"{described}{more}. Nothing was changed: under this assetry each of these is one "
            "asset, so keep one of each and remove the other from the stored state (or give "
            "it another URI) by hand, then upgrade again"
        )
    return changes
