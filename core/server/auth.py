"""Bearer-token authentication and per-asset-group scopes for ``assetry serve``.

Tokens come from configuration, never from code: ``[tool.assetry.server] tokens`` in
pyproject.toml / assetry.toml names the environment variable that holds each secret
(``token_env``), and ``ASSETRY_SERVER_TOKENS`` may carry a JSON list of the same objects
(where a literal ``token`` is allowed, since the environment is already secret). Each token
grants ``read`` or ``write`` access, to every asset group or only to the listed ``groups``.

Secrets are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every
configured token, so the time taken says nothing about how much of a secret matched. A
token's secret never appears in a repr, a log line or a response.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import find_config_file
from ..errors import ConfigurationError

__all__ = [
    "MIN_TOKEN_LENGTH",
    "TOKENS_ENV",
    "Access",
    "ApiToken",
    "Authenticator",
    "Principal",
    "SessionSigner",
    "load_server_settings",
    "parse_tokens",
]

Access = Literal["read", "write"]

#: The environment variable that may carry the tokens as a JSON list.
TOKENS_ENV = "ASSETRY_SERVER_TOKENS"
#: Shorter secrets are refused: they can be guessed.
MIN_TOKEN_LENGTH = 16

_ACCESS_LEVELS: dict[str, int] = {"read": 1, "write": 2}


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiToken:
    """One configured token: a label, its access level and the asset groups it may reach.

    ``groups=None`` reaches every group. Only the secret's SHA-256 digest is kept.
    """

    name: str
    secret: str = field(repr=False, compare=False)
    access: Access = "read"
    groups: frozenset[str] | None = None
    digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError("every server token needs a non-empty name")
        if self.access not in _ACCESS_LEVELS:
            raise ConfigurationError(
                f"server token {self.name!r}: access must be 'read' or 'write', got {self.access!r}"
            )
        if not isinstance(self.secret, str) or len(self.secret) < MIN_TOKEN_LENGTH:
            raise ConfigurationError(
                f"server token {self.name!r} is shorter than {MIN_TOKEN_LENGTH} characters; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if self.groups is not None:
            groups = frozenset(self.groups)
            if not all(isinstance(g, str) and g for g in groups):
                raise ConfigurationError(
                    f"server token {self.name!r}: groups must be non-empty strings"
                )
            object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "digest", _digest(self.secret))
        object.__setattr__(self, "secret", "")  # keep only the digest


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, its access level and the groups it reaches."""

    name: str
    access: Access
    groups: frozenset[str] | None = None

    @property
    def can_write(self) -> bool:
        return self.access == "write"

    @property
    def unscoped(self) -> bool:
        """Whether the caller reaches every asset group."""
        return self.groups is None

    def can_see(self, group: str) -> bool:
        """Whether an asset of ``group`` is visible to the caller."""
        return self.groups is None or group in self.groups


class Authenticator:
    """Matches presented secrets against the configured tokens.

    ``anonymous`` (``"read"``/``"write"``/``None``) is the access granted to a request that
    presents no token; ``None`` (the default) means such requests are refused.
    """

    def __init__(self, tokens: Iterable[ApiToken] = (), *, anonymous: Access | None = None):
        self.tokens: tuple[ApiToken, ...] = tuple(tokens)
        names = [t.name for t in self.tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigurationError(f"server token names must be unique: {', '.join(dupes)}")
        digests = [t.digest for t in self.tokens]
        if len(set(digests)) != len(digests):
            raise ConfigurationError("two server tokens share one secret; give each its own")
        if anonymous is not None and anonymous not in _ACCESS_LEVELS:
            raise ConfigurationError(
                f"anonymous access must be 'read' or 'write', not {anonymous!r}"
            )
        self.anonymous: Access | None = anonymous

    def __repr__(self) -> str:
        return (
            f"Authenticator(tokens={[t.name for t in self.tokens]!r}, anonymous={self.anonymous!r})"
        )

    def authenticate(self, secret: str | None) -> Principal | None:
        """The principal a secret (or no secret) stands for, or ``None`` when refused."""
        if secret is None:
            if self.anonymous is None:
                return None
            return Principal("anonymous", self.anonymous)
        given = _digest(secret)
        found: ApiToken | None = None
        for token in self.tokens:  # every token is compared, whichever matches
            if hmac.compare_digest(given, token.digest):
                found = token
        if found is None:
            return None
        return Principal(found.name, found.access, found.groups)


def parse_tokens(
    entries: object, *, source: str, environ: Mapping[str, str] | None = None
) -> list[ApiToken]:
    """Tokens from a list of objects ``{name, token_env | token, access, groups}``.

    A literal ``token`` is accepted only when ``source`` is the environment: secrets do
    not belong in files that are committed.
    """
    env = os.environ if environ is None else environ
    if not isinstance(entries, list):
        raise ConfigurationError(f"server tokens from {source} must be a list of objects")
    tokens: list[ApiToken] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"server token #{i + 1} from {source} must be an object")
        unknown = set(entry) - {"name", "token", "token_env", "access", "groups"}
        if unknown:
            raise ConfigurationError(
                f"server token #{i + 1} from {source} has unknown field(s) "
                f"{', '.join(sorted(unknown))}; known: name, token_env, token, access, groups"
            )
        name = entry.get("name") or entry.get("token_env") or f"token-{i + 1}"
        if "token" in entry:
            if not source.startswith("environment"):
                raise ConfigurationError(
                    f"server token {name!r} in {source} holds a literal secret; put the secret "
                    "in an environment variable and name it with token_env"
                )
            secret = entry["token"]
        elif "token_env" in entry:
            var = entry["token_env"]
            if not isinstance(var, str) or not var:
                raise ConfigurationError(f"server token {name!r}: token_env must be a name")
            secret = env.get(var)
            if not secret:
                raise ConfigurationError(
                    f"server token {name!r} reads its secret from ${var}, which is not set"
                )
        else:
            raise ConfigurationError(f"server token {name!r} from {source} needs token_env")
        groups = entry.get("groups")
        if groups is not None and (
            not isinstance(groups, Sequence) or isinstance(groups, str) or not groups
        ):
            raise ConfigurationError(
                f"server token {name!r}: groups must be a non-empty list of asset groups "
                "(leave it out to reach every group)"
            )
        tokens.append(
            ApiToken(
                name=str(name),
                secret=secret,
                access=entry.get("access", "read"),
                groups=frozenset(groups) if groups is not None else None,
            )
        )
    return tokens


@dataclass(frozen=True)
class ServerSettings:
    """``[tool.assetry.server]`` and ``ASSETRY_SERVER_*`` resolved."""

    tokens: tuple[ApiToken, ...] = ()
    max_body_bytes: int | None = None
    sources: Mapping[str, str] = field(default_factory=dict)


def load_server_settings(environ: Mapping[str, str] | None = None) -> ServerSettings:
    """Tokens and limits from ``ASSETRY_SERVER_TOKENS`` / ``ASSETRY_SERVER_MAX_BODY_BYTES``
    and ``[tool.assetry.server]`` (the environment's tokens are added to the file's)."""
    env = os.environ if environ is None else environ
    found = find_config_file()
    table: dict[str, Any] = {}
    source = "config file"
    if found is not None:
        path, config = found
        server = config.get("server", {}) if isinstance(config, dict) else {}
        if not isinstance(server, dict):
            raise ConfigurationError(f"[tool.assetry.server] in {path} must be a table")
        unknown = set(server) - {"tokens", "max_body_bytes"}
        if unknown:
            raise ConfigurationError(
                f"unknown server setting(s) {', '.join(sorted(unknown))} in {path}; "
                "known: tokens, max_body_bytes"
            )
        table, source = server, str(path)
    sources: dict[str, str] = {}
    tokens: list[ApiToken] = []
    if "tokens" in table:
        tokens += parse_tokens(table["tokens"], source=source, environ=env)
        sources["tokens"] = source
    if env.get(TOKENS_ENV):
        try:
            entries = json.loads(env[TOKENS_ENV])
        except json.JSONDecodeError:
            raise ConfigurationError(
                f"{TOKENS_ENV} must be a JSON list such as "
                '[{"name": "ci", "token_env": "CI_TOKEN", "access": "write"}]'
            ) from None
        tokens += parse_tokens(entries, source=f"environment {TOKENS_ENV}", environ=env)
        sources["tokens"] = f"environment {TOKENS_ENV}"
    max_body: int | None = None
    raw = env.get("ASSETRY_SERVER_MAX_BODY_BYTES") or table.get("max_body_bytes")
    if raw is not None:
        try:
            max_body = int(raw)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"max_body_bytes must be a whole number, got {raw!r}"
            ) from None
        if max_body <= 0:
            raise ConfigurationError(f"max_body_bytes must be positive, got {max_body}")
    return ServerSettings(tuple(tokens), max_body, sources)


# -- the web view's sessions -----------------------------------------------------------------

#: How long a sign-in lasts.
SESSION_SECONDS = 12 * 3600


class SessionSigner:
    """Signed sign-in sessions for the web view's cookie, so the cookie never holds the
    token itself: ``{token name, token fingerprint, expiry}`` signed with HMAC-SHA256.

    The key is random per server process unless given, so a restart signs everyone out.
    A session names its token and a fingerprint of its secret: a token removed from the
    configuration, or given a new secret, ends its sessions.
    """

    def __init__(self, auth: Authenticator, key: bytes | None = None) -> None:
        self.auth = auth
        self._key = key if key is not None else secrets.token_bytes(32)

    def __repr__(self) -> str:
        return f"SessionSigner({self.auth!r})"

    @staticmethod
    def _fingerprint(token: ApiToken) -> str:
        return hashlib.sha256(b"assetry-session" + token.digest).hexdigest()[:16]

    def _sign(self, payload: bytes) -> str:
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    def issue(self, secret: str, *, now: float | None = None) -> str | None:
        """A session for the token ``secret``, or ``None`` when the server does not know it."""
        principal = self.auth.authenticate(secret)
        token = self._token(principal.name) if principal is not None else None
        if token is None:
            return None
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        payload = json.dumps(
            {"n": token.name, "f": self._fingerprint(token), "e": expires}, separators=(",", ":")
        ).encode("utf-8")
        body = base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")
        return f"{body}.{self._sign(payload)}"

    def open(self, cookie: str | None, *, now: float | None = None) -> Principal | None:
        """The principal of a valid, unexpired session; ``None`` for anything else."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 4096:
            return None
        body, signature = cookie.split(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = json.loads(payload)
            name, fingerprint, expires = data["n"], data["f"], int(data["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < (time.time() if now is None else now):
            return None
        token = self._token(name)
        if token is None or not hmac.compare_digest(self._fingerprint(token), str(fingerprint)):
            return None
        return Principal(token.name, token.access, token.groups)

    def _token(self, name: object) -> ApiToken | None:
        return next((t for t in self.auth.tokens if t.name == name), None)
