"""assetry: one pluggable storage layer for data assets.

An asset store (per-asset key/value state), an asset event log, and IO managers that read
and write dataframes by asset, all on one configured :class:`StateBackend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backend import AssetRecord, Capabilities, StateBackend, StoreEntry
from .config import Connection, Settings, load_settings
from .contracts import AssetContract, Freshness
from .errors import (
    AssetInactiveError,
    AssetNotFoundError,
    AssetryError,
    AssetTypeError,
    AssetValueError,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    PluginError,
    SchemaMismatchError,
    SchemaVersionError,
    StoreValueError,
    TableVersionError,
    UnsupportedOperationError,
    UnsupportedSchemeError,
    ValidationError,
)
from .instance import Instance, current_instance, use_instance
from .iomanager import AssetHandle, IOManager, WriteResult
from .models import (
    Asset,
    AssetAlias,
    AssetAll,
    AssetAny,
    AssetEvent,
    AssetRef,
    AssetWatcher,
    BaseAsset,
    Metadata,
)
from .store import AssetStore
from .uri import normalize_uri
from .uri_normalizers import register_uri_normalizer

if TYPE_CHECKING:
    from .checks import Check, NotNull, RowCount, Schema, Unique
    from .runtime import DAG, get_current_context, run_ready, task
    from .storage_clients import DatabaseClient, ObjectStoragePath
    from .watchers import ObjectStorageTrigger, Trigger

__version__ = "0.1.0"

# Names whose modules import heavier dependencies, loaded on first access.
_LAZY: dict[str, str] = {
    "task": "runtime",
    "DAG": "runtime",
    "get_current_context": "runtime",
    "run_ready": "runtime",
    "ObjectStoragePath": "storage_clients",
    "DatabaseClient": "storage_clients",
    "Check": "checks",
    "Schema": "checks",
    "NotNull": "checks",
    "Unique": "checks",
    "RowCount": "checks",
    "Trigger": "watchers",
    "ObjectStorageTrigger": "watchers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'assetry' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DAG",
    "Asset",
    "AssetAlias",
    "AssetAll",
    "AssetAny",
    "AssetContract",
    "AssetEvent",
    "AssetHandle",
    "AssetInactiveError",
    "AssetNotFoundError",
    "AssetRecord",
    "AssetRef",
    "AssetStore",
    "AssetTypeError",
    "AssetValueError",
    "AssetWatcher",
    "AssetryError",
    "BackendUnavailableError",
    "BaseAsset",
    "Capabilities",
    "Check",
    "ConfigurationError",
    "ConflictError",
    "Connection",
    "DatabaseClient",
    "Freshness",
    "IOManager",
    "Instance",
    "Metadata",
    "NotNull",
    "ObjectStoragePath",
    "ObjectStorageTrigger",
    "PluginError",
    "RowCount",
    "Schema",
    "SchemaMismatchError",
    "SchemaVersionError",
    "Settings",
    "StateBackend",
    "StoreEntry",
    "StoreValueError",
    "TableVersionError",
    "Trigger",
    "Unique",
    "UnsupportedOperationError",
    "UnsupportedSchemeError",
    "ValidationError",
    "WriteResult",
    "current_instance",
    "get_current_context",
    "load_settings",
    "normalize_uri",
    "register_uri_normalizer",
    "run_ready",
    "task",
    "use_instance",
]
