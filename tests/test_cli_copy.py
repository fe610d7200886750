"""`assetry copy`: consent into a non-empty destination, --dry-run, conflicts checked before
anything is written, and no calls that Click 9 removes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from assetry import Asset, Instance, cli_common
from assetry.cli import main
from click.testing import CliRunner, Result


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ASSETRY_")]:
        if name != "ASSETRY_REQUIRE_SERVICES":
            monkeypatch.delenv(name)


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def sqlite(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


def populate(url: str) -> None:
    with Instance.from_url(url) as inst:
        for name in ("a", "b", "c"):
            inst.register(Asset(name, f"s3://lake/{name}"))
            inst.asset_store(name).set("k", name)
            inst.record_event(name, {"n": 1})


def contents(url: str) -> Any:
    with Instance.from_url(url) as inst:
        return [
            (
                r.name,
                r.uri,
                [(e.key, e.value_json) for e in inst.backend.store_entries(r.name)],
                [e.id for e in inst.events(r.name)],
            )
            for r in inst.assets()
        ]


def test_copy_into_an_empty_destination_needs_no_consent(tmp_path: Path) -> None:
    src, dst = sqlite(tmp_path, "src.db"), sqlite(tmp_path, "dst.db")
    populate(src)
    result = run("copy", src, dst)
    assert result.exit_code == 0, result.output
    assert contents(dst) == contents(src)


def test_copy_into_a_non_empty_destination_asks_or_needs_yes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = sqlite(tmp_path, "src.db"), sqlite(tmp_path, "dst.db")
    populate(src)
    with Instance.from_url(dst) as inst:
        inst.register(Asset("a", "s3://lake/a"))
        inst.asset_store("a").set("k", "theirs")
    before = contents(dst)
    refused = run("copy", src, dst)
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert contents(dst) == before
    monkeypatch.setattr(cli_common, "stdin_is_terminal", lambda: True)
    declined = run("copy", src, dst, input="n\n")
    assert declined.exit_code == 1 and "already holds 1 asset(s)" in declined.output
    assert contents(dst) == before
    accepted = run("copy", src, dst, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert contents(dst) == contents(src)


def test_copy_dry_run_prints_what_would_go_and_writes_nothing(tmp_path: Path) -> None:
    src, dst = sqlite(tmp_path, "src.db"), sqlite(tmp_path / "new", "dst.db")
    populate(src)
    dry = run("--json", "copy", src, dst, "--dry-run")
    assert dry.exit_code == 0, dry.output
    plans = json.loads(dry.stdout)["assets"]
    assert [(p["asset"], p["register"], p["store_writes"], p["events"]) for p in plans] == [
        ("a", True, 1, 1),
        ("b", True, 1, 1),
        ("c", True, 1, 1),
    ]
    assert not (tmp_path / "new").exists()  # not even the destination's folder
    assert run("copy", src, dst).exit_code == 0
    again = run("--json", "copy", src, dst, "--dry-run")
    plans = json.loads(again.stdout)["assets"]
    assert all((p["register"], p["store_writes"], p["events"]) == (False, 0, 0) for p in plans)
    table = run("copy", src, dst, "--dry-run")
    assert "nothing was written" in table.output


def test_copy_checks_every_conflict_before_writing_anything(tmp_path: Path) -> None:
    src, dst = sqlite(tmp_path, "src.db"), sqlite(tmp_path, "dst.db")
    populate(src)
    with Instance.from_url(dst) as inst:
        inst.register(Asset("c", "s3://elsewhere/c"))  # same name, another uri
        inst.register(Asset("other", "s3://lake/b"))  # b's uri under another name
    before = contents(dst)
    result = run("copy", src, dst, "--yes")
    assert result.exit_code == 1
    assert "2 asset(s) conflict" in result.output
    assert "asset 'c' is registered in the destination with uri 's3://elsewhere/c'" in (
        result.output
    )
    assert "asset 'b': its uri 's3://lake/b' is registered in the destination as asset 'other'" in (
        result.output
    )
    assert contents(dst) == before  # asset 'a' (no conflict) was not copied either
    assert run("copy", src, dst, "--dry-run").exit_code == 1


def test_copy_reads_the_source_without_creating_it(tmp_path: Path) -> None:
    src, dst = sqlite(tmp_path / "nodir", "src.db"), sqlite(tmp_path, "dst.db")
    result = run("copy", src, dst)
    assert result.exit_code == 1
    assert "no assetry state at" in result.output
    assert not (tmp_path / "nodir").exists() and not (tmp_path / "dst.db").exists()


def test_copy_keeps_the_contract_of_each_asset(tmp_path: Path) -> None:
    from assetry.contracts import AssetContract

    src, dst = f"memory://{uuid.uuid4().hex}", sqlite(tmp_path, "dst.db")
    schema = {"type": "object", "properties": {"rows": {"type": "integer"}}}
    with Instance.from_url(src) as inst:
        inst.register(Asset("a", "s3://lake/a", extra_schema=schema))
        want = inst.get_asset("a").contract
        assert want != AssetContract()
        # the memory source lives in this process: copy while it is open
        assert run("copy", src, dst).exit_code == 0
    with Instance.from_url(dst) as inst:
        assert inst.get_asset("a").contract == want


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
        else:
            found.append((*prefix, name))
    return found


def test_no_click_deprecation_warnings(tmp_path: Path) -> None:
    """Click 9 removes what it deprecates in 8.2+: every command's help and a few real runs
    must not touch any of it."""
    url = sqlite(tmp_path, "s.db")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for path in _commands(main):
            result = run(*path, "--help")
            assert result.exit_code == 0, (path, result.output, result.exception)
        for args in (
            ("--version",),
            ("--url", url, "assets", "register", "a"),
            ("--url", url, "--json", "assets", "list"),
            ("--url", url, "events", "record", "a"),
            ("--url", url, "events", "list", "a"),
            ("--url", url, "store", "clear", "a", "--yes"),
        ):
            result = run(*args)
            assert result.exit_code == 0, (args, result.output, result.exception)


@contextlib.contextmanager
def destination_url(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A destination of ``kind``: a SQLite file, a folder, or a live server on loopback
    (backed by SQLite, its token in ``ASSETRY_HTTP_TOKEN``)."""
    if kind == "sqlite":
        yield sqlite(tmp_path, "dst.db")
    elif kind == "file":
        yield f"file://{tmp_path / 'dst'}"
    else:
        pytest.importorskip("fastapi")
        pytest.importorskip("uvicorn")
        from assetry.server.app import create_app
        from assetry.server.auth import ApiToken
        from assetry.server.live import LiveServer

        token = secrets.token_urlsafe(24)
        monkeypatch.setenv("ASSETRY_HTTP_TOKEN", token)
        served = Instance.from_url(sqlite(tmp_path, "served.db"))
        try:
            with LiveServer(create_app(served, tokens=[ApiToken("etl", token, "write")])) as live:
                yield live.url
        finally:
            served.close()


@pytest.mark.parametrize(
    ("source", "destination"),
    [("sqlite", "sqlite"), ("memory", "sqlite"), ("sqlite", "file"), ("sqlite", "http")],
)
def test_copy_keeps_store_versions_update_times_and_asset_timestamps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, destination: str
) -> None:
    with destination_url(destination, tmp_path, monkeypatch) as dst:
        _copy_keeps_versions(tmp_path, source, dst)


def _copy_keeps_versions(tmp_path: Path, source: str, dst: str) -> None:
    src = sqlite(tmp_path, "src.db") if source == "sqlite" else f"memory://{uuid.uuid4().hex}"
    inst = Instance.from_url(src)
    try:
        inst.register(Asset("a", "s3://lake/a"))
        inst.register(Asset("gone", "s3://lake/gone"))
        for value in range(4):
            inst.asset_store("a").set("k", value)
        inst.asset_store("a").partition("p1").set("done", True)
        inst.asset_store("a").partition("p1").set("done", False)
        inst.asset_store("gone").set("x", 1)
        inst.deactivate("gone")
        inst.record_event("a", {"n": 1})
        result = run("--json", "copy", src, dst)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["versions_kept"] is True
        want = {
            r.name: (
                r,
                [
                    (e.partition, e.key, e.value_json, e.version, e.updated_at)
                    for p in [None, *inst.backend.store_partitions(r.name)]
                    for e in inst.backend.store_entries(r.name, p)
                ],
            )
            for r in inst.assets()
        }
        again = run("--json", "copy", "--yes", src, dst)
        assert json.loads(again.stdout)["changed"] == 0
    finally:
        inst.close()
    with Instance.from_url(dst) as copy:
        got = {
            r.name: (
                r,
                [
                    (e.partition, e.key, e.value_json, e.version, e.updated_at)
                    for p in [None, *copy.backend.store_partitions(r.name)]
                    for e in copy.backend.store_entries(r.name, p)
                ],
            )
            for r in copy.assets()
        }
    assert got == want
    assert [v for _p, k, _j, v, _t in got["a"][1] if k == "k"] == [4]
    assert not got["gone"][0].active
