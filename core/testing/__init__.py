"""assetry.testing: the conformance kits and the pytest plugin for swapping storage in tests.

``StateBackendConformance``, its per-concern mixins (``StoreConformance``,
``EventLogConformance``, ... see :mod:`assetry.testing.conformance`) and
``IOManagerConformance`` are imported on first access, so ``import assetry.testing`` stays
light; the kits need pytest, which a backend's test suite has anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conformance import StateBackendConformance
    from .io_conformance import IOManagerConformance

__all__ = ["IOManagerConformance", "StateBackendConformance"]


def __getattr__(name: str) -> Any:
    if name == "IOManagerConformance":
        from .io_conformance import IOManagerConformance

        return IOManagerConformance
    if name == "StateBackendConformance" or name.endswith("Conformance"):
        from . import conformance

        if name in conformance.__all__:
            return getattr(conformance, name)
    raise AttributeError(f"module 'assetry.testing' has no attribute {name!r}")
