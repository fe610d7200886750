"""What every route depends on: the instance, the caller, and the assets the caller may see.

A token scoped to some asset groups sees the assets of other groups exactly as it sees
assets that do not exist: reads come back empty or 404, writes answer 404. So a scoped
token cannot even learn which names are taken in groups it does not reach.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..backend import AssetRecord, StateBackend, not_found_error
from ..instance import Instance
from ..models import validate_name
from ..uri import normalize_uri
from .auth import Authenticator, Principal
from .protocol import ApiError

__all__ = [
    "COOKIE_NAME",
    "AssetLocator",
    "Caller",
    "InstanceDep",
    "ReadScope",
    "Scope",
    "WriteScope",
    "Writer",
    "authenticate",
    "by_path",
    "by_query",
    "get_instance",
    "get_principal",
    "read_scope",
    "require_write",
    "write_scope",
]

#: The web view keeps the token in this cookie (HttpOnly, SameSite=Strict).
COOKIE_NAME = "assetry_token"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from the server's configuration (`[tool.assetry.server] tokens` or "
    "`ASSETRY_SERVER_TOKENS`): read or write access, to every asset group or to some.",
)


# The dependencies are coroutines: they never block, and FastAPI would run a plain
# function in the thread pool, a thread hand-off per dependency and request.


async def get_instance(request: Request) -> Instance:
    """The instance the app serves (swappable on ``app.state`` for tests)."""
    instance: Instance = request.app.state.instance
    return instance


def authenticate(auth: Authenticator, authorization: str | None) -> Principal:
    """The caller named by an ``Authorization`` header; :class:`ApiError` 401 when it is
    missing (and anonymous access is off), not ``Bearer <token>``, or an unknown token."""
    secret: str | None = None
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        secret = credentials.strip()
    principal = auth.authenticate(secret)
    if principal is None:
        raise _unauthorized(
            "this API needs a token: send 'Authorization: Bearer <token>'"
            if secret is None
            else "the bearer token is not one the server knows"
        )
    return principal


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 when missing or unknown.
    (The security scheme ``bearer`` is declared for the OpenAPI document.)"""
    return _caller(request)


def _caller(request: Request) -> Principal:
    principal = authenticate(request.app.state.auth, request.headers.get("authorization"))
    request.state.principal = principal
    return principal


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def require_write(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """The caller, when its token may write; 403 for a read-only token."""
    return _writer(principal)


def _writer(principal: Principal) -> Principal:
    if not principal.can_write:
        raise ApiError(
            403, "forbidden", f"token {principal.name!r} is read-only; this request writes"
        )
    return principal


Caller = Annotated[Principal, Depends(get_principal)]
Writer = Annotated[Principal, Depends(require_write)]
InstanceDep = Annotated[Instance, Depends(get_instance)]


class Scope:
    """The backend as one caller may use it: assets outside its groups are invisible."""

    def __init__(self, backend: StateBackend, principal: Principal, instance: Instance) -> None:
        self.backend = backend
        self.principal = principal
        self.instance = instance

    def visible(self, record: AssetRecord | None) -> bool:
        return record is not None and self.principal.can_see(record.group)

    def record(self, name: str) -> AssetRecord | None:
        """The asset's record, or ``None`` when it does not exist or is out of scope."""
        record = self.backend.get_asset(name)
        return record if self.visible(record) else None

    def readable(self, name: str) -> bool:
        """Whether reads of ``name`` may reach the backend (unknown names read as empty)."""
        return self.principal.unscoped or self.record(name) is not None

    def check_writable(self, name: str) -> None:
        """Raise the backend's own not-found error for a name out of scope."""
        if not self.readable(name):
            raise not_found_error(name)

    def check_aliases(self, aliases: Iterable[str]) -> None:
        """A scoped caller emits through an alias only when every asset that the alias
        already reaches is in its groups: else its events would reach the consumers that
        another group schedules on that alias. (An alias no event has used yet is taken by
        its first use.)"""
        if self.principal.unscoped:
            return
        for alias in dict.fromkeys(aliases):
            for target in self.backend.alias_targets(alias):
                if not self.readable(target):
                    raise ApiError(
                        403,
                        "forbidden",
                        f"alias {alias!r} reaches assets outside the groups of token "
                        f"{self.principal.name!r}; emit through an alias of your own groups",
                    )

    def check_unscoped(self, what: str) -> None:
        if not self.principal.unscoped:
            raise ApiError(
                403,
                "forbidden",
                f"token {self.principal.name!r} is limited to some asset groups; {what} "
                "needs a token that reaches every group",
            )

    def check_registration(self, name: str, uri: str, group: str) -> None:
        """A scoped caller registers only into its groups, and never takes over a name or
        URI that an asset outside its groups holds."""
        if self.principal.unscoped:
            return
        if not self.principal.can_see(group):
            raise ApiError(
                403,
                "forbidden",
                f"token {self.principal.name!r} may not register assets in group {group!r}",
            )
        for existing in (self.backend.get_asset(name), self.backend.get_asset_by_uri(uri)):
            if existing is not None and not self.visible(existing):
                raise ApiError(
                    403,
                    "forbidden",
                    f"the name or URI of asset {name!r} is held outside the groups of token "
                    f"{self.principal.name!r}; choose another",
                )


# The scopes resolve the caller and the instance themselves rather than through nested
# dependencies: each level of a dependency tree costs FastAPI more per request than the
# work it does here. ``bearer`` stays a dependency: it declares the security scheme.


def read_scope(request: Request) -> Scope:
    """The caller's view of the served instance (any valid token): a plain call, for the
    backend routes, which take the request instead of a dependency (resolving one costs
    FastAPI about 60 µs of CPU per request, a fifth of such a route's)."""
    instance: Instance = request.app.state.instance
    return Scope(instance.backend, _caller(request), instance)


def write_scope(request: Request) -> Scope:
    """:func:`read_scope`, when the caller's token may write (403 if not)."""
    instance: Instance = request.app.state.instance
    return Scope(instance.backend, _writer(_caller(request)), instance)


async def get_scope(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Scope:
    """The caller's view of the served instance (any valid token)."""
    return read_scope(request)


async def get_write_scope(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Scope:
    """The caller's view of the served instance, when its token may write (403 if not)."""
    return write_scope(request)


ReadScope = Annotated[Scope, Depends(get_scope)]
WriteScope = Annotated[Scope, Depends(get_write_scope)]


@dataclass(frozen=True, slots=True)
class AssetLocator:
    """How a request names its asset: by name, or by URI."""

    name: str | None = None
    uri: str | None = None

    def describe(self) -> str:
        return f"name {self.name!r}" if self.name is not None else f"uri {self.uri!r}"

    def resolve(self, scope: Scope) -> AssetRecord:
        """The asset's record; 404 when it does not exist or is outside the caller's groups."""
        if self.name is not None:
            record = scope.backend.get_asset(validate_name(self.name))
        else:
            assert self.uri is not None
            record = scope.backend.get_asset_by_uri(normalize_uri(self.uri))
        if not scope.visible(record):
            raise ApiError(
                404,
                "asset_not_found",
                f"no asset with {self.describe()} is registered; register it first "
                "(POST /api/v1/assets)",
            )
        assert record is not None
        return record


def by_path(
    name: Annotated[
        str,
        Path(
            description="The asset's name, percent-encoded; names may contain '/' "
            "(send '/' as %2F or literally, '%' as %25, '.' and '..' as %2E)."
        ),
    ],
) -> AssetLocator:
    return AssetLocator(name=name)


def by_query(
    name: Annotated[str | None, Query(description="The asset's name.")] = None,
    uri: Annotated[str | None, Query(description="The asset's URI (normalised).")] = None,
) -> AssetLocator:
    if (name is None) == (uri is None):
        raise ApiError(422, "invalid_request", "name the asset with exactly one of name= or uri=")
    return AssetLocator(name=name, uri=uri)
