"""Asset URI normalisation, under the module name its callers know.

The rule lives in :mod:`assetry.urls`, beside the :class:`~assetry.urls.AssetURI` value it
builds and the one secret renderer its error messages use.
"""

from __future__ import annotations

from .urls import MAX_URI_LENGTH, RESERVED_SCHEMES, normalize_uri, render_url, uri_scheme

__all__ = ["MAX_URI_LENGTH", "RESERVED_SCHEMES", "mask_url", "normalize_uri", "uri_scheme"]

#: The former name of :func:`assetry.urls.render_url` (the one renderer), kept for callers.
mask_url = render_url
