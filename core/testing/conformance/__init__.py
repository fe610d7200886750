"""The StateBackend conformance kit, one mixin per concern of the contract.

A backend's test module subclasses :class:`StateBackendConformance` for the whole contract,
or only the mixins of the concerns it implements (a plugin growing one concern at a time),
and provides one fixture, ``backend`` (a fresh, empty backend)::

    class TestMyBackend(StateBackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            with MyBackend(url=f"mine://{tmp_path}") as b:
                yield b

        @pytest.fixture
        def reopen_backend(self, tmp_path):
            return lambda: MyBackend(url=f"mine://{tmp_path}")

    class TestMyBackendRegistryAndStore(RegistryConformance, StoreConformance):
        ...  # the same fixture(s)

``reopen_backend``, a callable returning a second backend object on the same storage (the
kit closes what it returns), is needed by :class:`PersistenceConformance`. A capability the
backend's ``capabilities`` declare it lacks turns the tests of it into strict expected
failures that must fail in the declared way (:data:`DECLARED_GAPS`), never silent skips.
"""

from __future__ import annotations

from .aliases import AliasConformance
from .asset_store import AssetStoreConformance
from .base import DECLARED_GAPS, ConformanceBase, needs
from .batches import BatchConformance
from .compare_and_set import CompareAndSetConformance, UpdateConformance
from .concurrency import ConcurrencyConformance
from .contracts import ContractConformance
from .cursors import CursorConformance
from .event_deletion import EventDeletionConformance
from .event_import import EventImportConformance
from .events import EventLogConformance
from .inputs import InputValidationConformance
from .partitions import PartitionConformance
from .persistence import PersistenceConformance, SchemaConformance
from .registry import RegistryConformance
from .state_import import StateImportConformance
from .store import StoreConformance
from .sweep import SweepConformance

__all__ = [
    "DECLARED_GAPS",
    "AliasConformance",
    "AssetStoreConformance",
    "BatchConformance",
    "CompareAndSetConformance",
    "ConcurrencyConformance",
    "ConformanceBase",
    "ContractConformance",
    "CursorConformance",
    "EventDeletionConformance",
    "EventImportConformance",
    "EventLogConformance",
    "InputValidationConformance",
    "PartitionConformance",
    "PersistenceConformance",
    "RegistryConformance",
    "SchemaConformance",
    "StateBackendConformance",
    "StateImportConformance",
    "StoreConformance",
    "SweepConformance",
    "UpdateConformance",
    "needs",
]


class StateBackendConformance(
    RegistryConformance,
    ContractConformance,
    StoreConformance,
    CompareAndSetConformance,
    UpdateConformance,
    PartitionConformance,
    AssetStoreConformance,
    SweepConformance,
    EventLogConformance,
    AliasConformance,
    CursorConformance,
    InputValidationConformance,
    BatchConformance,
    EventImportConformance,
    EventDeletionConformance,
    StateImportConformance,
    SchemaConformance,
    PersistenceConformance,
    ConcurrencyConformance,
):
    """Every behaviour of the StateBackend contract, as tests a backend inherits.

    Not collected by itself (no ``Test`` prefix); subclass it as ``TestXxxBackend`` and
    provide the ``backend`` fixture (and ``reopen_backend``).
    """
