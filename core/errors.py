"""The one error hierarchy of assetry: every error it raises is an :class:`AssetryError`.

Errors caused by bad input also derive from :class:`ValueError` or :class:`TypeError`, so
code that already catches those keeps working.
"""

from __future__ import annotations

__all__ = [
    "AssetInactiveError",
    "AssetNotFoundError",
    "AssetTypeError",
    "AssetValueError",
    "AssetryError",
    "BackendUnavailableError",
    "ConfigurationError",
    "ConflictError",
    "PluginError",
    "SchemaMismatchError",
    "SchemaVersionError",
    "StateNotFoundError",
    "StoreValueError",
    "TableVersionError",
    "UnsupportedOperationError",
    "UnsupportedSchemeError",
    "ValidationError",
]


class AssetryError(Exception):
    """Base class of every error raised by assetry."""


class ConfigurationError(AssetryError, ValueError):
    """The configuration (arguments, environment, pyproject/assetry.toml) is wrong."""


class PluginError(AssetryError):
    """A backend or IO manager plugin is missing, duplicated or failed to import."""


class UnsupportedSchemeError(PluginError, ValueError):
    """No installed plugin serves a URI scheme."""


class AssetValueError(AssetryError, ValueError):
    """An asset, alias or group name, or an asset URI, is not acceptable."""


class AssetTypeError(AssetryError, TypeError):
    """An asset, name, URI or asset condition is of the wrong type."""


class AssetNotFoundError(AssetryError, KeyError):
    """The asset is not registered with the backend."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class AssetInactiveError(AssetryError):
    """The asset was deactivated: its store can be read until swept, never written."""


class ConflictError(AssetryError):
    """A compare-and-set lost, or a registration contradicts an existing asset."""


class StoreValueError(AssetryError, ValueError):
    """A store key or value is not acceptable (None, NaN, not JSON, too large, ...)."""


class ValidationError(AssetryError, ValueError):
    """A critical data check failed; nothing was written."""

    def __init__(self, message: str, *, check: str | None = None, details: object = None):
        super().__init__(message)
        self.check = check
        self.details = details


class SchemaMismatchError(ValidationError):
    """A write's columns or types do not fit the stored table or dataset (a new column
    under ``schema_evolution="fail"``, a value that cannot be stored losslessly, a type the
    engine refused); ``column`` names the column where known. Nothing was written."""

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        check: str | None = "schema",
        details: object = None,
    ):
        super().__init__(message, check=check, details=details)
        self.column = column


class TableVersionError(AssetryError, ValueError):
    """A read pinned to a table version (``connect(asset, as_of=...)``) cannot be served: the
    IO manager keeps no versions, the event names none, or the version has been vacuumed."""


class BackendUnavailableError(AssetryError):
    """The state backend cannot be reached (server down, credentials refused, ...)."""


class SchemaVersionError(ConfigurationError):
    """The backend's stored schema is older or newer than this version of assetry."""


class StateNotFoundError(ConfigurationError):
    """No assetry state exists where an instance opened without creating
    (``Instance(..., create=False)``) looked: nothing was created there."""


class UnsupportedOperationError(AssetryError, NotImplementedError):
    """The backend lacks the capability this operation needs, as its ``capabilities`` declare
    (for example ``delete_events`` where ``capabilities.event_deletion`` is false)."""
