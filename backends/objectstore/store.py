"""The asset store of the objectstore backend: one ``store/...`` document per entry,
written by create-if-absent or replace-if-the-ETag-matches, and the sweep of inactive assets.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

from assetry.backend import (
    ANY_VERSION,
    StoreEntry,
    not_found_error,
    utcnow,
    version_conflict,
)
from assetry.errors import BackendUnavailableError, ConflictError
from assetry.values import canonical_json

from .base import (
    TOKEN_HISTORY,
    UNKNOWN,
    ObjectStoreBase,
    SeenVersion,
    parse_time,
    pause_after_lost_race,
    write_token,
)
from .keys import Layout, decode_component
from .storage import PreconditionFailed

__all__ = ["ObjectStoreStore"]


class ObjectStoreStore(ObjectStoreBase):
    """Entries with integer versions; compare-and-set is exact because every write is
    conditional."""

    # -- asset store --------------------------------------------------------------------------

    def _entry(self, key: str, doc: Mapping[str, Any], asset: str) -> StoreEntry:
        if doc.get("asset") != asset:
            raise self._mismatch(key, "asset", asset, doc.get("asset"))
        return StoreEntry(
            key=doc["key"],
            value_json=canonical_json(doc["value"]),
            version=int(doc["version"]),
            partition=doc.get("partition"),
            updated_at=parse_time(doc.get("updated_at")),
        )

    @staticmethod
    def _entry_doc(
        asset: str,
        key: str,
        partition: str | None,
        version: int,
        value_json: str,
        tokens: tuple[str, ...],
        updated_at: dt.datetime | None = None,
    ) -> bytes:
        """An entry's document; ``tokens`` are this write's token and its predecessors'."""
        head = canonical_json(
            {
                "asset": asset,
                "key": key,
                "partition": partition,
                "version": version,
                "updated_at": (updated_at or utcnow()).isoformat(),
                "w": tokens[0],
                "h": list(tokens[1:TOKEN_HISTORY]),
            }
        )
        # the value is already canonical JSON: embed it as is, so the document stays readable
        return f'{head[:-1]},"value":{value_json}}}'.encode()

    @staticmethod
    def _tokens(doc: Mapping[str, Any]) -> tuple[str, ...]:
        """The write tokens of an entry document, newest first."""
        return (str(doc.get("w", "")), *(str(t) for t in doc.get("h") or ()))

    def _landed(
        self, asset: str, key: str, partition: str | None, path: str, token: str, version: int
    ) -> bool:
        """After a write whose answer was lost and whose resend was refused: whether the
        write (``token``, making ``version``) is in the entry's history. Raises when the
        history no longer reaches back to ``version``."""
        blob = self.storage.get(path)
        doc = self._parse(path, blob) if blob is not None else None
        tokens = self._tokens(doc) if doc is not None else ()
        if token in tokens:
            return True
        current = int(doc["version"]) if doc is not None else 0
        if 0 <= current - version < len(tokens):
            return False  # the history covers that version, and it was another writer's
        raise BackendUnavailableError(
            f"the write of asset {asset!r} key {key!r} in {self._display_url} lost its answer "
            "and the entry has changed too much since to tell whether it was applied; read "
            "the key again before retrying"
        )

    def _read_entry(
        self, asset: str, key: str, partition: str | None, path: str
    ) -> tuple[StoreEntry, SeenVersion] | None:
        blob = self.storage.get(path)
        if blob is None:
            self._forget(path)
            return None
        doc = self._parse(path, blob)
        entry = self._entry(path, doc, asset)
        if entry.key != key or entry.partition != partition:
            raise self._mismatch(path, "key", (partition, key), (entry.partition, entry.key))
        seen = SeenVersion(blob.etag, entry.version, self._tokens(doc))
        self._versions.put(path, seen)
        return entry, seen

    def store_get(self, asset: str, key: str, partition: str | None = None) -> StoreEntry | None:
        found = self._read_entry(asset, key, partition, Layout.store_entry(asset, key, partition))
        return found[0] if found else None

    def store_set(
        self,
        asset: str,
        key: str,
        value_json: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> int:
        self._check_writable(asset)
        path = Layout.store_entry(asset, key, partition)
        state: Any = self._versions.get(path, UNKNOWN)
        deadline = time.monotonic() + 60.0
        attempt = 0
        while True:
            attempt += 1
            if expected_version is None:
                tokens = (write_token(),)
                try:
                    etag = self.storage.put(
                        path,
                        self._entry_doc(asset, key, partition, 1, value_json, tokens),
                        if_none_match=True,
                    )
                except PreconditionFailed as exc:
                    if getattr(exc, "ambiguous", False) and self._landed(
                        asset, key, partition, path, tokens[0], 1
                    ):
                        self._forget(path)
                        return 1
                    found = self._read_entry(asset, key, partition, path)
                    if found is None:
                        continue  # deleted meanwhile: try again
                    raise version_conflict(asset, key, None, found[0].version) from None
                self._remember(path, etag, 1, tokens)
                return 1
            fresh = False
            if state is UNKNOWN:
                found = self._read_entry(asset, key, partition, path)
                state = found[1] if found else None
                fresh = True
            if expected_version is not ANY_VERSION:
                actual = state.version if state is not None else None
                if actual != expected_version:
                    if fresh:
                        raise version_conflict(asset, key, expected_version, actual)
                    state = UNKNOWN  # what we remember disagrees: read before deciding
                    continue
            version = 1 if state is None else state.version + 1
            tokens = (write_token(), *(state.tokens if state is not None else ()))[:TOKEN_HISTORY]
            data = self._entry_doc(asset, key, partition, version, value_json, tokens)
            try:
                if state is None:
                    etag = self.storage.put(path, data, if_none_match=True)
                else:
                    etag = self.storage.put(path, data, if_match=state.etag)
            except PreconditionFailed as exc:
                if getattr(exc, "ambiguous", False) and self._landed(
                    asset, key, partition, path, tokens[0], version
                ):
                    self._forget(path)  # it landed, and others may have written since
                    return version
                # someone else wrote: read again and decide
                state = UNKNOWN
                if time.monotonic() > deadline:
                    raise ConflictError(
                        f"write of asset {asset!r} key {key!r} lost {attempt} races in 60s; "
                        "the key is too contended"
                    ) from None
                pause_after_lost_race(attempt)
                continue
            self._remember(path, etag, version, tokens)
            return version

    def store_delete(
        self,
        asset: str,
        key: str,
        partition: str | None = None,
        *,
        expected_version: Any = ANY_VERSION,
    ) -> bool:
        self._check_writable(asset)
        path = Layout.store_entry(asset, key, partition)
        state: Any = self._versions.get(path, UNKNOWN)
        attempt = 0
        while True:
            attempt += 1
            fresh = False
            if state is UNKNOWN:
                found = self._read_entry(asset, key, partition, path)
                state = found[1] if found else None
                fresh = True
            if expected_version is not ANY_VERSION:
                actual = state.version if state is not None else None
                if actual != expected_version:
                    if fresh:
                        raise version_conflict(asset, key, expected_version, actual)
                    state = UNKNOWN
                    continue
            if state is None:
                return False
            try:
                self.storage.delete(path, if_match=state.etag)
            except PreconditionFailed:
                state = UNKNOWN
                pause_after_lost_race(attempt)
                continue
            self._forget(path)
            return True

    def store_clear(
        self, asset: str, partition: str | None = None, *, all_partitions: bool = False
    ) -> int:
        self._check_writable(asset)
        folder = (
            Layout.store_root(asset) if all_partitions else Layout.store_namespace(asset, partition)
        )
        keys = self.storage.list(folder)
        self.storage.delete_many(keys)
        for key in keys:
            self._forget(key)
        return len(keys)

    def import_store(self, asset: str, entries: Sequence[StoreEntry]) -> int:
        if self._read_asset(asset) is None:
            raise not_found_error(asset)
        for entry in entries:
            path = Layout.store_entry(asset, entry.key, entry.partition)
            data = self._entry_doc(
                asset,
                entry.key,
                entry.partition,
                entry.version,
                entry.value_json,
                (write_token(),),
                entry.updated_at,
            )
            self._forget(path)
            self.storage.put(path, data)
            self._forget(path)
        return len(entries)

    def store_entries(self, asset: str, partition: str | None = None) -> list[StoreEntry]:
        keys = self.storage.list(Layout.store_namespace(asset, partition))
        entries: list[StoreEntry] = []
        for path, blob in zip(keys, self.storage.get_many(keys), strict=True):
            if blob is None:
                continue
            doc = self._parse(path, blob)
            entry = self._entry(path, doc, asset)
            self._remember(path, blob.etag, entry.version, self._tokens(doc))
            entries.append(entry)
        entries.sort(key=lambda e: e.key)
        return entries

    def store_keys(self, asset: str, partition: str | None = None) -> list[str]:
        """Keys from the listing alone; only hashed (very long) keys need their document."""
        paths = self.storage.list(Layout.store_namespace(asset, partition))
        return sorted(self._names(paths, "key"))

    def store_partitions(self, asset: str) -> list[str]:
        root = Layout.store_partitions_root(asset)
        first_key: dict[str, str] = {}
        for path in self.storage.list(root):
            component = path[len(root) :].split("/", 1)[0]
            first_key.setdefault(component, path)
        names: set[str] = set()
        hashed: list[str] = []
        for component, path in first_key.items():
            name = decode_component(component)
            if name is None:
                hashed.append(path)
            else:
                names.add(name)
        for path, blob in zip(hashed, self.storage.get_many(hashed), strict=True):
            if blob is not None:
                names.add(self._parse(path, blob)["partition"])
        return sorted(names)

    # -- maintenance --------------------------------------------------------------------------

    def sweep(self, *, batch_size: int = 1000) -> int:
        """Delete the store objects of inactive assets, ``batch_size`` at a time, checking
        before each batch that the asset is still inactive. Events are kept: they are the
        history consumers' cursors point into."""
        batch_size = max(1, batch_size)
        removed = 0
        for record in self.list_assets(active=False):
            root = Layout.store_root(record.name)
            while True:
                batch: list[str] = []
                for page in self.storage.list_pages(root):
                    batch.extend(item.key for item in page[: batch_size - len(batch)])
                    if len(batch) >= batch_size:
                        break
                if not batch:
                    break
                current = self._read_asset(record.name)
                if current is None or current[0].active:
                    break  # reactivated (or removed) meanwhile: leave its store alone
                self.storage.delete_many(batch)
                for key in batch:
                    self._forget(key)
                removed += len(batch)
        return removed
