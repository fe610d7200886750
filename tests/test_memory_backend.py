"""The memory backend: the conformance suite, plus what only it does (named shared state)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import assetry
import pytest
from assetry.backends.memory import MemoryBackend
from assetry.testing import StateBackendConformance


class TestMemoryBackend(StateBackendConformance):
    @pytest.fixture
    def backend(self) -> Iterator[MemoryBackend]:
        with MemoryBackend() as backend:
            yield backend

    @pytest.fixture
    def reopen_backend(self) -> Callable[[], MemoryBackend]:
        """What another process would open: private state, so the persistence tests are
        expected failures (``persistent=False``)."""
        return MemoryBackend


def _shared_url() -> str:
    return f"memory://test-{uuid.uuid4().hex}"


def test_backends_on_one_memory_url_share_state() -> None:
    url = _shared_url()
    first, second = MemoryBackend(url=url), MemoryBackend(url=url)
    first.register_asset("orders", "s3://data/orders")
    first.store_set("orders", "watermark", '"2024-06-01"')
    first.set_cursors("scheduler", {"orders": 1})
    entry = second.store_get("orders", "watermark")
    assert entry is not None and entry.value == "2024-06-01"
    assert second.get_cursors("scheduler") == {"orders": 1}
    assert second.append_events([assetry.backend.NewEvent("orders")])[0].id == 1
    assert first.latest_events()["orders"].id == 1


def test_trailing_slash_names_the_same_shared_state() -> None:
    url = _shared_url()
    MemoryBackend(url=url).register_asset("orders", "s3://data/orders")
    assert MemoryBackend(url=url + "/").get_asset("orders") is not None


def test_backends_on_different_memory_urls_are_isolated() -> None:
    first, second = MemoryBackend(url=_shared_url()), MemoryBackend(url=_shared_url())
    first.register_asset("orders", "s3://data/orders")
    assert second.get_asset("orders") is None
    assert second.list_assets() == []


def test_unnamed_backends_are_private() -> None:
    first, second = MemoryBackend(), MemoryBackend(url="memory://")
    first.register_asset("orders", "s3://data/orders")
    assert second.get_asset("orders") is None
    assert MemoryBackend().list_assets() == []


def test_memory_url_selects_the_memory_backend() -> None:
    url = _shared_url()
    with assetry.Instance.from_url(url) as instance:
        assert isinstance(instance.backend, MemoryBackend)
        orders = assetry.Asset("orders", uri="s3://data/orders")
        instance.asset_store(orders).set("watermark", "2024-06-01")
    with assetry.Instance.from_url(url) as again:
        assert again.asset_store(orders).get("watermark") == "2024-06-01"


def test_memory_backend_rejects_unknown_options() -> None:
    with pytest.raises(TypeError, match="colour"):
        MemoryBackend(colour="blue")


def test_memory_backend_declares_it_is_not_persistent() -> None:
    caps = MemoryBackend.capabilities
    assert (caps.persistent, caps.multi_process, caps.atomic_batches) == (False, False, True)
    assert "private" in repr(MemoryBackend())


@pytest.mark.slow
class TestMemoryBackendAtScale(TestMemoryBackend):
    """The conformance suite with larger concurrency and pagination sizes."""

    threads = 16
    updates_per_thread = 500
    appends_per_thread = 200
    pagination_events = 2500
    page_size = 97
