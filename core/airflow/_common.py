"""What both Airflow backends share: the assetry instance, the value text and asset lookup.

Airflow hands a state backend its values as text (``json.dumps`` of the task's value) and
expects ``get`` to return that text again. assetry keeps JSON values, so that assetry code
(``update``, ``advance``, ``compare_and_set``) works on the same entries. The two meet here:

- text that is exactly ``json.dumps`` of a value assetry accepts (everything Airflow's
  execution API writes) is stored as that value, and read back as ``json.dumps`` of it;
- any other text (not JSON, ``null``, ``NaN``, or JSON spelt another way) is kept verbatim
  in an envelope ``{"__airflow_text__": text}`` and read back unchanged.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import AssetNotFoundError, AssetValueError, ConflictError, StoreValueError
from ..instance import Instance
from ..store import AssetStore
from ..uri import normalize_uri
from ..values import encode_value

__all__ = [
    "TEXT_KEY",
    "AirflowAsset",
    "AssetMapper",
    "asset_store",
    "build_instance",
    "get_instance",
    "is_task_scope",
    "text_from_value_json",
    "value_for_text",
]

log = logging.getLogger("assetry.airflow")

#: The key of the envelope that keeps a text that is not a JSON value assetry stores as such.
TEXT_KEY = "__airflow_text__"
#: The key of the registry extra of assets this integration registered.
EXTRA_KEY = "airflow"


def _configured() -> tuple[str | None, str | None]:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # an Airflow without the task SDK's configuration
        from airflow.configuration import conf  # type: ignore[no-redef]
    backend = conf.get("assetry", "backend", fallback="") or None
    url = conf.get("assetry", "backend_url", fallback="") or None
    return backend, url


def build_instance() -> Instance:
    """A new assetry instance as Airflow is configured: ``[assetry] backend`` / ``backend_url``
    in Airflow's configuration (``AIRFLOW__ASSETRY__BACKEND_URL``), else assetry's own
    configuration (``ASSETRY_BACKEND_URL``, ``pyproject.toml``, the embedded default)."""
    backend, url = _configured()
    if url is not None and backend is None:
        return Instance.from_url(url)
    return Instance(backend=backend, url=url)


_instances: dict[tuple[str | None, str | None], Instance] = {}
_instances_lock = threading.Lock()


def get_instance() -> Instance:
    """The assetry instance of this Airflow process, on the state store the backends use
    (one per configuration, made on first use): for task code that needs more than the
    asset-store accessor, such as ``update``, ``advance`` or ``compare_and_set``."""
    key = _configured()
    with _instances_lock:
        inst = _instances.get(key)
        if inst is None:
            inst = _instances[key] = build_instance()
        return inst


def asset_store(asset: Any) -> AssetStore:
    """The assetry store of an Airflow asset, on :func:`get_instance`'s instance: the same
    entries Airflow's accessor reads and writes through the backends, registered (as they
    register it) so that ``update``, ``advance`` and ``compare_and_set`` can write them.

    ``asset`` is an ``airflow.sdk.Asset`` (anything with ``name`` and ``uri``) or an asset
    name, whose URI is then asked of Airflow (inside a task) or of assetry.
    """
    inst = get_instance()
    with _instances_lock:
        mapper = _mappers.get(id(inst))
        if mapper is None or mapper.instance is not inst:
            mapper = _mappers[id(inst)] = AssetMapper(inst)
    if isinstance(asset, str):
        from airflow.sdk._shared.state import AssetScope

        found = resolve_airflow_asset(inst, AssetScope(name=asset))
    else:
        found = AirflowAsset(asset.name, asset.uri, getattr(asset, "group", None) or "asset")
    return inst.asset_store(mapper.writable(found))


_mappers: dict[int, AssetMapper] = {}


def is_task_scope(scope: Any) -> bool:
    """Whether a state scope is a task's (``TaskScope``) rather than an asset's. By shape:
    Airflow core and its task SDK each carry their own copy of the scope classes."""
    return hasattr(scope, "dag_id")


def _is_envelope(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and TEXT_KEY in value
        and isinstance(value[TEXT_KEY], str)
    )


def value_for_text(text: str, *, max_bytes: int) -> Any:
    """The value to keep in assetry for Airflow's ``text`` (see the module docstring)."""
    if not isinstance(text, str):
        raise StoreValueError(f"Airflow state values are text, not {type(text).__name__}")
    try:
        value = json.loads(text)
    except ValueError:
        return {TEXT_KEY: text}
    if json.dumps(value) != text or _is_envelope(value):
        return {TEXT_KEY: text}
    try:
        encode_value(value, max_bytes=max_bytes)
    except StoreValueError:
        # null, NaN/Infinity: kept as text (a value over the size limit stays over it in
        # the envelope, and the write reports it)
        return {TEXT_KEY: text}
    return value


def text_from_value_json(value_json: str) -> str:
    """Airflow's text for an entry's stored JSON: an envelope's text, else ``json.dumps``."""
    value = json.loads(value_json)
    if _is_envelope(value):
        return value[TEXT_KEY]
    return json.dumps(value)


@dataclass(frozen=True, slots=True)
class AirflowAsset:
    """An Airflow asset as the backends see it: name, URI, group and (server side) id."""

    name: str
    uri: str
    group: str = "asset"
    asset_id: int | None = None


class AssetMapper:
    """Maps Airflow assets to assetry assets, by name.

    Policy: **the name is the identity.** An Airflow asset's store is the store of the
    assetry asset with the same name. The first write registers that asset with Airflow's
    URI (and marks it in its registry extra as registered for Airflow). When Airflow's asset
    of that name later carries another URI (Airflow allows re-declaring an asset's URI under
    the same name, which gives it a new asset id), the assetry asset keeps its first URI and
    its entries: the store follows the name, as the task-side accessor addresses it, and the
    change is logged once. Nothing here raises for a URI change. An Airflow URI that assetry
    cannot register (one it refuses, or one another assetry asset holds) is recorded as the
    opaque URI ``airflow-asset:<name>`` instead.
    """

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self._ready: set[str] = set()
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def existing(self, asset: AirflowAsset) -> str | None:
        """The assetry name of ``asset`` if assetry knows it (for reads), else ``None``."""
        record = self.instance.backend.get_asset(asset.name)
        if record is None:
            return None
        self._note_uri(asset, record.uri)
        return record.name

    def writable(self, asset: AirflowAsset) -> str:
        """The assetry name of ``asset``, registered (or reactivated) so it can be written."""
        with self._lock:
            if asset.name in self._ready:
                return asset.name
        backend = self.instance.backend
        record = backend.get_asset(asset.name)
        if record is None:
            extra = {EXTRA_KEY: {"asset_id": asset.asset_id}}
            try:
                record = backend.register_asset(
                    asset.name, self._uri_for(asset), group=asset.group, extra_json=_dumps(extra)
                )
            except ConflictError:
                record = backend.get_asset(asset.name)
                if record is None:  # the URI is another assetry asset's
                    record = backend.register_asset(
                        asset.name,
                        _fallback_uri(asset.name),
                        group=asset.group,
                        extra_json=_dumps(extra),
                    )
        elif not record.active:
            # Airflow has the asset active again: reactivate it as it was registered
            record = backend.register_asset(
                record.name, record.uri, group=record.group, extra_json=_dumps(record.extra)
            )
        self._note_uri(asset, record.uri)
        with self._lock:
            self._ready.add(asset.name)
        return record.name

    def forget(self, name: str) -> None:
        """Drop the cached readiness of ``name`` (after it was deactivated)."""
        with self._lock:
            self._ready.discard(name)

    def _uri_for(self, asset: AirflowAsset) -> str:
        try:
            uri = normalize_uri(asset.uri)
        except (AssetValueError, TypeError):
            return _fallback_uri(asset.name)
        if self.instance.backend.get_asset_by_uri(uri) is not None:
            return _fallback_uri(asset.name)
        return uri

    def _note_uri(self, asset: AirflowAsset, registered: str) -> None:
        try:
            wanted = normalize_uri(asset.uri)
        except (AssetValueError, TypeError):
            wanted = _fallback_uri(asset.name)
        if wanted == registered or registered == _fallback_uri(asset.name):
            return
        key = (asset.name, wanted)
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning(
            "Airflow asset %r has uri %r; its assetry asset keeps uri %r and its store "
            "entries (the name is the identity)",
            asset.name,
            wanted,
            registered,
        )


def _fallback_uri(name: str) -> str:
    from urllib.parse import quote

    return f"airflow-asset:{quote(name, safe='')}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def resolve_airflow_asset(instance: Instance, scope: Any) -> AirflowAsset:
    """Name and URI of a scope's asset: from Airflow inside a task, else from assetry."""
    found = _ask_airflow(scope)
    if found is not None:
        return found
    backend = instance.backend
    record = (
        backend.get_asset(scope.name)
        if scope.name
        else backend.get_asset_by_uri(normalize_uri(scope.uri or ""))
    )
    if record is not None:
        return AirflowAsset(record.name, record.uri, record.group)
    if scope.name and scope.uri:
        return AirflowAsset(scope.name, scope.uri)
    what = f"name {scope.name!r}" if scope.name else f"uri {scope.uri!r}"
    raise AssetNotFoundError(
        f"no asset with {what} is known to Airflow or assetry; declare it in a Dag"
    )


def _ask_airflow(scope: Any) -> AirflowAsset | None:
    """The asset as Airflow's API server knows it, when running inside an Airflow task."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import AssetResult, GetAssetByName, GetAssetByUri
    except ImportError:
        return None
    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None:
        return None
    msg = GetAssetByName(name=scope.name) if scope.name else GetAssetByUri(uri=scope.uri or "")
    resp = comms.send(msg)
    if not isinstance(resp, AssetResult):
        return None
    return AirflowAsset(resp.name, resp.uri, resp.group or "asset")
