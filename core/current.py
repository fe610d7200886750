"""The current instance: the context variable that :func:`assetry.use_instance` sets.

It lives apart from :class:`~assetry.Instance` so that the modules the instance builds on
(the configuration's connection look-ups, the watchers that poll with the instance made
current) can read or set it without importing the instance module.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .instance import Instance

__all__ = ["current_or_none", "instance_scope"]

_current: contextvars.ContextVar[Instance | None] = contextvars.ContextVar(
    "assetry_instance", default=None
)


def current_or_none() -> Instance | None:
    """The instance made current in this context, or ``None`` (never creates one)."""
    return _current.get()


@contextmanager
def instance_scope(instance: Instance) -> Iterator[Instance]:
    """Make ``instance`` the current one inside the block (the caller checks its type)."""
    token = _current.set(instance)
    try:
        yield instance
    finally:
        _current.reset(token)
