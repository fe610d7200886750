"""``AssetryStoreBackend``: Airflow's ``[state_store] backend`` with the asset store in assetry.

Asset scopes are kept in assetry, on whatever assetry backend is configured (SQLite,
PostgreSQL, MySQL, S3 with conditional writes, ...); task scopes are left to Airflow's own
metastore backend, which this class extends, so task state, ``airflow state-store clean``
and the execution API's writer checks work as they do without assetry. Airflow's
``asset_state_store`` table is never written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow._shared.state import AssetScope, AssetStateStoreWriterKind, StoreScope
from airflow.models.asset import AssetActive, AssetModel
from airflow.state.metastore import MetastoreBackend
from airflow.utils.session import create_session
from sqlalchemy import select

from ..errors import AssetInactiveError
from ..instance import Instance
from ._common import (
    EXTRA_KEY,
    AirflowAsset,
    AssetMapper,
    build_instance,
    is_task_scope,
    log,
    text_from_value_json,
    value_for_text,
)

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["AssetryStoreBackend"]

T = TypeVar("T")


class AssetryStoreBackend(MetastoreBackend):
    """Airflow's state backend with asset scopes in assetry and task scopes in the metastore.

    Airflow builds it with no arguments: the assetry instance then comes from
    ``[assetry] backend_url`` (or ``backend``) in Airflow's configuration, else from
    assetry's own configuration. ``instance=`` gives one explicitly (tests, embedding).

    An ``AssetScope`` with an ``asset_id`` (what the execution API passes) is looked up in
    Airflow's asset table for its name and URI; one with only a name or URI is taken as is.
    Values are Airflow's text, kept as JSON values in assetry where they are JSON (see
    :mod:`assetry.airflow._common`), so ``AssetStore.update``/``advance``/``compare_and_set``
    work on the entries Airflow tasks read and write.
    """

    def __init__(self, *, instance: Instance | None = None) -> None:
        super().__init__()
        self.instance = instance if instance is not None else build_instance()
        self.assets = AssetMapper(self.instance)
        self._ids: dict[int, AirflowAsset] = {}

    def __repr__(self) -> str:
        return f"AssetryStoreBackend({self.instance.backend.describe()})"

    # -- asset lookup ----------------------------------------------------------------------

    def _identity(self, scope: AssetScope, session: Session | None) -> AirflowAsset | None:
        if scope.asset_id is not None and scope.asset_id in self._ids:
            return self._ids[scope.asset_id]
        query = _asset_query(scope)
        if session is not None:
            row = session.execute(query).first()
        else:
            with create_session() as own:
                row = own.execute(query).first()
        return self._remember(scope, row)

    async def _aidentity(
        self, scope: AssetScope, session: AsyncSession | None
    ) -> AirflowAsset | None:
        if scope.asset_id is not None and scope.asset_id in self._ids:
            return self._ids[scope.asset_id]
        query = _asset_query(scope)
        if session is not None:
            row = (await session.execute(query)).first()
        else:
            from airflow.utils.session import create_session_async

            async with create_session_async() as own:
                row = (await own.execute(query)).first()
        return self._remember(scope, row)

    def _remember(self, scope: AssetScope, row: Any) -> AirflowAsset | None:
        if row is None:
            return None
        asset = AirflowAsset(row.name, row.uri, row.group or "asset", row.id)
        if scope.asset_id is not None:
            # an Airflow asset id always names the same (name, uri) pair: cache it
            self._ids[scope.asset_id] = asset
        return asset

    # -- asset scopes in assetry (sync) ----------------------------------------------------

    def _asset_get(self, asset: AirflowAsset | None, key: str) -> str | None:
        if asset is None:
            return None
        name = self.assets.existing(asset)
        if name is None:
            return None
        entry = self.instance.backend.store_get(name, key)
        return None if entry is None else text_from_value_json(entry.value_json)

    def _asset_set(self, asset: AirflowAsset | None, key: str, value: str) -> None:
        if asset is None:
            raise _unknown(key)
        if _is_own_reference(asset, key, value):
            return  # the worker backend already wrote the value to this very entry
        stored = value_for_text(value, max_bytes=self.instance.max_value_bytes)
        self._write(asset, lambda name: self.instance.asset_store(name).set(key, stored))

    def _asset_delete(self, asset: AirflowAsset | None, key: str) -> None:
        name = None if asset is None else self.assets.existing(asset)
        if name is not None:
            self._write(asset, lambda name: self.instance.asset_store(name).delete(key))  # type: ignore[arg-type]

    def _asset_clear(self, asset: AirflowAsset | None) -> None:
        name = None if asset is None else self.assets.existing(asset)
        if name is not None:
            self._write(asset, lambda name: self.instance.asset_store(name).clear())  # type: ignore[arg-type]

    def _write(self, asset: AirflowAsset, op: Callable[[str], Any]) -> None:
        name = self.assets.writable(asset)
        try:
            op(name)
        except AssetInactiveError:
            # deactivated since it was cached (cleanup, another process): Airflow has it
            # active, since the execution API resolved it, so reactivate it once
            self.assets.forget(name)
            op(self.assets.writable(asset))

    # -- BaseStoreBackend ------------------------------------------------------------------

    def get(self, scope: StoreScope, key: str, *, session: Session | None = None) -> str | None:
        if is_task_scope(scope):
            return super().get(scope, key, **_given(session))
        return self._asset_get(self._identity(scope, session), key)

    def set(
        self,
        scope: StoreScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> None:
        if is_task_scope(scope):
            super().set(scope, key, value, expires_at=expires_at, **_given(session))
            return
        self._asset_set(self._identity(scope, session), key, value)

    def delete(self, scope: StoreScope, key: str, *, session: Session | None = None) -> None:
        if is_task_scope(scope):
            super().delete(scope, key, **_given(session))
            return
        self._asset_delete(self._identity(scope, session), key)

    def clear(
        self, scope: StoreScope, *, all_map_indices: bool = False, session: Session | None = None
    ) -> None:
        if is_task_scope(scope):
            super().clear(scope, all_map_indices=all_map_indices, **_given(session))
            return
        self._asset_clear(self._identity(scope, session))

    def set_asset_state_store(
        self,
        scope: AssetScope,
        key: str,
        value: str,
        *,
        kind: AssetStateStoreWriterKind,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int | None = None,
        session: Session | None = None,
    ) -> None:
        """The execution API's write with its writer: checked as Airflow checks it; assetry
        entries keep their version and time, not the writer."""
        kind.validate_writer_fields(dag_id, run_id, task_id, map_index)
        self.set(scope, key, value, session=session)

    # The asset-store calls below run assetry's synchronous API in a worker thread (assetry
    # has no async API yet); the Airflow lookups and task scopes are natively async.

    async def aget(
        self, scope: StoreScope, key: str, *, session: AsyncSession | None = None
    ) -> str | None:
        if is_task_scope(scope):
            return await super().aget(scope, key, session=session)
        asset = await self._aidentity(scope, session)
        return await asyncio.to_thread(self._asset_get, asset, key)

    async def aset(
        self,
        scope: StoreScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        if is_task_scope(scope):
            await super().aset(scope, key, value, expires_at=expires_at, session=session)
            return
        asset = await self._aidentity(scope, session)
        await asyncio.to_thread(self._asset_set, asset, key, value)

    async def adelete(
        self, scope: StoreScope, key: str, *, session: AsyncSession | None = None
    ) -> None:
        if is_task_scope(scope):
            await super().adelete(scope, key, session=session)
            return
        asset = await self._aidentity(scope, session)
        await asyncio.to_thread(self._asset_delete, asset, key)

    async def aclear(
        self,
        scope: StoreScope,
        *,
        all_map_indices: bool = False,
        session: AsyncSession | None = None,
    ) -> None:
        if is_task_scope(scope):
            await super().aclear(scope, all_map_indices=all_map_indices, session=session)
            return
        asset = await self._aidentity(scope, session)
        await asyncio.to_thread(self._asset_clear, asset)

    async def aset_asset_state_store(
        self,
        scope: AssetScope,
        key: str,
        value: str,
        *,
        kind: AssetStateStoreWriterKind,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        """Async twin of :meth:`set_asset_state_store`."""
        kind.validate_writer_fields(dag_id, run_id, task_id, map_index)
        await self.aset(scope, key, value, session=session)

    # -- maintenance -----------------------------------------------------------------------

    def cleanup(self) -> None:
        """Expire task state as Airflow does, then deactivate the assetry assets that Airflow
        no longer has active and sweep their store entries.

        An assetry asset is Airflow's when Airflow's asset table has its name or this
        integration registered it; assets that only assetry pipelines use are left alone.
        """
        super().cleanup()
        with create_session() as session:
            active = set(session.scalars(select(AssetActive.name)))
            known = set(session.scalars(select(AssetModel.name)))
        deactivated = 0
        for record in self.instance.assets(active=True):
            ours = record.name in known or EXTRA_KEY in record.extra
            if ours and record.name not in active:
                if self.instance.backend.deactivate_asset(record.name):
                    deactivated += 1
                self.assets.forget(record.name)
        swept = self.instance.sweep()
        log.info(
            "assetry asset store cleanup: %d asset(s) deactivated, %d entries swept",
            deactivated,
            swept,
        )


def _given(session: Session | None) -> dict[str, Any]:
    """The session argument for the metastore's methods: they open their own when it is
    not passed at all (``provide_session``), so ``None`` must not be passed on."""
    return {} if session is None else {"session": session}


def _asset_query(scope: AssetScope) -> Any:
    """Airflow's asset for a scope: by id (what the execution API passes), else the active
    asset with the scope's name or URI (what a worker-side caller has)."""
    query = select(AssetModel.id, AssetModel.name, AssetModel.uri, AssetModel.group)
    if scope.asset_id is not None:
        return query.where(AssetModel.id == scope.asset_id)
    if scope.name:
        return query.where(AssetModel.name == scope.name, AssetModel.active.has())
    return query.where(AssetModel.uri == scope.uri, AssetModel.active.has())


def _is_own_reference(asset: AirflowAsset, key: str, value: str) -> bool:
    from .worker import is_reference_to

    return is_reference_to(value, asset.name, asset.uri, key)


def _unknown(key: str) -> KeyError:
    from ..errors import AssetNotFoundError

    return AssetNotFoundError(
        f"no Airflow asset for this scope: cannot write key {key!r} (is the asset declared "
        "in a Dag and active?)"
    )
