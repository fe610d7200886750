"""The asset registry of the objectstore backend: ``assets/<asset>.json`` documents and the
``uris/<uri>.json`` claims that keep one URI to one name.
"""

from __future__ import annotations

import contextlib
import json

from assetry.backend import AssetRecord, conflict_for_registration, utcnow
from assetry.contracts import DEFAULT_CONTRACT, AssetContract
from assetry.uri_upgrade import plan_renormalisation
from assetry.values import canonical_json

from .base import ObjectStoreBase, pause_after_lost_race, replace_record, write_token
from .keys import Layout
from .storage import PreconditionFailed

__all__ = ["ObjectStoreRegistry"]


class ObjectStoreRegistry(ObjectStoreBase):
    """Register, deactivate, look up and list assets."""

    def register_asset(
        self,
        name: str,
        uri: str,
        *,
        group: str = "asset",
        extra_json: str = "{}",
        contract_json: str | None = None,
    ) -> AssetRecord:
        self._ensure_format()
        key = Layout.asset(name)
        extra = json.loads(extra_json)
        attempt = 0
        while True:
            attempt += 1
            current = self._read_asset(name)
            if current is not None and current[0].uri != uri:
                raise conflict_for_registration(name, uri, current[0])
            self._claim_uri(name, uri)
            now = utcnow()
            record = AssetRecord(
                name=name,
                uri=uri,
                group=group,
                extra=extra,
                active=True,
                created_at=current[0].created_at if current else now,
                updated_at=now,
                contract=(
                    AssetContract.from_json(contract_json)
                    if contract_json is not None
                    else current[0].contract
                    if current
                    else DEFAULT_CONTRACT
                ),
            )
            try:
                if current is None:
                    etag = self.storage.put(key, self._asset_doc(record), if_none_match=True)
                else:
                    etag = self.storage.put(key, self._asset_doc(record), if_match=current[1])
            except PreconditionFailed:
                pause_after_lost_race(attempt)
                continue  # registered or changed meanwhile: read again and decide
            owner = self._claim_owner(uri)
            if owner != name:
                # the claim was taken while our document did not exist yet: the other wins
                if current is None:
                    with contextlib.suppress(PreconditionFailed):
                        self.storage.delete(key, if_match=etag)
                    self._read_asset(name)
                other = self._read_asset(owner) if owner else None
                raise conflict_for_registration(
                    name, uri, other[0] if other else AssetRecord(name=owner or "?", uri=uri)
                )
            self._cache_record(record)
            return record

    def _claim_doc(self, name: str, uri: str) -> bytes:
        return canonical_json({"uri": uri, "name": name, "w": write_token()}).encode()

    def _claim_owner(self, uri: str) -> str | None:
        key = Layout.uri(uri)
        blob = self.storage.get(key)
        if blob is None:
            return None
        doc = self._parse(key, blob)
        if doc.get("uri") != uri:
            raise self._mismatch(key, "uri", uri, doc.get("uri"))
        return str(doc["name"])

    def _claim_uri(self, name: str, uri: str) -> None:
        """Make ``uris/<uri>`` name ``name``, or raise ConflictError if another asset has it."""
        key = Layout.uri(uri)
        attempt = 0
        while True:
            attempt += 1
            try:
                self.storage.put(key, self._claim_doc(name, uri), if_none_match=True)
                return
            except PreconditionFailed:
                pass
            blob = self.storage.get(key)
            if blob is None:
                continue
            doc = self._parse(key, blob)
            if doc.get("uri") != uri:
                raise self._mismatch(key, "uri", uri, doc.get("uri"))
            if doc["name"] == name:
                return
            owner = self._read_asset(doc["name"])
            if owner is not None and owner[0].uri == uri:
                raise conflict_for_registration(name, uri, owner[0])
            # a stale claim: its asset is gone or was registered with another URI
            try:
                self.storage.put(key, self._claim_doc(name, uri), if_match=blob.etag)
                return
            except PreconditionFailed:
                pause_after_lost_race(attempt)

    def import_asset(self, record: AssetRecord) -> AssetRecord:
        self.register_asset(
            record.name,
            record.uri,
            group=record.group,
            extra_json=canonical_json(record.extra),
            contract_json=None if record.contract.is_default else record.contract.to_json(),
        )
        attempt = 0
        while True:
            attempt += 1
            current = self._read_asset(record.name)
            if current is None:  # removed meanwhile: register it again
                return self.import_asset(record)
            now = utcnow()
            stored = replace_record(
                current[0],
                active=record.active,
                created_at=record.created_at or now,
                updated_at=record.updated_at or now,
            )
            try:
                self.storage.put(
                    Layout.asset(record.name), self._asset_doc(stored), if_match=current[1]
                )
            except PreconditionFailed:
                pause_after_lost_race(attempt)
                continue
            self._cache_record(stored)
            return stored

    def _renormalise_uris(self) -> int:
        """Layout 2: every asset whose stored URI :func:`assetry.urls.normalize_uri` now
        writes otherwise claims the new form, its document takes it, and the old claim goes;
        a clash stops it before anything is written. Return how many assets changed."""
        keys = self.storage.list(f"{Layout.ASSETS}/")
        records = [
            self._record(self._parse(key, blob))
            for key, blob in zip(keys, self.storage.get_many(keys), strict=True)
            if blob is not None
        ]
        changes = plan_renormalisation((r.name, r.uri) for r in records)
        for name, old, new in changes:
            self._move_uri(name, old, new)
        return len(changes)

    def _move_uri(self, name: str, old: str, new: str) -> None:
        self._claim_uri(name, new)
        attempt = 0
        while True:
            attempt += 1
            current = self._read_asset(name)
            if current is None or current[0].uri != old:
                break  # removed or changed meanwhile: nothing of ours to move
            record = replace_record(current[0], uri=new)
            try:
                self.storage.put(Layout.asset(name), self._asset_doc(record), if_match=current[1])
            except PreconditionFailed:
                pause_after_lost_race(attempt)
                continue
            self._cache_record(record)
            break
        key = Layout.uri(old)
        blob = self.storage.get(key)
        if blob is not None and self._parse(key, blob).get("name") == name:
            with contextlib.suppress(PreconditionFailed):
                self.storage.delete(key, if_match=blob.etag)

    def deactivate_asset(self, name: str) -> bool:
        key = Layout.asset(name)
        attempt = 0
        while True:
            attempt += 1
            current = self._read_asset(name)
            if current is None or not current[0].active:
                return False
            record = replace_record(current[0], active=False, updated_at=utcnow())
            try:
                self.storage.put(key, self._asset_doc(record), if_match=current[1])
            except PreconditionFailed:
                pause_after_lost_race(attempt)
                continue
            self._cache_record(record)
            return True

    def get_asset(self, name: str) -> AssetRecord | None:
        found = self._read_asset(name)
        return found[0] if found else None

    def get_asset_by_uri(self, uri: str) -> AssetRecord | None:
        self._check_layout()  # URIs claimed under layout 1 may be in their old form
        owner = self._claim_owner(uri)
        if owner is None:
            return None
        record = self.get_asset(owner)
        return record if record is not None and record.uri == uri else None

    def list_assets(self, *, active: bool | None = None) -> list[AssetRecord]:
        keys = self.storage.list(f"{Layout.ASSETS}/")
        records: list[AssetRecord] = []
        for key, blob in zip(keys, self.storage.get_many(keys), strict=True):
            if blob is None:
                continue  # deleted between listing and reading
            record = self._record(self._parse(key, blob))
            self._cache_record(record)
            records.append(record)
        records.sort(key=lambda r: r.name)
        return [r for r in records if active is None or r.active == active]
