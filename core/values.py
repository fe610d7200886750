"""Validation and JSON encoding of asset-store keys, values and event extra.

Every backend stores what these functions return and nothing else, so the rules
(JSON only, no ``None``, no NaN/±Inf, bounded sizes) are enforced once, here.
"""

from __future__ import annotations

import json
import json.encoder
import math
from collections.abc import Callable, Mapping
from typing import Any

from .errors import StoreValueError

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_KEY_LENGTH",
    "MAX_NESTING",
    "canonical_json",
    "decode_value",
    "encode_extra",
    "encode_value",
    "validate_key",
    "validate_partition_key",
]

MAX_KEY_LENGTH = 512
DEFAULT_MAX_VALUE_BYTES = 64 * 1024
MAX_NESTING = 64


def validate_key(key: object) -> str:
    """Return ``key`` if it is a usable store key, else raise :class:`StoreValueError`."""
    if not isinstance(key, str):
        raise StoreValueError(f"a store key must be a str, not {type(key).__name__}")
    if not key:
        raise StoreValueError("a store key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise StoreValueError(
            f"a store key must be at most {MAX_KEY_LENGTH} characters, got {len(key)}"
        )
    if "\x00" in key:
        raise StoreValueError("a store key must not contain a NUL character")
    _check_surrogates(key, "a store key")
    return key


def validate_partition_key(partition_key: object) -> str:
    """Return ``partition_key`` if usable (same rules as a store key)."""
    if not isinstance(partition_key, str):
        raise StoreValueError(f"a partition key must be a str, not {type(partition_key).__name__}")
    if not partition_key:
        raise StoreValueError("a partition key must not be empty")
    if len(partition_key) > MAX_KEY_LENGTH:
        raise StoreValueError(f"a partition key must be at most {MAX_KEY_LENGTH} characters")
    if "\x00" in partition_key:
        raise StoreValueError("a partition key must not contain a NUL character")
    _check_surrogates(partition_key, "a partition key")
    return partition_key


def _check_surrogates(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreValueError(f"{what} must be valid unicode (no lone surrogates)") from None


def _check_json(value: Any, path: str, depth: int) -> None:
    if depth > MAX_NESTING:
        raise StoreValueError(f"value nested deeper than {MAX_NESTING} levels at {path}")
    if value is None:
        if depth == 0:
            raise StoreValueError(
                "None cannot be stored: use delete(key) to remove a key, or store another value"
            )
        return  # null inside a container is plain JSON
    if isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreValueError(f"{value!r} at {path} is not JSON (NaN and ±Infinity are not)")
        return
    if isinstance(value, str):
        _check_surrogates(value, f"the string at {path}")
        if "\x00" in value:
            raise StoreValueError(f"the string at {path} contains a NUL character")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for k, item in value.items():
            if not isinstance(k, str):
                raise StoreValueError(
                    f"dict keys must be str for JSON, got {type(k).__name__} at {path}"
                )
            _check_surrogates(k, f"a dict key at {path}")
            if "\x00" in k:
                raise StoreValueError(f"the dict key {k!r} at {path} contains a NUL character")
            _check_json(item, f"{path}[{k!r}]", depth + 1)
        return
    raise StoreValueError(
        f"{type(value).__name__} at {path} is not JSON-compatible "
        "(use str, int, float, bool, list or dict)"
    )


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_SORTED_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=True
)


def canonical_json(value: Any, *, sort_keys: bool = False) -> str:
    """The one JSON text form assetry writes: compact, non-ASCII kept, NaN/±Infinity refused
    (``ValueError``). ``sort_keys`` gives one text per value, for comparing values that a
    backend may have re-serialised (PostgreSQL's jsonb reorders keys)."""
    return (_SORTED_ENCODER if sort_keys else _ENCODER).encode(value)


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-compatible")


def _plain_iterencode() -> Callable[[Any, int], Any]:
    """``_ENCODER``'s C encoder, made once: ``JSONEncoder.encode`` makes a new one on every
    call (half of its time on a small value). Without its check for circular references,
    so only for values :func:`_plain` accepted (their nesting is bounded)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # no C accelerator: the plain encoder
        return lambda value, _level: (_ENCODER.encode(value),)
    encoder: Callable[[Any, int], Any] = make(
        None, _not_json, basestring, None, ":", ",", False, False, False
    )
    return encoder


_ITERENCODE = _plain_iterencode()


def _plain(value: Any, depth: int) -> bool:
    """Whether ``value`` is built only of exact ``dict`` (``str`` keys), ``list``, ``tuple``,
    ``str``, ``int``, ``float``, ``bool`` and nested ``None``, well within the nesting limit:
    then the encoder's own checks (NaN, ±Infinity) and a scan of its text (NUL, lone
    surrogates) are all the validation left. ``False`` means "check it the long way"."""
    if depth >= MAX_NESTING - 1:
        return False
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            if type(item) not in _LEAVES and not _plain(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            if type(item) not in _LEAVES and not _plain(item, depth + 1):
                return False
        return True
    return kind in _LEAVES


def _fast_encode(value: Any) -> tuple[str, int] | None:
    """The canonical text and its size in UTF-8 bytes of a value that passes every rule of
    :func:`_check_json`, found without walking it in Python where possible; ``None`` when
    the value needs the full check (which then names the offending part)."""
    if value is None or not _plain(value, 0):
        return None
    try:
        text = "".join(_ITERENCODE(value, 0))
        # ASCII text is its own UTF-8; other text must encode (a lone surrogate cannot)
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
    except (ValueError, UnicodeEncodeError):
        return None
    if "\\u0000" in text:  # a NUL character somewhere (or text that looks like one)
        return None
    return text, size


def encode_value(value: Any, *, max_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> str:
    """Validate a store value and return its canonical JSON text."""
    fast = _fast_encode(value)
    if fast is None:
        _check_json(value, "value", 0)
        text = canonical_json(value)
        size = len(text.encode("utf-8"))
    else:
        text, size = fast
    if size > max_bytes:
        raise StoreValueError(
            f"value is {size} bytes of JSON, over the limit of {max_bytes} bytes; "
            "store large data through the IO manager and keep a reference here"
        )
    return text


def encode_extra(
    extra: Mapping[str, Any] | None, *, max_bytes: int = DEFAULT_MAX_VALUE_BYTES
) -> str:
    """Validate an event's extra (a JSON object; ``None`` means empty) and return its JSON."""
    if extra is None:
        return "{}"
    if not isinstance(extra, Mapping):
        raise StoreValueError(f"event extra must be a dict, not {type(extra).__name__}")
    return encode_value(dict(extra), max_bytes=max_bytes)


def decode_value(text: str) -> Any:
    """Decode JSON text written by :func:`encode_value`."""
    return json.loads(text)
