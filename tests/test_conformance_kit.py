"""The conformance kit itself: mixins taken one at a time, and declared gaps that are strict
expected failures naming their error (a backend that quietly does what it declares it
cannot, or fails otherwise, is reported)."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from assetry import Instance, UnsupportedOperationError
from assetry.backend import Capabilities, StateBackend
from assetry.backends.memory import MemoryBackend
from assetry.testing import (
    CursorConformance,
    EventDeletionConformance,
    EventImportConformance,
    IOManagerConformance,
    StateBackendConformance,
    StateImportConformance,
)
from assetry.testing.conformance import DECLARED_GAPS, needs

pytest_plugins = ["pytester"]

ADMIN = secrets.token_urlsafe(24)


class CannotImportOrDelete(MemoryBackend):
    """A memory backend declaring, and keeping, the base class's refusals."""

    capabilities = Capabilities(
        persistent=False,
        multi_process=False,
        atomic_batches=True,
        event_import=False,
        event_deletion=False,
        state_import=False,
    )
    import_events = StateBackend.import_events  # type: ignore[assignment]
    delete_events = StateBackend.delete_events  # type: ignore[assignment]
    import_asset = StateBackend.import_asset  # type: ignore[assignment]
    import_store = StateBackend.import_store  # type: ignore[assignment]


class TestDeclaredGapsOfALocalBackend(
    EventImportConformance, EventDeletionConformance, StateImportConformance
):
    @pytest.fixture
    def backend(self) -> Iterator[StateBackend]:
        with CannotImportOrDelete() as backend:
            yield backend


class TestDeclaredGapsOverHTTP(
    EventImportConformance, EventDeletionConformance, StateImportConformance
):
    """The served backend's gaps reach the http client as the same typed error."""

    @pytest.fixture(scope="class")
    def server(self) -> Iterator[Any]:
        pytest.importorskip("fastapi")
        pytest.importorskip("uvicorn")
        pytest.importorskip("httpx")
        from assetry.server.app import create_app
        from assetry.server.auth import ApiToken
        from assetry.server.live import LiveServer

        app = create_app(
            Instance(backend=CannotImportOrDelete()), tokens=[ApiToken("admin", ADMIN, "write")]
        )
        with LiveServer(app) as live:
            yield live

    @pytest.fixture
    def backend(self, server: Any) -> Iterator[StateBackend]:
        from assetry.backends.http import HTTPBackend

        server.app.state.instance = Instance(backend=CannotImportOrDelete())
        with HTTPBackend(server.url, token=ADMIN) as backend:
            yield backend


def test_the_base_class_refuses_with_the_declared_error() -> None:
    backend = CannotImportOrDelete()
    with pytest.raises(UnsupportedOperationError, match="event_import"):
        backend.import_events([])
    with pytest.raises(UnsupportedOperationError, match="event_deletion"):
        backend.delete_events("a", [1])
    with pytest.raises(UnsupportedOperationError, match="state_import"):
        backend.import_store("a", [])
    assert issubclass(UnsupportedOperationError, NotImplementedError)


def test_one_mixin_collects_only_its_concern(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from assetry.backends.memory import MemoryBackend
        from assetry.testing import CursorConformance

        class TestCursorsOnly(CursorConformance):
            @pytest.fixture
            def backend(self):
                with MemoryBackend() as backend:
                    yield backend
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(_tests_of(CursorConformance)))


def test_the_whole_kit_is_the_union_of_the_mixins() -> None:
    from assetry.testing import conformance

    mixins = [
        getattr(conformance, name)
        for name in conformance.__all__
        if name.endswith("Conformance") and name != "StateBackendConformance"
    ]
    assert set(StateBackendConformance.__mro__) >= set(mixins)
    union = set().union(*(_tests_of(m) for m in mixins))
    assert union == _tests_of(StateBackendConformance)
    assert sum(len(_tests_of(m)) for m in mixins) == len(union)  # each test in one mixin


def test_gaps_must_fail_in_the_declared_way(pytester: pytest.Pytester) -> None:
    """Declared and refused: xfailed. Declared but done anyway, or refused with another
    error: failed. A persistent backend without ``reopen_backend``: an error."""
    pytester.makepyfile(
        """
        import pytest
        from assetry.backend import Capabilities, StateBackend
        from assetry.backends.memory import MemoryBackend
        from assetry.testing import (
            EventDeletionConformance, EventImportConformance, PersistenceConformance,
        )

        NO_GAPS = dict(persistent=False, multi_process=False, atomic_batches=True)

        class Refuses(MemoryBackend):
            capabilities = Capabilities(**NO_GAPS, event_import=False, event_deletion=True)
            import_events = StateBackend.import_events

        class DoesItAnyway(MemoryBackend):
            capabilities = Capabilities(**NO_GAPS, event_import=False, event_deletion=True)

        class RefusesOtherwise(MemoryBackend):
            capabilities = Capabilities(**NO_GAPS, event_import=True, event_deletion=False)

            def delete_events(self, asset, ids):
                raise NotImplementedError("not a typed refusal")

        class Persistent(MemoryBackend):
            capabilities = Capabilities(persistent=True)

        class TestRefuses(EventImportConformance):
            @pytest.fixture
            def backend(self):
                return Refuses()

        class TestDoesItAnyway(EventImportConformance):
            @pytest.fixture
            def backend(self):
                return DoesItAnyway()

        class TestRefusesOtherwise(EventDeletionConformance):
            @pytest.fixture
            def backend(self):
                return RefusesOtherwise()

        class TestPersistentWithoutReopen(PersistenceConformance):
            @pytest.fixture
            def backend(self):
                return Persistent()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    imports = len(_tests_of(EventImportConformance))
    deletions = len(_tests_of(EventDeletionConformance))
    result.assert_outcomes(xfailed=imports, failed=imports + deletions, errors=4)
    result.stdout.fnmatch_lines(["*XPASS(strict)*", "*not a typed refusal*"])
    result.stdout.re_match_lines([r".*must define a `reopen_backend` fixture.*"])


def test_needs_names_a_capability_with_a_declared_gap() -> None:
    assert DECLARED_GAPS["event_import"] is UnsupportedOperationError
    with pytest.raises(ValueError, match="multi_process"):
        needs("multi_process")


def _tests_of(cls: type) -> set[str]:
    return {name for name in dir(cls) if name.startswith("test_")}


def test_io_kit_locations_without_partitions_must_refuse_them(pytester: pytest.Pytester) -> None:
    """``supports_partitions = False``: partition tests are expected failures that must raise
    ``partitions_error``; a location that takes partitions after all fails the suite."""
    pytester.makepyfile(
        """
        import uuid
        import pytest
        from assetry import Asset
        from assetry.testing import IOManagerConformance

        class _Memory(IOManagerConformance):
            suffix = ""

            @pytest.fixture
            def asset_factory(self):
                def make(**kwargs):
                    uri = f"memory://kit/{uuid.uuid4().hex}{self.suffix}"
                    return Asset(uri=uri, **kwargs)
                return make

        class TestSingleFile(_Memory):
            suffix = ".parquet"
            supports_partitions = False

        class TestDatasetDeclaredWithout(_Memory):
            supports_partitions = False
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    using = _tests_using("partitioned")
    # neither class keeps table versions: the as_of tests are expected failures in both
    versioned = _tests_using("versioned") - using
    others = len(_tests_of(IOManagerConformance)) - len(using) - len(versioned)
    assert using and versioned
    result.assert_outcomes(
        passed=2 * others, xfailed=len(using) + 2 * len(versioned), failed=len(using)
    )
    result.stdout.fnmatch_lines(["*XPASS(strict)*"])


def _tests_using(fixture: str) -> set[str]:
    """The IO kit's tests that take ``fixture``."""
    return {
        name
        for name in _tests_of(IOManagerConformance)
        if fixture in inspect.signature(getattr(IOManagerConformance, name)).parameters
    }
