"""The asset registry of the sql backend: register, deactivate, look up and list assets."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from assetry.backend import AssetRecord, conflict_for_registration
from assetry.contracts import AssetContract
from assetry.errors import ConflictError
from assetry.retry import Backoff, retry_call
from assetry.values import canonical_json

from .base import ASSETS, SQLBase, from_us, now_us, to_us
from .engine import Held
from .schema import digest

__all__ = ["SQLRegistry"]

_REGISTER_BACKOFF = Backoff(base=0.001, cap=0.02, max_attempts=5)


class SQLRegistry(SQLBase):
    """Assets by name (and URI), each looked up through the digest of its name."""

    # -- asset registry -------------------------------------------------------------------------

    def register_asset(
        self,
        name: str,
        uri: str,
        *,
        group: str = "asset",
        extra_json: str = "{}",
        contract_json: str | None = None,
    ) -> AssetRecord:
        self._ready()
        name_hash, uri_hash = digest(name), digest(uri)
        extra = json.loads(extra_json)

        def register(held: Held, _cursor: Any) -> AssetRecord:
            conn = held.conn
            rows = conn.execute(
                sa.select(ASSETS).where(
                    sa.or_(ASSETS.c.name_hash == name_hash, ASSETS.c.uri_hash == uri_hash)
                )
            ).all()
            same_name = next((r for r in rows if r.name == name), None)
            if same_name is not None and same_name.uri != uri:
                raise conflict_for_registration(name, uri, self._record(same_name))
            same_uri = next((r for r in rows if r.uri == uri and r.name != name), None)
            if same_uri is not None:
                raise conflict_for_registration(name, uri, self._record(same_uri))
            now = now_us()
            values: dict[str, Any] = {"active": True, "asset_group": group, "extra": extra_json}
            if contract_json is not None:
                values["contract"] = None if contract_json == "{}" else contract_json
            contract = AssetContract.from_json(
                contract_json if contract_json is not None else getattr(same_name, "contract", None)
            )
            if same_name is not None:
                conn.execute(
                    sa.update(ASSETS)
                    .where(ASSETS.c.id == same_name.id)
                    .values(**values, updated_at_us=now)
                )
                created = same_name.created_at_us
            else:
                conn.execute(
                    sa.insert(ASSETS).values(
                        **values,
                        name=name,
                        name_hash=name_hash,
                        uri=uri,
                        uri_hash=uri_hash,
                        last_event_id=0,
                        created_at_us=now,
                        updated_at_us=now,
                    )
                )
                created = now
            return AssetRecord(
                name, uri, group, extra, True, from_us(created), from_us(now), contract
            )

        try:
            # Registered concurrently by another writer: read it again and decide.
            return retry_call(
                lambda: self._db.transaction(register),
                retry_on=sa.exc.IntegrityError,
                backoff=_REGISTER_BACKOFF,
            )
        except sa.exc.IntegrityError:
            raise ConflictError(
                f"asset {name!r} ({uri!r}) was being registered concurrently and "
                "did not settle; try again"
            ) from None

    def import_asset(self, record: AssetRecord) -> AssetRecord:
        self.register_asset(
            record.name,
            record.uri,
            group=record.group,
            extra_json=canonical_json(record.extra),
            contract_json=None if record.contract.is_default else record.contract.to_json(),
        )
        now = now_us()
        self._write(
            sa.update(ASSETS)
            .where(ASSETS.c.name_hash == digest(record.name))
            .values(
                active=record.active,
                created_at_us=to_us(record.created_at) if record.created_at else now,
                updated_at_us=to_us(record.updated_at) if record.updated_at else now,
            )
        )
        stored = self.get_asset(record.name)
        assert stored is not None
        return stored

    def deactivate_asset(self, name: str) -> bool:
        changed = self._write(
            sa.update(ASSETS)
            .where(ASSETS.c.name_hash == digest(name), ASSETS.c.active)
            .values(active=False, updated_at_us=now_us())
        )
        return changed > 0

    def get_asset(self, name: str) -> AssetRecord | None:
        rows = self._read(sa.select(ASSETS).where(ASSETS.c.name_hash == digest(name)))
        return self._record(rows[0]) if rows else None

    def get_asset_by_uri(self, uri: str) -> AssetRecord | None:
        rows = self._read(sa.select(ASSETS).where(ASSETS.c.uri_hash == digest(uri)))
        return self._record(rows[0]) if rows else None

    def list_assets(self, *, active: bool | None = None) -> list[AssetRecord]:
        query = sa.select(ASSETS)
        if active is not None:
            query = query.where(ASSETS.c.active == active)
        return sorted((self._record(r) for r in self._read(query)), key=lambda r: r.name)
