"""Checks of the public API's inputs, stated once: ids, limits and versions, timestamps,
source ids and alias lists.

Every entry point (:class:`~assetry.instance.Instance`, :class:`~assetry.store.AssetStore`,
the :class:`~assetry.backend.NewEvent` / :class:`~assetry.backend.EventQuery` values every
backend receives, the HTTP server's request bodies) applies these functions, so a value is
refused with the same typed error and the same limits on every backend, before a driver
sees it. Each check is a few ``isinstance`` tests and comparisons: cheap enough for the
hot path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from .errors import AssetTypeError, AssetValueError
from .urls import MAX_URI_LENGTH

__all__ = [
    "MAX_ALIASES",
    "MAX_ALIASES_BYTES",
    "MAX_ID",
    "MAX_SOURCE_ID_LENGTH",
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "check_aliases",
    "check_id",
    "check_source_id",
    "check_text",
    "check_timestamp",
]

#: Event ids, cursors, limits and store versions fit a signed 64-bit column everywhere.
MAX_ID = 2**63 - 1
#: The longest ``source_task_id`` / ``source_run_id`` (characters; at most 4 KiB of UTF-8).
MAX_SOURCE_ID_LENGTH = 1024
#: The most aliases one event may be emitted through, and their total UTF-8 size: what
#: every backend stores in one row, whatever its text column's limit.
MAX_ALIASES = 100
MAX_ALIASES_BYTES = 16 * 1024
#: Event times and time bounds must lie in this range (UTC): a day inside the range of
#: ``datetime``, so that converting between time zones never overflows.
MIN_TIMESTAMP = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
MAX_TIMESTAMP = dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=dt.UTC)

_MAX_ALIAS_LENGTH = MAX_URI_LENGTH  # as every name (models.MAX_NAME_LENGTH)


def check_text(value: object, what: str, *, max_length: int) -> str:
    """Return ``value`` if it is a str every backend stores as given: no NUL, no lone
    surrogate, at most ``max_length`` characters; else :class:`AssetTypeError` /
    :class:`AssetValueError` naming ``what``."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise AssetTypeError(f"{what} must be a str, not {type(value).__name__}")
        value = str(value)  # a str subclass is stored as its plain text
    if len(value) > max_length:
        raise AssetValueError(f"{what} must be at most {max_length} characters, got {len(value)}")
    if "\x00" in value:
        raise AssetValueError(f"{what} must not contain a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise AssetValueError(f"{what} must be valid unicode (no lone surrogates)") from None
    return value


def check_source_id(value: object, what: str) -> str | None:
    """``source_task_id`` / ``source_run_id``: ``None`` or a storable str of at most
    :data:`MAX_SOURCE_ID_LENGTH` characters."""
    if value is None:
        return None
    return check_text(value, what, max_length=MAX_SOURCE_ID_LENGTH)


def check_aliases(aliases: object) -> tuple[str, ...]:
    """The alias names of an event as a tuple: an iterable of names (``AssetAlias`` objects
    are taken by name) but never a lone str, which would read as one alias per character;
    at most :data:`MAX_ALIASES` names of at most :data:`MAX_ALIASES_BYTES` together."""
    if isinstance(aliases, str | bytes | bytearray):
        raise AssetTypeError(
            f"aliases must be a list of alias names or AssetAlias objects, not a single "
            f"{type(aliases).__name__}; write aliases=[{aliases!r}]"
        )
    if not isinstance(aliases, Iterable):
        raise AssetTypeError(
            f"aliases must be a list of alias names or AssetAlias objects, "
            f"not {type(aliases).__name__}"
        )
    names: list[str] = []
    size = 0
    for alias in aliases:
        name = getattr(alias, "name", alias) if not isinstance(alias, str) else alias
        if not isinstance(name, str):
            raise AssetTypeError(
                f"an alias name must be a str or AssetAlias, not {type(alias).__name__}"
            )
        if not name.strip():
            raise AssetValueError("an alias name must not be empty")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise AssetValueError(f"an alias name must not contain control characters: {name!r}")
        check_text(name, "an alias name", max_length=_MAX_ALIAS_LENGTH)
        names.append(name)
        if len(names) > MAX_ALIASES:
            raise AssetValueError(f"an event may be emitted through at most {MAX_ALIASES} aliases")
        size += len(name.encode("utf-8"))
        if size > MAX_ALIASES_BYTES:
            raise AssetValueError(
                f"the alias names of an event take over {MAX_ALIASES_BYTES} bytes of UTF-8 "
                "together; use fewer or shorter aliases"
            )
    return tuple(names)


def check_id(value: object, what: str, *, minimum: int = 0) -> int | None:
    """``None`` or an int (``bool`` refused) in ``minimum..MAX_ID``: event ids, cursors,
    limits and versions, which every backend keeps in a signed 64-bit column."""
    if value is None:
        return None
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AssetTypeError(f"{what} must be an int, not {type(value).__name__}")
        value = int(value)
    if value < minimum or value > MAX_ID:
        raise AssetValueError(f"{what} must be an int from {minimum} to {MAX_ID}, got {value}")
    return value


def check_timestamp(value: object, what: str) -> dt.datetime | None:
    """``None`` or a timezone-aware ``datetime`` between :data:`MIN_TIMESTAMP` and
    :data:`MAX_TIMESTAMP`, returned in UTC (naive datetimes are refused: their zone is a
    guess)."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise AssetTypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise AssetValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        utc = None
    if utc is None or not MIN_TIMESTAMP <= utc <= MAX_TIMESTAMP:
        raise AssetValueError(
            f"{what} must lie between {MIN_TIMESTAMP.isoformat()} and "
            f"{MAX_TIMESTAMP.isoformat()}, got {value.isoformat()}"
        )
    return utc
