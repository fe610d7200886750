"""The wire contract that the server and :mod:`assetry.client` share.

Errors: every error response has the body ``{"error": {"type": ..., "message": ...}}``,
where the type is a stable snake_case word from one table (:data:`ERROR_KINDS`) that the
client turns back into the exception. This module imports nothing from the web
framework, so the client can use it without the server's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import (
    AssetInactiveError,
    AssetNotFoundError,
    AssetryError,
    BackendUnavailableError,
    ConflictError,
    SchemaVersionError,
    StoreValueError,
    ValidationError,
)

__all__ = [
    "API_PREFIX",
    "BACKEND_PREFIX",
    "ERROR_KINDS",
    "MAX_EVENTS_PER_REQUEST",
    "ApiError",
    "ErrorKind",
    "classify",
    "error_body",
]

#: Where the API lives on the server.
API_PREFIX = "/api/v1"
#: The backend family: one POST route per StateBackend method.
BACKEND_PREFIX = f"{API_PREFIX}/backend"
#: The most events one backend query answers; the client pages past it.
MAX_EVENTS_PER_REQUEST = 10_000


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of the table: exceptions of ``exc`` answer ``status`` with ``type``."""

    exc: type[BaseException]
    status: int
    type: str


#: First match wins, so subclasses come before their bases.
ERROR_KINDS: tuple[ErrorKind, ...] = (
    ErrorKind(AssetNotFoundError, 404, "asset_not_found"),
    ErrorKind(AssetInactiveError, 409, "asset_inactive"),
    ErrorKind(ConflictError, 409, "conflict"),
    ErrorKind(StoreValueError, 422, "invalid_value"),
    ErrorKind(ValidationError, 422, "validation_failed"),
    ErrorKind(SchemaVersionError, 503, "backend_unavailable"),
    ErrorKind(BackendUnavailableError, 503, "backend_unavailable"),
    ErrorKind(NotImplementedError, 501, "not_implemented"),
    # bad input that the core rejects with the built-in types (names, URIs, timestamps)
    ErrorKind(ValueError, 422, "invalid_argument"),
    ErrorKind(TypeError, 422, "invalid_argument"),
)


def classify(exc: BaseException) -> ErrorKind | None:
    """The table row for ``exc``; ``None`` for an unexpected error (answered with 500)."""
    for kind in ERROR_KINDS:
        if isinstance(exc, kind.exc):
            if kind.exc in (ValueError, TypeError) and _is_internal(exc):
                return None
            return kind
    return None


def _is_internal(exc: BaseException) -> bool:
    """A ValueError/TypeError raised by a driver is a server fault, not bad input: only
    ours (assetry's, or raised by the core's validation as built-ins) are passed on."""
    if isinstance(exc, AssetryError):
        return False
    module = type(exc).__module__
    return module not in ("builtins",)


class ApiError(Exception):
    """An HTTP error with a JSON body, raised by route code."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers
        self.details = details


def error_body(type: str, message: str, details: Any = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"type": type, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}
