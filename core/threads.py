"""Run blocking calls from coroutines without importing asyncio at ``import assetry``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["to_thread"]

T = TypeVar("T")


async def to_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread``: the call runs in a worker thread, so it never blocks the event
    loop; asyncio is imported on first use, keeping ``import assetry`` light."""
    import asyncio

    return await asyncio.to_thread(func, *args, **kwargs)
