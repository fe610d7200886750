"""Object keys of the ``objectstore`` backend: the one place where names become keys.

Every asset name, store key, partition key, alias and consumer passes through
:func:`encode_component` before it becomes part of an object key. The encoding is
injective and keeps every key under the backend's prefix:

- each UTF-8 byte outside ``[a-z0-9._-]`` is written as ``%XX`` (upper-case hex), so ``/``,
  ``%``, ``\\``, ``~``, control characters and non-ASCII text can never form a path
  separator or an escape of their own, and ``a/b`` (``a%2Fb``), ``a_b`` (``a_b``) and
  ``a%2Fb`` (``a%252Fb``) stay distinct;
- upper-case letters are escaped too, so keys stay distinct on case-insensitive
  filesystems (macOS, Windows) and a bucket copied to such a disk still works;
- the components ``.`` and ``..`` become ``%2E`` and ``%2E%2E`` (a lone dot is otherwise
  safe), so no component is ever a relative path step;
- a component whose encoding is longer than :data:`MAX_COMPONENT_LENGTH` characters is
  stored as ``~`` followed by the SHA-256 of its UTF-8 bytes. ``~`` is escaped everywhere
  else, so a hashed component never equals a plain one, and every document keeps the full
  name, which a reader compares, so the mapping stays injective (a SHA-256 collision would
  be reported, not silently merged). This bounds keys to well under S3's 1,024 bytes and a
  filesystem's 255-byte file names.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = [
    "MAX_COMPONENT_LENGTH",
    "MAX_PREFIX_BYTES",
    "Layout",
    "decode_component",
    "encode_component",
    "event_seq",
]

#: Longest plain encoded component; longer ones are hashed (``~`` + 64 hex digits).
MAX_COMPONENT_LENGTH: Final = 120
#: Longest key under the prefix: store/<asset>/p/<partition>/<key>.json with every part at
#: its maximum, rounded up.
MAX_RELATIVE_KEY_BYTES: Final = 6 + MAX_COMPONENT_LENGTH + 3 + MAX_COMPONENT_LENGTH + 1 + 125
#: S3 keys are at most 1,024 bytes; the prefix gets what the layout leaves.
MAX_PREFIX_BYTES: Final = 1024 - MAX_RELATIVE_KEY_BYTES - 1

_SAFE: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789._-")
_TABLE: Final = tuple(chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256))
_HASHED: Final = "~"
_SUFFIX: Final = ".json"
_SEQ_WIDTH: Final = 20


def encode_component(text: str) -> str:
    """The key component of a name: injective, never ``.``/``..``/empty, never with ``/``.

    Raises :class:`ValueError` for an empty string or one that is not valid unicode.
    """
    if not isinstance(text, str):
        raise TypeError(f"a key component must be a str, not {type(text).__name__}")
    if not text:
        raise ValueError("a key component must not be empty")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a key component must be valid unicode (no lone surrogates)") from None
    encoded = "".join([_TABLE[b] for b in raw])
    if len(encoded) > MAX_COMPONENT_LENGTH:
        return _HASHED + hashlib.sha256(raw).hexdigest()
    if encoded == ".":
        return "%2E"
    if encoded == "..":
        return "%2E%2E"
    return encoded


def decode_component(component: str) -> str | None:
    """The name a component encodes, or ``None`` for a hashed one (read its document)."""
    if component.startswith(_HASHED):
        return None
    out = bytearray()
    i = 0
    n = len(component)
    while i < n:
        c = component[i]
        if c == "%":
            out.append(int(component[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(c))
            i += 1
    return out.decode("utf-8")


def event_seq(object_name: str) -> int | None:
    """The sequence number of an event object's file name (``00000000000000000042.json``)."""
    if len(object_name) != _SEQ_WIDTH + len(_SUFFIX) or not object_name.endswith(_SUFFIX):
        return None
    digits = object_name[:_SEQ_WIDTH]
    return int(digits) if digits.isdigit() else None


class Layout:
    """Object keys relative to the backend's prefix (see the package docstring)."""

    FORMAT: Final = "format.json"
    ASSETS: Final = "assets"
    URIS: Final = "uris"
    STORE: Final = "store"
    EVENTS: Final = "events"
    HEADS: Final = "heads"
    ALIASES: Final = "aliases"
    CURSORS: Final = "cursors"
    ASSET_LEVEL: Final = "a"
    PARTITIONS: Final = "p"

    # -- registry ---------------------------------------------------------------------------

    @staticmethod
    def asset(name: str) -> str:
        return f"assets/{encode_component(name)}{_SUFFIX}"

    @staticmethod
    def uri(uri: str) -> str:
        return f"uris/{encode_component(uri)}{_SUFFIX}"

    # -- store ------------------------------------------------------------------------------

    @staticmethod
    def store_root(asset: str) -> str:
        """Every store object of an asset (asset level and partitions) is under this."""
        return f"store/{encode_component(asset)}/"

    @staticmethod
    def store_partitions_root(asset: str) -> str:
        return f"store/{encode_component(asset)}/p/"

    @staticmethod
    def store_namespace(asset: str, partition: str | None) -> str:
        """The folder of one namespace: ``a/`` for the asset level, ``p/<partition>/``."""
        base = f"store/{encode_component(asset)}/"
        if partition is None:
            return base + "a/"
        return f"{base}p/{encode_component(partition)}/"

    @classmethod
    def store_entry(cls, asset: str, key: str, partition: str | None) -> str:
        return f"{cls.store_namespace(asset, partition)}{encode_component(key)}{_SUFFIX}"

    # -- events -----------------------------------------------------------------------------

    @staticmethod
    def events_root(asset: str) -> str:
        return f"events/{encode_component(asset)}/"

    @staticmethod
    def event(asset: str, seq: int) -> str:
        return f"events/{encode_component(asset)}/{seq:0{_SEQ_WIDTH}d}{_SUFFIX}"

    @staticmethod
    def event_name(seq: int) -> str:
        """The file name of event ``seq`` (for listing after it)."""
        return f"{seq:0{_SEQ_WIDTH}d}{_SUFFIX}"

    @staticmethod
    def head(asset: str) -> str:
        return f"heads/{encode_component(asset)}{_SUFFIX}"

    @staticmethod
    def alias_root(alias: str) -> str:
        return f"aliases/{encode_component(alias)}/"

    @staticmethod
    def alias_marker(alias: str, asset: str) -> str:
        return f"aliases/{encode_component(alias)}/{encode_component(asset)}{_SUFFIX}"

    # -- cursors ----------------------------------------------------------------------------

    @staticmethod
    def cursor(consumer: str) -> str:
        return f"cursors/{encode_component(consumer)}{_SUFFIX}"

    # -- reading keys back ------------------------------------------------------------------

    @staticmethod
    def leaf(key: str) -> str:
        """The encoded component of an object key's file name (without ``.json``)."""
        name = key.rsplit("/", 1)[-1]
        return name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else name
