"""Consumer cursors of the objectstore backend: one ``cursors/<consumer>.json`` document
per consumer, merged and written conditionally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assetry.values import canonical_json

from .base import UNKNOWN, ObjectStoreBase, pause_after_lost_race, write_token
from .keys import Layout
from .storage import PreconditionFailed

__all__ = ["ObjectStoreCursors"]


class ObjectStoreCursors(ObjectStoreBase):
    """The last event id each consumer has read, per asset."""

    # -- consumer cursors ---------------------------------------------------------------------

    def _read_cursors(self, consumer: str) -> tuple[dict[str, int], str] | None:
        key = Layout.cursor(consumer)
        blob = self.storage.get(key)
        if blob is None:
            return None
        doc = self._parse(key, blob)
        if doc.get("consumer") != consumer:
            raise self._mismatch(key, "consumer", consumer, doc.get("consumer"))
        cursors = {str(k): int(v) for k, v in (doc.get("cursors") or {}).items()}
        with self._lock:
            self._cursor_docs[consumer] = (blob.etag, cursors)
        return cursors, blob.etag

    def get_cursors(self, consumer: str) -> dict[str, int]:
        found = self._read_cursors(consumer)
        return dict(found[0]) if found else {}

    def set_cursors(self, consumer: str, cursors: Mapping[str, int]) -> None:
        if not cursors:
            return
        key = Layout.cursor(consumer)
        with self._lock:
            known = self._cursor_docs.get(consumer)
        state: Any = known if known is not None else UNKNOWN
        attempt = 0
        while True:
            attempt += 1
            if state is UNKNOWN:
                found = self._read_cursors(consumer)
                state = (found[1], found[0]) if found else None
            merged = {**(state[1] if state else {}), **{k: int(v) for k, v in cursors.items()}}
            data = canonical_json(
                {"consumer": consumer, "cursors": merged, "w": write_token()}
            ).encode()
            try:
                if state is None:
                    etag = self.storage.put(key, data, if_none_match=True)
                else:
                    etag = self.storage.put(key, data, if_match=state[0])
            except PreconditionFailed:
                state = UNKNOWN
                pause_after_lost_race(attempt)
                continue
            with self._lock:
                self._cursor_docs[consumer] = (etag, merged)
            return

    def list_consumers(self) -> list[str]:
        return sorted(self._names(self.storage.list(f"{Layout.CURSORS}/"), "consumer"))
