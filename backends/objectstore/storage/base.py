"""The interface every storage driver of the objectstore backend implements: byte objects
under one root with atomic create-if-absent and replace-if-the-ETag-matches."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["PAGE_SIZE", "Blob", "Listed", "ObjectStorage", "PreconditionFailed", "md5_etag"]

#: Keys per page when listing (S3's maximum).
PAGE_SIZE = 1000


class PreconditionFailed(Exception):
    """A conditional write or delete lost: the object exists, is gone, or has changed."""


@dataclass(frozen=True, slots=True)
class Blob:
    """An object's bytes and the ETag they were read with."""

    data: bytes
    etag: str


class Listed(NamedTuple):
    """A key from a listing, with the object's size in bytes."""

    key: str
    size: int


def md5_etag(data: bytes) -> str:
    """The ETag of ``data`` on drivers without their own: its MD5, hex."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class ObjectStorage(abc.ABC):
    """Byte objects under one root with atomic create-if-absent and replace-if-match."""

    #: Whether several processes can share the objects safely.
    multi_process: bool = True

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the objects are, with secrets masked."""

    @abc.abstractmethod
    def get(self, key: str) -> Blob | None:
        """The object under ``key``, or ``None``."""

    def get_many(self, keys: Sequence[str]) -> list[Blob | None]:
        """The objects under ``keys``, in order (concurrently where the storage allows)."""
        return [self.get(k) for k in keys]

    @abc.abstractmethod
    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        """Write ``data`` under ``key`` and return its ETag.

        ``if_none_match``: only if no object exists; ``if_match``: only if the object's
        ETag is that one. Raises :class:`PreconditionFailed` when the condition fails.
        """

    @abc.abstractmethod
    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete ``key`` (a missing key is a no-op unless ``if_match`` is given, which
        raises :class:`PreconditionFailed` when the object is gone or has changed)."""

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write several objects unconditionally (concurrently where the storage allows)."""
        for key, data in items:
            self.put(key, data)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete several keys unconditionally."""
        for key in keys:
            self.delete(key)

    @abc.abstractmethod
    def list_pages(self, folder: str, *, start_after: str | None = None) -> Iterator[list[Listed]]:
        """Keys under ``folder`` (which ends in ``/``; recursive) with their sizes, ascending,
        page by page. ``start_after`` is a full key: only keys sorting after it are listed."""

    def list(self, folder: str, *, start_after: str | None = None) -> list[str]:
        """Every key under ``folder``, ascending."""
        return [
            item.key for page in self.list_pages(folder, start_after=start_after) for item in page
        ]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
