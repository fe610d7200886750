"""What every conformance mixin shares: the fixtures, the helpers and the declared gaps.

A mixin proves one concern of the StateBackend contract. It needs one fixture from the test
class, ``backend`` (a fresh, empty backend), and builds ``instance`` on it. A test that
proves a capability is marked with :func:`needs`: on a backend whose ``capabilities`` say it
lacks it, the test is an expected failure that must fail in the declared way (as ibis marks
a backend's known gaps with the exception they raise), so a gap is never a silent skip and a
backend that quietly does what it declares it cannot, or fails otherwise, is reported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from assetry.backend import AssetRecord, Capabilities, NewEvent, StateBackend
from assetry.errors import UnsupportedOperationError
from assetry.instance import Instance
from assetry.models import AssetEvent
from assetry.values import MAX_KEY_LENGTH, encode_value

__all__ = [
    "BAD_KEYS",
    "DECLARED_GAPS",
    "NON_JSON_VALUES",
    "ROUND_TRIP_VALUES",
    "T0",
    "ConformanceBase",
    "needs",
]

T0 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)

_Test = TypeVar("_Test", bound=Callable[..., Any])

#: For each capability the kit proves, what a test of it must raise on a backend that
#: declares it lacks it. An operation the backend cannot do is refused with
#: :class:`UnsupportedOperationError`; a guarantee it does not give (state outliving the
#: object, a batch written all or none) is seen by the test's own check, an AssertionError.
#: ``multi_process`` is declared for core and users; no single-process test can prove it.
DECLARED_GAPS: dict[str, type[BaseException]] = {
    "event_import": UnsupportedOperationError,
    "event_deletion": UnsupportedOperationError,
    "state_import": UnsupportedOperationError,
    "persistent": AssertionError,
    "atomic_batches": AssertionError,
}

_NEEDS = "_assetry_needs_capability"


def needs(capability: str) -> Callable[[_Test], _Test]:
    """Mark a test as proving ``capability``; where a backend declares it lacks it, the test
    is an expected failure that must raise ``DECLARED_GAPS[capability]``."""
    if capability not in DECLARED_GAPS:
        known = ", ".join(field.name for field in dataclasses.fields(Capabilities))
        raise ValueError(f"no declared gap for capability {capability!r} (capabilities: {known})")

    def mark(test: _Test) -> _Test:
        setattr(test, _NEEDS, capability)
        return test

    return mark


def _uri(name: str) -> str:
    return f"s3://conformance/{name}"


def _json(value: Any) -> str:
    return encode_value(value)


def _canonical(value: Any) -> str:
    """JSON text that tells 1 from 1.0 from True and keeps float digits, for exact comparison."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _ids(events: list[AssetEvent]) -> list[int]:
    return [e.id for e in events]


class _Unserialisable:
    pass


ROUND_TRIP_VALUES: list[Any] = [
    pytest.param({"a": {"b": [1, "two", 3.5, True, None, {"c": []}]}}, id="nested"),
    pytest.param("unicode ✓ é 中文 ключ 🚀", id="unicode"),
    pytest.param('quote " backslash \\ newline \n tab \t', id="escapes"),
    pytest.param("", id="empty-string"),
    pytest.param(2**63 + 1, id="int-beyond-int64"),
    pytest.param(-(2**70), id="negative-big-int"),
    pytest.param(0, id="zero"),
    pytest.param(0.1, id="float-0.1"),
    pytest.param(1.0, id="float-stays-float"),
    pytest.param(1e-300, id="tiny-float"),
    pytest.param(1.7976931348623157e308, id="max-float"),
    pytest.param(-0.0, id="negative-zero"),
    pytest.param(True, id="true-stays-bool"),
    pytest.param(False, id="false"),
    pytest.param([], id="empty-list"),
    pytest.param({}, id="empty-dict"),
    pytest.param([None, None], id="nulls-in-list"),
]

NON_JSON_VALUES: list[Any] = [
    pytest.param({1, 2}, id="set"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(_Unserialisable(), id="object"),
    pytest.param({1: "a"}, id="int-dict-key"),
    pytest.param({"ok": {(1, 2): "x"}}, id="nested-tuple-dict-key"),
    pytest.param([1, {2, 3}], id="set-in-list"),
    pytest.param(dt.date(2024, 6, 1), id="date"),
]

BAD_KEYS: list[Any] = [
    pytest.param("", id="empty"),
    pytest.param("k" * (MAX_KEY_LENGTH + 1), id="too-long"),
    pytest.param(5, id="int"),
    pytest.param(None, id="none"),
    pytest.param("a\x00b", id="nul"),
]


class ConformanceBase:
    """The fixtures and helpers of every mixin; not collected (no ``Test`` prefix).

    Sizes of the concurrency and pagination tests are class attributes, so a backend that
    talks to a slow server can tune them without changing what is proved.
    """

    #: Threads in the concurrency tests.
    threads: int = 8
    #: ``AssetStore.update`` calls per thread on one shared key.
    updates_per_thread: int = 50
    #: Events appended per thread in the concurrent append test.
    appends_per_thread: int = 10
    #: Events in the pagination tests, and the page size used to walk them.
    pagination_events: int = 25
    page_size: int = 7

    # -- fixtures -------------------------------------------------------------------------

    @pytest.fixture
    def backend(self) -> StateBackend:
        """A fresh, empty backend: the one fixture a subclass must provide."""
        pytest.fail(
            f"{type(self).__name__} must define a `backend` fixture returning a fresh, "
            "empty StateBackend"
        )

    @pytest.fixture
    def instance(self, backend: StateBackend) -> Instance:
        """An Instance on the backend under test, for the API-level tests."""
        return Instance(backend=backend)

    @pytest.fixture(autouse=True)
    def _declared_gap(self, request: pytest.FixtureRequest) -> None:
        """Turn a test of a capability the backend declares it lacks into a strict expected
        failure that must raise the declared error (see :data:`DECLARED_GAPS`)."""
        capability = getattr(request.function, _NEEDS, None)
        if capability is None:
            return
        backend: StateBackend = request.getfixturevalue("backend")
        if getattr(backend.capabilities, capability):
            return
        error = DECLARED_GAPS[capability]
        request.applymarker(
            pytest.mark.xfail(
                raises=error,
                strict=True,
                reason=f"{type(backend).__name__} declares capabilities.{capability} = False: "
                f"the test must fail with {error.__name__}",
            )
        )

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def register(backend: StateBackend, *names: str) -> list[AssetRecord]:
        return [backend.register_asset(name, _uri(name)) for name in names]

    @staticmethod
    def append(
        backend: StateBackend, asset: str, count: int = 1, **fields: Any
    ) -> list[AssetEvent]:
        return backend.append_events(
            [NewEvent(asset, extra_json=_json({"i": i}), **fields) for i in range(count)]
        )
