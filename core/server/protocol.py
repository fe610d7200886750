"""The wire contract that the server and :mod:`assetry.client` share.

Errors: every error response has the body ``{"error": {"type": ..., "message": ...}}``,
where the type is a stable snake_case word from one table (:data:`ERROR_KINDS`) that the
client turns back into the exception. This module imports nothing from the web
framework, so the client can use it without the server's dependencies.
"""

from __future__ import annotations

import builtins
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
    UnsupportedOperationError,
    ValidationError,
)

__all__ = [
    "API_PREFIX",
    "BACKEND_PREFIX",
    "ERROR_KINDS",
    "ERROR_TYPES",
    "MAX_EVENTS_PER_REQUEST",
    "AccessDeniedError",
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


class AccessDeniedError(AssetryError, PermissionError):
    """The server refused the token (401), or the token may not do this (403)."""


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of the error table: the server answers ``status`` with ``type`` for the
    exceptions in ``answers``, and the client raises ``raised_as`` for that type."""

    type: str
    status: int
    raised_as: builtins.type[BaseException]
    answers: tuple[builtins.type[BaseException], ...] = ()


#: The one table of error types. The server's match runs in this order (first match
#: wins), so subclasses come before their bases; rows with no ``answers`` are raised by
#: the server itself (authentication, request validation, body size).
ERROR_KINDS: tuple[ErrorKind, ...] = (
    ErrorKind("asset_not_found", 404, AssetNotFoundError, (AssetNotFoundError,)),
    ErrorKind("asset_inactive", 409, AssetInactiveError, (AssetInactiveError,)),
    ErrorKind("conflict", 409, ConflictError, (ConflictError,)),
    ErrorKind("invalid_value", 422, StoreValueError, (StoreValueError,)),
    ErrorKind("validation_failed", 422, ValidationError, (ValidationError,)),
    ErrorKind(
        "backend_unavailable",
        503,
        BackendUnavailableError,
        (SchemaVersionError, BackendUnavailableError),
    ),
    # a capability the backend lacks (UnsupportedOperationError is a NotImplementedError)
    ErrorKind("not_implemented", 501, UnsupportedOperationError, (NotImplementedError,)),
    # bad input that the core rejects with the built-in types (names, URIs, timestamps)
    ErrorKind("invalid_argument", 422, ValueError, (ValueError, TypeError)),
    ErrorKind("invalid_request", 422, ValueError),
    ErrorKind("payload_too_large", 413, StoreValueError),
    ErrorKind("unauthorized", 401, AccessDeniedError),
    ErrorKind("forbidden", 403, AccessDeniedError),
)

#: Error type -> the row, for the client.
ERROR_TYPES: dict[str, ErrorKind] = {kind.type: kind for kind in ERROR_KINDS}


def classify(exc: BaseException) -> ErrorKind | None:
    """The table row for ``exc``; ``None`` for an unexpected error (answered with 500)."""
    for kind in ERROR_KINDS:
        for answered in kind.answers:
            if isinstance(exc, answered):
                if answered in (ValueError, TypeError) and _is_internal(exc):
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
