"""The pytest plugin: ``assetry_instance`` is a fresh in-memory instance, current for one test."""

from __future__ import annotations

import assetry
import pytest
from assetry.testing import pytest_plugin

pytest_plugins = ["pytester"]

orders = assetry.Asset("orders", uri="s3://data/orders")


def test_assetry_instance_is_current_inside_the_test(
    assetry_instance: assetry.Instance,
) -> None:
    assert assetry.current_instance() is assetry_instance
    assert assetry_instance.backend.name == "memory"
    assetry.current_instance().asset_store(orders).set("watermark", "2024-06-01")
    assert assetry_instance.asset_store(orders).get("watermark") == "2024-06-01"


def test_assetry_instance_starts_empty(assetry_instance: assetry.Instance) -> None:
    assert assetry_instance.assets() == []
    assert assetry_instance.backend.list_consumers() == []


def test_make_test_instance_ignores_a_configured_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASSETRY_BACKEND", "sql")
    monkeypatch.setenv("ASSETRY_BACKEND_URL", "memory://configured-elsewhere")
    with pytest_plugin.make_test_instance() as instance:
        assert instance.backend.name == "memory"
        instance.register(orders)
        assert assetry.Instance.from_url("memory://configured-elsewhere").assets() == []


def test_instances_are_isolated_between_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import assetry

        orders = assetry.Asset("orders", uri="s3://data/orders")
        seen = []

        def test_first(assetry_instance):
            seen.append(assetry_instance)
            assetry_instance.asset_store(orders).set("runs", 1)
            assetry_instance.record_event(orders)

        def test_second(assetry_instance):
            assert assetry_instance is not seen[0]
            assert assetry.current_instance() is assetry_instance
            assert assetry_instance.asset_store(orders).get("runs") is None
            assert assetry_instance.events(orders) == []
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_instance_is_no_longer_current_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import assetry
        import pytest

        used = []

        @pytest.fixture
        def outer():
            yield
            # runs after assetry_instance is torn down
            assert assetry.current_instance() is not used[0]

        def test_uses_instance(outer, assetry_instance):
            used.append(assetry_instance)
        """
    )
    pytester.chdir()
    pytester.makepyprojecttoml('[tool.assetry]\nbackend_url = "memory://after-the-test"\n')
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_assetry_instance_is_closed_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from assetry.testing import pytest_plugin

        closed = []

        @pytest.fixture(autouse=True)
        def track_close(monkeypatch):
            make = pytest_plugin.make_test_instance

            def tracked():
                instance = make()
                instance.backend.close = lambda: closed.append(instance)
                return instance

            monkeypatch.setattr(pytest_plugin, "make_test_instance", tracked)
        """
    )
    pytester.makepyfile(
        """
        from conftest import closed

        used = []

        def test_first(assetry_instance):
            used.append(assetry_instance)
            assert closed == []

        def test_second():
            assert closed == used
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
