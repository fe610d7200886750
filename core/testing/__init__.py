"""assetry.testing: the conformance kits and the pytest plugin for swapping storage in tests.

``StateBackendConformance`` is imported on first access, so ``import assetry.testing``
stays light; the kit itself needs pytest, which a backend's test suite has anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conformance import StateBackendConformance
    from .io_conformance import IOManagerConformance

__all__ = ["IOManagerConformance", "StateBackendConformance"]


def __getattr__(name: str) -> Any:
    if name == "StateBackendConformance":
        from .conformance import StateBackendConformance

        return StateBackendConformance
    if name == "IOManagerConformance":
        from .io_conformance import IOManagerConformance

        return IOManagerConformance
    raise AttributeError(f"module 'assetry.testing' has no attribute {name!r}")
