"""The plugin registry: state backends and IO managers found through entry points.

The tables here are data. Entry points are read on first use and a plugin is imported
only when it is needed, so ``import assetry`` stays fast; a plugin that fails to import
is reported by name and never hides the others.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .errors import PluginError, UnsupportedSchemeError

__all__ = [
    "BACKEND_SCHEMES",
    "INSTALL_HINTS",
    "PluginInfo",
    "PluginRegistry",
    "backends",
    "iomanagers",
]

#: URL scheme (before any ``+driver``) -> the backend a URL alone selects.
BACKEND_SCHEMES: dict[str, str] = {
    "sqlite": "sql",
    "postgresql": "sql",
    "postgres": "sql",
    "mysql": "sql",
    "mariadb": "sql",
    "s3": "objectstore",
    "s3a": "objectstore",
    "gs": "objectstore",
    "gcs": "objectstore",
    "az": "objectstore",
    "abfs": "objectstore",
    "abfss": "objectstore",
    "file": "objectstore",
    "memory": "memory",
    "http": "http",
    "https": "http",
}

#: What to install for a scheme or plugin that is missing or fails to import.
INSTALL_HINTS: dict[str, str] = {
    "postgresql": "pip install 'assetry[postgres]'",
    "postgres": "pip install 'assetry[postgres]'",
    "mysql": "pip install 'assetry[mysql]'",
    "mariadb": "pip install 'assetry[mysql]'",
    "s3": "pip install s3fs",
    "s3a": "pip install s3fs",
    "gs": "pip install gcsfs",
    "gcs": "pip install gcsfs",
    "az": "pip install adlfs",
    "abfs": "pip install adlfs",
    "abfss": "pip install adlfs",
    "snowflake": "pip install 'ibis-framework[snowflake]'",
    "bigquery": "pip install 'ibis-framework[bigquery]'",
    "trino": "pip install 'ibis-framework[trino]'",
    "clickhouse": "pip install 'ibis-framework[clickhouse]'",
    "delta": "pip install 'assetry[lakehouse]'",
    "iceberg": "pip install 'assetry[lakehouse]'",
    # the http backend's client: httpx and the server's pydantic models
    "http": "pip install 'assetry[server]'",
    "https": "pip install 'assetry[server]'",
}


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One installed plugin as the registry sees it (for ``assetry backends``)."""

    name: str
    target: str
    distribution: str | None
    error: str | None = None
    schemes: tuple[str, ...] = ()


def _dist_name(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else None


class PluginRegistry:
    """Entry points of one group, by name, imported lazily and cached."""

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind
        self._lock = threading.RLock()
        self._entry_points: dict[str, list[EntryPoint]] | None = None
        self._loaded: dict[str, Any] = {}
        self._errors: dict[str, str] = {}
        self._registered: dict[str, Any] = {}

    def _scan(self) -> dict[str, list[EntryPoint]]:
        with self._lock:
            if self._entry_points is None:
                found: dict[str, list[EntryPoint]] = {}
                for ep in entry_points(group=self.group):
                    same = found.setdefault(ep.name, [])
                    # the same distribution seen twice (e.g. an editable install) is one plugin
                    if not any(e.value == ep.value for e in same):
                        same.append(ep)
                self._entry_points = found
            return self._entry_points

    def refresh(self) -> None:
        """Forget what was scanned and loaded (after installing a plugin at run time)."""
        with self._lock:
            self._entry_points = None
            self._loaded.clear()
            self._errors.clear()

    def register(self, name: str, obj: Any) -> None:
        """Register a plugin object in this process, without an entry point (for tests)."""
        with self._lock:
            self._registered[name] = obj

    def unregister(self, name: str) -> None:
        """Remove a plugin registered with :meth:`register`."""
        with self._lock:
            self._registered.pop(name, None)

    def names(self) -> list[str]:
        """Every plugin name, installed or registered, sorted."""
        return sorted(set(self._scan()) | set(self._registered))

    def load(self, name: str) -> Any:
        """The plugin object called ``name``; a clear :class:`PluginError` if it cannot be had."""
        with self._lock:
            if name in self._registered:
                return self._registered[name]
            if name in self._loaded:
                return self._loaded[name]
            eps = self._scan().get(name)
            if not eps:
                known = ", ".join(self.names()) or "none"
                raise PluginError(
                    f"no {self.kind} called {name!r} is installed (installed: {known}); "
                    f"a package adds one with an entry point in the {self.group!r} group"
                )
            if len(eps) > 1:
                who = " and ".join(f"{_dist_name(ep) or '?'} ({ep.value})" for ep in eps)
                raise PluginError(
                    f"the {self.kind} name {name!r} is claimed by {who}; uninstall one of them"
                )
            try:
                obj = eps[0].load()
            except Exception as exc:
                message = (
                    f"the {self.kind} plugin {name!r} ({eps[0].value}) failed to import: {exc}"
                )
                hint = INSTALL_HINTS.get(name)
                if hint:
                    message += f"; try: {hint}"
                self._errors[name] = message
                raise PluginError(message) from exc
            self._loaded[name] = obj
            return obj

    def load_all(self) -> dict[str, Any]:
        """Every plugin that imports; failures are kept for :meth:`info` and skipped."""
        result: dict[str, Any] = {}
        for name in self.names():
            try:
                result[name] = self.load(name)
            except PluginError:
                continue
        return result

    def info(self) -> list[PluginInfo]:
        """Every plugin with its target, distribution, schemes and import error if any."""
        rows: list[PluginInfo] = []
        scanned = self._scan()
        for name in self.names():
            eps = scanned.get(name, [])
            target = eps[0].value if eps else repr(self._registered.get(name))
            dist = _dist_name(eps[0]) if eps else None
            try:
                obj = self.load(name)
            except PluginError as exc:
                rows.append(PluginInfo(name, target, dist, error=str(exc)))
                continue
            schemes = tuple(getattr(obj, "schemes", ()) or getattr(obj, "url_schemes", ()))
            schemes += tuple(getattr(obj, "format_schemes", ()))
            rows.append(PluginInfo(name, target, dist, schemes=schemes))
        return rows


backends = PluginRegistry("assetry.backends", "state backend")
iomanagers = PluginRegistry("assetry.iomanagers", "IO manager")


def backend_for_url(url: str) -> str:
    """The backend name a URL selects by its scheme (``postgresql+psycopg`` -> ``sql``)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    base = scheme.split("+", 1)[0]
    if base in BACKEND_SCHEMES:
        return BACKEND_SCHEMES[base]
    for name, cls in backends.load_all().items():
        if base in getattr(cls, "url_schemes", ()):
            return name
    known = ", ".join(sorted(BACKEND_SCHEMES))
    raise UnsupportedSchemeError(
        f"no state backend serves URLs with scheme {base or '(none)'!r} (known: {known}); "
        "name a backend explicitly with backend=... or install a plugin that serves it"
    )
