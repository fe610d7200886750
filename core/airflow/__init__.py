"""assetry for Apache Airflow 3.3: state-store backends and the connection fallback.

- :class:`AssetryStoreBackend` for ``[state_store] backend``: Airflow's asset store lives in
  assetry (any assetry backend), task state stays in Airflow's metadata database.
- :class:`AssetryWorkerStoreBackend` for ``[workers] state_store_backend``: workers write
  asset-store values to assetry themselves and Airflow keeps only a reference.
- :func:`asset_store` / :func:`get_instance`: the store of an Airflow asset (the instance)
  on that same state store, for task code that needs ``update``, ``advance`` or
  ``compare_and_set`` on the entries tasks use.
- :func:`airflow_connection`: inside an Airflow process, a connection id that assetry's own
  configuration does not define is looked up among Airflow's connections.

Install with ``pip install 'assetry[airflow]'``. Importing this package does not import
Airflow; the backends do, when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._common import asset_store, get_instance
    from .backend import AssetryStoreBackend
    from .connections import airflow_connection
    from .worker import AssetryWorkerStoreBackend

__all__ = [
    "AssetryStoreBackend",
    "AssetryWorkerStoreBackend",
    "airflow_connection",
    "asset_store",
    "get_instance",
]

_WHERE = {
    "AssetryStoreBackend": ".backend",
    "AssetryWorkerStoreBackend": ".worker",
    "airflow_connection": ".connections",
    "asset_store": "._common",
    "get_instance": "._common",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module, __name__), name)
