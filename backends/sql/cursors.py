"""Consumer cursors of the sql backend: the last event id each consumer has read per asset."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from .base import CURSORS, SQLBase
from .schema import digest

__all__ = ["SQLCursors"]


class SQLCursors(SQLBase):
    """One row per (consumer, asset), keyed by the digests of both names."""

    # -- consumer cursors -----------------------------------------------------------------------

    def get_cursors(self, consumer: str) -> dict[str, int]:
        rows = self._read(
            sa.select(CURSORS.c.asset, CURSORS.c.event_id).where(
                CURSORS.c.consumer_hash == digest(consumer)
            )
        )
        return {r.asset: int(r.event_id) for r in rows}

    def set_cursors(self, consumer: str, cursors_: Mapping[str, int]) -> None:
        if not cursors_:
            return
        sql = self._ready()
        consumer_hash = digest(consumer)
        rows = [
            {
                "consumer_hash": consumer_hash,
                "asset_hash": digest(asset),
                "consumer": consumer,
                "asset": asset,
                "event_id": int(event_id),
            }
            for asset, event_id in sorted(cursors_.items())
        ]
        upsert = sql.upsert(CURSORS, ["consumer_hash", "asset_hash"])
        self._db.transaction(lambda held, _cursor: held.conn.execute(upsert, rows))

    def list_consumers(self) -> list[str]:
        rows = self._read(sa.select(CURSORS.c.consumer).distinct())
        return sorted(r.consumer for r in rows)
