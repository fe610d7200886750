"""``AssetryWorkerStoreBackend``: Airflow's ``[workers] state_store_backend`` on assetry.

With it, a task's asset-store value is written to assetry by the worker itself, and Airflow
stores only a reference, ``{"__airflow_state_ref__": "assetry:asset-store?name=...&key=..."}``,
through its execution API (in its metastore, or wherever ``[state_store] backend`` keeps
it). Reads follow the reference back to assetry. Task-store values are left inline, as
Airflow's default does.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from airflow.sdk._shared.state import AssetScope, BaseStoreBackend, StoreScope

from ..errors import ConfigurationError
from ..instance import Instance
from ..uri import normalize_uri
from ._common import (
    AirflowAsset,
    AssetMapper,
    build_instance,
    is_task_scope,
    resolve_airflow_asset,
    text_from_value_json,
    value_for_text,
)

if TYPE_CHECKING:
    from datetime import datetime

    from pydantic import JsonValue

__all__ = [
    "REF_PREFIX",
    "AssetryWorkerStoreBackend",
    "is_reference_to",
    "reference",
    "resolve_airflow_asset",
]

#: How every reference this backend hands Airflow begins.
REF_PREFIX = "assetry:asset-store?"
_REF_KEY = "__airflow_state_ref__"  # the wrapper Airflow's task SDK puts around a reference


def reference(key: str, *, name: str | None = None, uri: str | None = None) -> str:
    """The deterministic reference of ``key`` in the store of the asset ``name`` (or ``uri``)."""
    pairs = [("name", name)] if name else [("uri", uri or "")]
    return REF_PREFIX + urlencode([*pairs, ("key", key)])


def parse_reference(ref: str) -> dict[str, str]:
    """The ``name``/``uri`` and ``key`` of a reference; a ValueError for anything else."""
    if not isinstance(ref, str) or not ref.startswith(REF_PREFIX):
        raise ValueError("not an assetry asset-store reference")
    fields = dict(parse_qsl(ref[len(REF_PREFIX) :], keep_blank_values=True))
    if "key" not in fields or not (fields.get("name") or fields.get("uri")):
        raise ValueError("an assetry asset-store reference needs a key and a name or uri")
    return fields


def is_reference_to(text: str, name: str, uri: str, key: str) -> bool:
    """Whether Airflow's value ``text`` is the wrapped reference to ``key`` of this asset."""
    if REF_PREFIX not in text:
        return False
    try:
        wrapped = json.loads(text)
        fields = parse_reference(wrapped[_REF_KEY])
    except (ValueError, TypeError, KeyError):
        return False
    if fields["key"] != key:
        return False
    if fields.get("name"):
        return fields["name"] == name
    try:
        return normalize_uri(fields["uri"]) == normalize_uri(uri)
    except (TypeError, ValueError):
        return False


class AssetryWorkerStoreBackend(BaseStoreBackend):
    """The worker-side hook: asset-store values go to assetry, Airflow keeps a reference.

    Airflow builds it with no arguments; the assetry instance comes from the same
    configuration as :class:`assetry.airflow.AssetryStoreBackend`'s. The reference is
    deterministic (asset and key), so Airflow's delete and clear find the entry again.
    """

    def __init__(self, *, instance: Instance | None = None) -> None:
        self.instance = instance if instance is not None else build_instance()
        self.assets = AssetMapper(self.instance)

    def __repr__(self) -> str:
        return f"AssetryWorkerStoreBackend({self.instance.backend.describe()})"

    # -- the references Airflow stores -----------------------------------------------------

    def serialize_asset_state_store_to_ref(
        self, *, value: JsonValue, key: str, scope: AssetScope
    ) -> str:
        asset = self._airflow_asset(scope)
        # the same storage as values that reach assetry through the execution API
        stored = value_for_text(json.dumps(value), max_bytes=self.instance.max_value_bytes)
        self.instance.asset_store(self.assets.writable(asset)).set(key, stored)
        return reference(key, name=asset.name)

    def deserialize_asset_state_store_from_ref(self, stored: str) -> JsonValue:
        fields = parse_reference(stored)
        name = self._existing_name(fields.get("name"), fields.get("uri"))
        entry = None if name is None else self.instance.backend.store_get(name, fields["key"])
        if entry is None:
            return None  # the entry was deleted or swept since the reference was written
        text = text_from_value_json(entry.value_json)
        try:
            return json.loads(text)
        except ValueError:
            return text  # a text value written by another Airflow client

    # -- BaseStoreBackend ------------------------------------------------------------------

    def get(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        scope = _asset_scope(scope, "get")
        name = self._existing_name(scope.name, scope.uri)
        entry = None if name is None else self.instance.backend.store_get(name, key)
        return None if entry is None else text_from_value_json(entry.value_json)

    def set(
        self,
        scope: StoreScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Any = None,
    ) -> None:
        scope = _asset_scope(scope, "set")
        stored = value_for_text(value, max_bytes=self.instance.max_value_bytes)
        name = self.assets.writable(self._airflow_asset(scope))
        self.instance.asset_store(name).set(key, stored)

    def delete(self, scope: StoreScope, key: str, *, session: Any = None) -> None:
        if is_task_scope(scope):
            return  # task values stay inline in Airflow: nothing of them is here
        name = self._existing_name(scope.name, scope.uri)
        if name is not None:
            self.instance.asset_store(name).delete(key)

    def clear(
        self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None
    ) -> None:
        if is_task_scope(scope):
            return
        name = self._existing_name(scope.name, scope.uri)
        if name is not None:
            self.instance.asset_store(name).clear()

    # assetry has no async API yet: the twins run the synchronous calls in a worker thread.

    async def aget(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        return await asyncio.to_thread(self.get, scope, key)

    async def aset(
        self,
        scope: StoreScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Any = None,
    ) -> None:
        await asyncio.to_thread(self.set, scope, key, value)

    async def adelete(self, scope: StoreScope, key: str, *, session: Any = None) -> None:
        await asyncio.to_thread(self.delete, scope, key)

    async def aclear(
        self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None
    ) -> None:
        await asyncio.to_thread(self.clear, scope)

    # -- lookups ---------------------------------------------------------------------------

    def _existing_name(self, name: str | None, uri: str | None) -> str | None:
        backend = self.instance.backend
        if name:
            return name if backend.get_asset(name) is not None else None
        if uri:
            record = backend.get_asset_by_uri(normalize_uri(uri))
            return None if record is None else record.name
        return None

    def _airflow_asset(self, scope: AssetScope) -> AirflowAsset:
        return resolve_airflow_asset(self.instance, scope)


def _asset_scope(scope: StoreScope, op: str) -> AssetScope:
    if not is_task_scope(scope):
        return scope  # type: ignore[return-value]
    raise ConfigurationError(
        f"AssetryWorkerStoreBackend.{op}() keeps asset scopes only; task-store values stay "
        "inline in Airflow's state store"
    )
