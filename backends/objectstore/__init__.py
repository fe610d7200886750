"""The ``objectstore`` ("S3-JSON") state backend: JSON documents on S3, a directory or memory.

``Instance(backend="objectstore", url="s3://bucket/prefix")``, or the URL alone, selects it.
It needs no server: every write is a conditional write on one object.

Layout under the prefix (``<x>`` is :func:`~assetry.backends.objectstore.keys.encode_component`
of a name, see :mod:`.keys`; every object is one JSON document):

==============================================  ============================================
``format.json``                                 layout version
``assets/<asset>.json``                         registry: name, uri, group, extra, active
``uris/<uri>.json``                             the claim of a URI by one asset name
``store/<asset>/a/<key>.json``                  an asset-level store entry (value, version)
``store/<asset>/p/<partition>/<key>.json``      a partition-scoped store entry
``events/<asset>/<seq:020d>.json``              event ``seq`` (1, 2, 3, ...) of the asset
``heads/<asset>.json``                          hint: an event seq known to exist
``aliases/<alias>/<asset>.json``                marker: events reached the asset via alias
``cursors/<consumer>.json``                     a consumer's last seen event id per asset
==============================================  ============================================

Concurrency, without a server:

- Store entries carry an integer ``version``. A write is *create if absent* or *replace if
  the ETag is the one last read* (S3 ``If-None-Match: *`` / ``If-Match``; a lock file and
  ``os.link``/``os.replace`` locally; a process lock in memory). A lost race (412) means
  someone else wrote: the backend reads again and decides, so compare-and-set is exact and
  ``AssetStore.update`` retries until it wins. The backend remembers the ETag and version
  of what it last read or wrote, so ``get`` is one GET and ``set`` of a known key one PUT.
- Events: a writer creates ``events/<asset>/<k+1>.json`` with ``If-None-Match: *`` only
  after seeing event ``k`` exist. The existing events are therefore always ``1..N`` with no
  gap, a reader listing "after its cursor" can never skip one (S3 lists what it has
  acknowledged), and concurrent appenders never overwrite each other: the loser lists past
  the winner and tries the next number. ``heads/<asset>.json`` lets a new process start
  listing near the end; it is refreshed every few dozen events, and being stale costs only
  a longer listing.
- Registration claims the URI in ``uris/`` with a create-if-absent before writing the
  asset document, and checks the claim again afterwards, so two names never share a URI.

Every document a write produces carries a random token, so bytes never repeat: a write
retried after an ambiguous failure (timeout, 5xx) recognises itself instead of reporting a
conflict. Throttling and 5xx are retried with exponential backoff and jitter, then raised as
:class:`~assetry.errors.BackendUnavailableError` with the URL masked.

``gs://`` and ``az://`` select this backend by scheme but are refused with a clear error:
their conditional writes are not wired up yet.
"""

from __future__ import annotations

from .backend import ObjectStoreBackend
from .base import LAYOUT_VERSION
from .keys import Layout, decode_component, encode_component

__all__ = [
    "LAYOUT_VERSION",
    "Layout",
    "ObjectStoreBackend",
    "decode_component",
    "encode_component",
]
