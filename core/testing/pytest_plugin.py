"""The assetry pytest plugin: swap assetry's storage for an in-memory one in tests.

Registered through the ``pytest11`` entry point, so installing assetry makes its fixtures
available to every test suite; nothing needs to be imported.

Fixtures:

``assetry_instance``
    A fresh :class:`assetry.Instance` on the ``memory`` backend, made current with
    :func:`assetry.use_instance` for the duration of the test and closed afterwards. Code
    under test that calls :func:`assetry.current_instance` (tasks, ``Asset.ref`` resolution,
    the asset store) reads and writes this instance, and nothing leaks into the next test::

        def test_watermark_advances(assetry_instance):
            orders = assetry.Asset("orders", uri="s3://data/orders/")
            load_new_orders()
            store = assetry_instance.asset_store(orders)
            assert store.get("watermark") == "2024-06-01"
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from assetry import Instance, plugins, use_instance

__all__ = ["assetry_instance", "make_test_instance"]


def make_test_instance() -> Instance:
    """A fresh, private, in-memory instance: the one place test instances are built.

    The backend object is built here rather than from a name so that a configured
    ``ASSETRY_BACKEND_URL`` or ``ASSETRY_BACKEND_OPTIONS`` cannot point a test at real state.
    """
    backend = plugins.backends.load("memory")()
    # IO goes to memory:// and an in-memory DuckDB, whatever an asset's URI names
    io_options = {
        "objectstorage": {"redirect_to": f"memory://assetry-test-{uuid.uuid4().hex}"},
        "ibis": {"redirect_to": "duckdb:///:memory:"},
    }
    return Instance(backend=backend, io_manager_options=io_options)


@pytest.fixture
def assetry_instance() -> Iterator[Instance]:
    """A fresh in-memory :class:`assetry.Instance`, current for the test, closed after it."""
    instance = make_test_instance()
    try:
        with use_instance(instance):
            yield instance
    finally:
        instance.close()
