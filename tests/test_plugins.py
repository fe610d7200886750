"""Backends found through entry points (``assetry.plugins``).

Third-party distributions are built for real: a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt`` on ``sys.path``, pointing at a module written beside it, exactly what
``pip install`` leaves behind.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import assetry
import pytest
from assetry import Instance, PluginError, StateBackend, UnsupportedSchemeError
from assetry.backends.memory import MemoryBackend
from assetry.plugins import BACKEND_SCHEMES, PluginRegistry, backend_for_url, backends

BACKEND_MODULE = '''
from assetry.backends.memory import MemoryBackend


class {cls}(MemoryBackend):
    """A third-party backend: the memory backend plus one option of its own."""

    name = "{name}"
    url_schemes = ("{scheme}",)

    def __init__(self, url=None, *, label="unset", **options):
        super().__init__(url=url, **options)
        self.label = label
'''


class PluginSite:
    """A folder on ``sys.path`` where tests install distributions with entry points."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def module(self, source: str) -> str:
        """Write a uniquely named module; return its import name."""
        name = f"assetry_test_plugin_{uuid.uuid4().hex[:10]}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        self.modules.append(name)
        return name

    def backend_module(self, name: str, scheme: str = "", cls: str = "ThirdPartyBackend") -> str:
        """A module defining a MemoryBackend subclass; return ``module:Class``."""
        module = self.module(BACKEND_MODULE.format(cls=cls, name=name, scheme=scheme or name))
        return f"{module}:{cls}"

    def distribution(self, dist: str, backends_: dict[str, str]) -> None:
        """Install distribution ``dist`` declaring ``assetry.backends`` entry points."""
        info = self.root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8"
        )
        lines = ["[assetry.backends]"] + [f"{n} = {target}" for n, target in backends_.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        importlib.invalidate_caches()
        backends.refresh()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ASSETRY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[PluginSite]:
    """A plugin folder on ``sys.path``; removed and the registry rescanned afterwards."""
    root = tmp_path / "site-packages"
    root.mkdir()
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    plugin_site = PluginSite(root)
    try:
        yield plugin_site
    finally:
        sys.path.remove(str(root))
        for module in plugin_site.modules:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()
        backends.refresh()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, made current."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


# -- third-party backends ---------------------------------------------------------------------


def test_backend_from_an_entry_point_is_selected_by_environment(
    site: PluginSite, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.distribution("acme-state", {"acme": site.backend_module("acme")})
    monkeypatch.setenv("ASSETRY_BACKEND", "acme")
    monkeypatch.setenv("ASSETRY_BACKEND_OPTIONS", '{"label": "from-env"}')
    with Instance() as inst:
        assert type(inst.backend).__name__ == "ThirdPartyBackend"
        assert isinstance(inst.backend, MemoryBackend)
        assert inst.backend.label == "from-env"  # type: ignore[attr-defined]
        assert inst.settings.sources["backend"] == "environment ASSETRY_BACKEND"
        store = inst.asset_store(assetry.Asset("orders"))
        store.set("watermark", "2024-06-01")
        assert store.get("watermark") == "2024-06-01"


def test_backend_from_an_entry_point_is_selected_by_pyproject(
    site: PluginSite, project: Path
) -> None:
    site.distribution("acme-state", {"acme": site.backend_module("acme")})
    (project / "pyproject.toml").write_text(
        '[tool.assetry]\nbackend = "acme"\n\n[tool.assetry.backend_options]\nlabel = "file"\n',
        encoding="utf-8",
    )
    nested = project / "jobs"
    nested.mkdir()
    with Instance.from_config(settings=assetry.load_settings(cwd=nested)) as inst:
        assert type(inst.backend).__name__ == "ThirdPartyBackend"
        assert inst.backend.label == "file"  # type: ignore[attr-defined]
    with Instance() as inst:  # the working directory's pyproject.toml
        assert inst.backend.label == "file"  # type: ignore[attr-defined]


def test_backend_url_scheme_served_by_a_plugin_selects_it(site: PluginSite, project: Path) -> None:
    site.distribution("acme-state", {"acme": site.backend_module("acme", scheme="acmedb")})
    assert backend_for_url("acmedb://cluster/state") == "acme"
    assert backend_for_url("ACMEDB+fast://cluster/state") == "acme"
    with Instance.from_url("acmedb://cluster/state") as inst:
        assert type(inst.backend).__name__ == "ThirdPartyBackend"


def test_refresh_finds_a_plugin_installed_after_the_first_scan(site: PluginSite) -> None:
    assert "late" not in backends.names()
    target = site.backend_module("late")
    info = site.root / "late_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: late-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[assetry.backends]\nlate = {target}\n")
    importlib.invalidate_caches()
    assert "late" not in backends.names()  # scanned once, cached
    backends.refresh()
    assert "late" in backends.names()
    assert issubclass(backends.load("late"), StateBackend)


def test_registry_forgets_a_removed_distribution_after_refresh(tmp_path: Path) -> None:
    root = tmp_path / "gone"
    root.mkdir()
    sys.path.insert(0, str(root))
    try:
        plugin_site = PluginSite(root)
        plugin_site.distribution("gone-dist", {"gone": plugin_site.backend_module("gone")})
        assert "gone" in backends.names()
    finally:
        sys.path.remove(str(root))
        importlib.invalidate_caches()
        backends.refresh()
    assert "gone" not in backends.names()
    assert "memory" in backends.names()


def test_two_distributions_claiming_one_name_is_an_error_naming_both(
    site: PluginSite, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    first = site.backend_module("dup", cls="FirstBackend")
    second = site.backend_module("dup", cls="SecondBackend")
    site.distribution("alpha-state", {"dup": first})
    site.distribution("beta-state", {"dup": second})
    with pytest.raises(PluginError) as info:
        backends.load("dup")
    message = str(info.value)
    assert "'dup'" in message
    assert "alpha-state" in message and "beta-state" in message
    assert first in message and second in message
    monkeypatch.setenv("ASSETRY_BACKEND", "dup")
    with pytest.raises(PluginError, match="alpha-state"):
        Instance()
    assert backends.load("memory") is MemoryBackend  # the others are unaffected


def test_plugin_that_fails_to_import_is_named_and_the_others_still_load(
    site: PluginSite,
) -> None:
    broken = site.module("raise ImportError(\"No module named 'acme_native_driver'\")\n")
    good = site.backend_module("good")
    site.distribution("broken-state", {"broken": f"{broken}:Backend"})
    site.distribution("good-state", {"good": good})

    with pytest.raises(PluginError) as info:
        backends.load("broken")
    message = str(info.value)
    assert "'broken'" in message and broken in message
    assert "acme_native_driver" in message

    loaded = backends.load_all()
    assert "broken" not in loaded
    assert loaded["memory"] is MemoryBackend
    assert issubclass(loaded["good"], MemoryBackend)
    rows = {row.name: row for row in backends.info()}
    assert rows["broken"].error is not None and "acme_native_driver" in rows["broken"].error
    assert rows["broken"].distribution == "broken-state"
    assert rows["good"].error is None and rows["good"].schemes == ("good",)
    assert rows["good"].distribution == "good-state"


def test_plugin_with_a_missing_attribute_is_a_plugin_error(site: PluginSite) -> None:
    module = site.module("VALUE = 1\n")
    site.distribution("typo-state", {"typo": f"{module}:Backend"})
    with pytest.raises(PluginError, match="'typo'"):
        backends.load("typo")


def test_plugin_that_is_not_a_state_backend_is_refused(
    site: PluginSite, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    module = site.module("class NotABackend:\n    pass\n")
    site.distribution("odd-state", {"odd": f"{module}:NotABackend"})
    monkeypatch.setenv("ASSETRY_BACKEND", "odd")
    with pytest.raises(PluginError, match="not a StateBackend subclass"):
        Instance()


def test_unknown_backend_name_lists_the_installed_ones(project: Path) -> None:
    with pytest.raises(PluginError) as info:
        Instance(backend="no-such-backend")
    message = str(info.value)
    assert "'no-such-backend'" in message
    for name in ("memory", "sql", "objectstore"):
        assert name in message
    assert "assetry.backends" in message


# -- routing URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "backend"), sorted(BACKEND_SCHEMES.items()))
def test_backend_for_url_routes_every_known_scheme(scheme: str, backend: str) -> None:
    assert backend_for_url(f"{scheme}://host/path") == backend
    assert backend_for_url(f"{scheme.upper()}://host/path") == backend
    assert backend_for_url(f"{scheme}+driver://host/path") == backend


def test_every_routed_backend_is_installed() -> None:
    assert set(BACKEND_SCHEMES.values()) <= set(backends.names())


@pytest.mark.parametrize("url", ["ftp://host/state", "nosuch+driver://x", "state.db", ""])
def test_backend_for_url_with_an_unknown_scheme_is_an_error(url: str) -> None:
    with pytest.raises(UnsupportedSchemeError) as info:
        backend_for_url(url)
    message = str(info.value)
    assert "no state backend serves" in message
    assert "sqlite" in message and "s3" in message  # the known schemes are listed
    assert isinstance(info.value, ValueError) and isinstance(info.value, PluginError)


# -- the registry itself ----------------------------------------------------------------------


def test_info_lists_the_built_in_backends_with_their_schemes() -> None:
    rows = {row.name: row for row in backends.info()}
    assert rows["memory"].target == "assetry.backends.memory:MemoryBackend"
    assert rows["memory"].distribution == "assetry"
    assert rows["memory"].schemes == ("memory",)
    assert rows["memory"].error is None
    assert {"sqlite", "postgresql"} <= set(rows["sql"].schemes)
    assert "s3" in rows["objectstore"].schemes


def test_registered_object_is_listed_and_removed_again() -> None:
    registry = PluginRegistry("assetry.backends", "state backend")

    class InProcessBackend(MemoryBackend):
        url_schemes = ("inproc",)

    registry.register("inproc", InProcessBackend)
    assert registry.load("inproc") is InProcessBackend
    rows = {row.name: row for row in registry.info()}
    assert rows["inproc"].schemes == ("inproc",)
    assert rows["inproc"].distribution is None
    registry.unregister("inproc")
    assert "inproc" not in registry.names()
    with pytest.raises(PluginError, match="'inproc'"):
        registry.load("inproc")


def test_registry_of_an_empty_group_reports_none_installed() -> None:
    registry = PluginRegistry(f"assetry.test.{uuid.uuid4().hex}", "widget")
    assert registry.names() == []
    assert registry.info() == []
    with pytest.raises(PluginError, match=r"installed: none"):
        registry.load("x")
