"""Objects with conditional writes on three kinds of storage: S3, a local directory, memory.

An :class:`ObjectStorage` (the interface, in ``base``) holds byte objects under one root,
addressed by relative keys (``assets/orders.json``), and offers the two primitives the backend builds everything on:
*create if absent* and *replace if the ETag still matches*. Each driver makes them atomic in
its own way:

- :class:`S3Storage`: S3 conditional writes (``If-None-Match: *``, ``If-Match: <etag>``,
  and ``If-Match`` on delete, which AWS honours on general-purpose buckets since 2025; an
  S3-compatible store that ignores it turns a conditional delete into a plain one), called
  on s3fs's aiobotocore client; throttling, 5xx and connection errors are retried with
  exponential backoff and full jitter, then reported as
  :class:`~assetry.errors.BackendUnavailableError` with the masked URL.
- :class:`LocalStorage`: files; a write goes to a temporary file (fsynced) that is
  ``os.link``-ed into place for a create and ``os.replace``-d for a replace, under an
  ``fcntl.flock`` on one of 64 lock files chosen by the key, so compare-and-set is
  atomic across processes.
- :class:`MemoryStorage`: fsspec's process-wide memory filesystem behind one process-wide
  lock.

ETags are opaque strings: S3's own, or the MD5 of the bytes elsewhere (the backend puts a
random token in every document it writes, so two writes never have the same bytes).
One module per driver (``s3``, ``local``, ``memory``); this package exports them all.
"""

from __future__ import annotations

from .base import PAGE_SIZE, Blob, Listed, ObjectStorage, PreconditionFailed
from .local import LocalStorage
from .memory import MemoryStorage
from .s3 import DEFAULT_RETRY, S3Storage, single_send_session_class

__all__ = [
    "DEFAULT_RETRY",
    "PAGE_SIZE",
    "Blob",
    "Listed",
    "LocalStorage",
    "MemoryStorage",
    "ObjectStorage",
    "PreconditionFailed",
    "S3Storage",
    "single_send_session_class",
]
