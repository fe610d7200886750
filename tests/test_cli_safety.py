"""A command line that cannot hurt by accident: consent for destructive commands, unambiguous
durations, read-only commands that create nothing, literal tables, hostile input as usage
errors."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from assetry import Asset, Instance, cli_common
from assetry.cli import main
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ASSETRY_")]:
        if name != "ASSETRY_REQUIRE_SERVICES":
            monkeypatch.delenv(name)


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A SQLite state with orders: two keys (one in a partition), ten-minute-old events."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with Instance.from_url(url) as inst:
        inst.register(Asset("orders", "s3://lake/orders"))
        inst.asset_store("orders").set("watermark", "2024-06-01")
        inst.asset_store("orders").partition("p1").set("done", True)
        old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        inst.record_events("orders", [{"n": i} for i in range(5)], timestamp=old)
        inst.record_event("orders", {"n": 5})
    yield url


def state(url: str) -> Instance:
    return Instance.from_url(url)


# -- consent -----------------------------------------------------------------------------------

DESTRUCTIVE = [
    ("events", "prune", "--keep-last", "1"),
    ("gc",),
    ("assets", "deactivate", "orders"),
    ("store", "clear", "orders"),
]


def _snapshot(url: str) -> tuple[Any, ...]:
    with state(url) as inst:
        return (
            [(e.id, e.extra) for e in inst.events("orders")],
            inst.get_asset("orders").active,
            [(e.partition, e.key, e.version) for e in inst.backend.store_entries("orders")],
            inst.backend.store_partitions("orders"),
        )


@pytest.mark.parametrize("args", DESTRUCTIVE, ids=lambda a: " ".join(a[:2]))
def test_destructive_commands_refuse_without_a_terminal_unless_yes(
    url: str, args: tuple[str, ...]
) -> None:
    if args == ("gc",):
        with state(url) as inst:
            inst.deactivate("orders")
    before = _snapshot(url)
    refused = run("--url", url, *args)
    assert refused.exit_code == 2, refused.output
    assert "--yes" in refused.output and "no terminal" in refused.output
    assert _snapshot(url) == before
    dry = run("--url", url, *args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would" in dry.output
    assert _snapshot(url) == before
    done = run("--url", url, *args, "--yes")
    assert done.exit_code == 0, done.output
    assert _snapshot(url) != before


@pytest.mark.parametrize("args", DESTRUCTIVE, ids=lambda a: " ".join(a[:2]))
def test_destructive_commands_ask_on_a_terminal(
    url: str, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_common, "stdin_is_terminal", lambda: True)
    if args == ("gc",):
        with state(url) as inst:
            inst.deactivate("orders")
    before = _snapshot(url)
    declined = run("--url", url, *args, input="n\n")
    assert declined.exit_code == 1 and "?" in declined.output
    assert _snapshot(url) == before
    accepted = run("--url", url, *args, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert _snapshot(url) != before


def test_dry_runs_print_what_would_go(url: str) -> None:
    prune = run("--url", url, "events", "prune", "--keep-last", "1", "--dry-run")
    assert "would delete 5 event(s)" in prune.output
    clear = run("--url", url, "store", "clear", "orders", "--dry-run")
    assert "watermark" in clear.output and "done" in clear.output
    assert "would delete 2 key(s)" in clear.output
    deactivate = run("--url", url, "assets", "deactivate", "orders", "--dry-run")
    assert "would deactivate asset 'orders'" in deactivate.output
    assert "2 store entries" in deactivate.output


def test_nothing_to_delete_needs_no_consent(url: str) -> None:
    result = run("--url", url, "events", "prune", "--keep-last", "1000")
    assert result.exit_code == 0 and "deleted 0 event(s)" in result.output
    assert run("--url", url, "gc").exit_code == 0


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1M", "10m", "1d10m"])
def test_m_is_refused_as_ambiguous_and_nothing_is_deleted(url: str, text: str) -> None:
    result = run("--url", url, "events", "prune", "--older-than", text, "--yes")
    assert result.exit_code == 2
    assert "ambiguous" in result.output and "min" in result.output
    assert len(_snapshot(url)[0]) == 6


@pytest.mark.parametrize(
    ("text", "deleted"),
    [("1min", 4), ("PT1M", 4), ("PT20M", 0), ("1h", 0), ("P1D", 0), ("1w", 0), ("300s", 4)],
)
def test_durations_in_units_and_iso_8601(url: str, text: str, deleted: int) -> None:
    out = run("--json", "--url", url, "events", "prune", "--older-than", text, "--dry-run")
    assert out.exit_code == 0, out.output
    # the newest event is always kept, and one of the old ones as the newest unpartitioned? no:
    # keep the newest of the asset (#6); the ten-minute-old #1-#5 go when older than the age
    assert json.loads(out.stdout)["deleted"] == (5 if deleted else 0)


def test_since_takes_the_same_durations(url: str) -> None:
    recent = run("--json", "--url", url, "events", "list", "orders", "--since", "PT5M")
    assert [e["extra"]["n"] for e in json.loads(recent.stdout)] == [5]
    assert run("--url", url, "events", "list", "orders", "--since", "5m").exit_code == 2


# -- read-only commands never create state -----------------------------------------------------

READ_ONLY = [
    ("assets", "list"),
    ("assets", "show", "orders"),
    ("store", "list", "orders"),
    ("store", "get", "orders", "k"),
    ("events", "list", "orders"),
    ("events", "tail", "--timeout", "0"),
]


def _no_state_message(url: str) -> str:
    from assetry.urls import render_url

    return f"no assetry state at {render_url(url)}; `assetry db upgrade` creates it"


@pytest.mark.parametrize("args", [*READ_ONLY, ("doctor",)], ids=" ".join)
@pytest.mark.parametrize("kind", ["sqlite-nodir", "file"])
def test_read_only_commands_create_no_files_or_folders(
    tmp_path: Path, kind: str, args: tuple[str, ...]
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'nodir' / 'x.db'}"
        if kind == "sqlite-nodir"
        else f"file://{tmp_path / 'fs'}"
    )
    result = run("--url", url, *args)
    assert result.exit_code == 1, result.output
    assert _no_state_message(url) in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_relative_sqlite_path_is_not_created(tmp_path: Path) -> None:
    result = run("--url", "sqlite:///nodir/x.db", "assets", "list")
    assert result.exit_code == 1
    assert "no assetry state at sqlite:///nodir/x.db" in result.output
    assert not (tmp_path / "nodir").exists()


def test_writes_keep_create_on_first_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nodir' / 'x.db'}"
    assert run("--url", url, "assets", "register", "orders").exit_code == 0
    assert (tmp_path / "nodir" / "x.db").exists()
    assert run("--url", url, "assets", "list").exit_code == 0


def test_instance_create_false_raises_the_typed_error(tmp_path: Path) -> None:
    from assetry.errors import StateNotFoundError

    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(StateNotFoundError, match="no assetry state at"):
        Instance.from_url(url, create=False)
    assert not (tmp_path / "x.db").exists()
    with Instance.from_url(url) as inst:  # a write path: creates it
        inst.upgrade()
    with Instance.from_url(url, create=False) as inst:
        assert inst.assets() == []


@pytest.mark.services
def test_read_only_commands_create_no_tables_in_an_empty_postgresql_database(
    pg_url: str,
) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(pg_url)
    name = f"assetry_ro_{uuid.uuid4().hex[:12]}"
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        for args in [*READ_ONLY, ("doctor",), ("db", "current")]:
            result = run("--url", url, *args)
            if args != ("db", "current"):
                assert result.exit_code == 1, (args, result.output)
                assert _no_state_message(url) in result.output
            if base.password:
                assert base.password not in result.output
        target = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(target) as conn:
            tables = conn.execute(
                "select count(*) from information_schema.tables where table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- tables show text literally ----------------------------------------------------------------

# printable text (no control, zero-width or lone modifier characters: a terminal cannot show
# those by themselves), and text shaped like rich markup, emoji codes and TOML tables
_PLAIN = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp", "Mn", "Me", "Cf", "Sk"),
    ),
    min_size=1,
    max_size=30,
)
_MARKUP = st.from_regex(r"\A(\[/?[a-z.= #0-9]{0,12}\]|:[a-z_]{1,8}:|[a-z ]{0,5}){1,6}\Z")
_TEXT = st.one_of(_PLAIN, _MARKUP).map(str.strip).filter(bool)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(_TEXT, min_size=1, max_size=4))
def test_printed_tables_show_every_value_literally(values: list[str]) -> None:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        cli_common.print_table(values[0], values, [values])
    out = buffer.getvalue()
    for value in values:
        assert value in out


@pytest.mark.parametrize(
    "text", ["see [tool.assetry] and [red]x[/red]", "[p1]", ":x: [bold]", "[link=x]y[/link]"]
)
def test_markup_in_keys_values_extras_and_partitions_is_printed_as_is(
    tmp_path: Path, text: str
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with Instance.from_url(url) as inst:
        inst.register(Asset(text, "s3://lake/x", extra={"note": text}))
        inst.asset_store(text).set(text, text)
        inst.asset_store(text).partition(text).set("k", 1)
        inst.record_event(text, {"note": text}, partition_key=text)
    outputs = [
        run("--url", url, "assets", "list").output,
        run("--url", url, "assets", "show", text).output,
        run("--url", url, "store", "list", text, "--all-partitions").output,
        run("--url", url, "events", "list", text).output,
    ]
    for out in outputs:
        assert text in out, out
    hint = run("--url", url, "store", "get", text, "nope").output
    assert text in hint


def test_doctor_keeps_brackets_of_setting_names(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with Instance.from_url(url) as inst:
        inst.upgrade()
    (tmp_path / "assetry.toml").write_text(
        f'backend_url = "{url}"\n[connections]\nbroken_pg = "postgresql://u:pw@127.0.0.1:1/db"\n'
    )
    result = run("doctor")
    assert result.exit_code == 1
    assert "[tool.assetry.connections]" in result.stdout  # the fix, in the table
    assert "pw" not in result.output.replace("pwd", "")


# -- hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("store", "set", "orders", "k", "[" * 100_000 + "]" * 100_000),
        ("store", "set", "orders", "k", "1" * 5000),
        ("events", "record", "orders", "--extra", '{"a":' + "[" * 100_000 + "]" * 100_000 + "}"),
        ("events", "list", "orders", "--after", str(2**64)),
        ("events", "list", "orders", "--limit", str(2**64)),
        ("events", "list", "orders", "--since", "9999999999d"),
        ("events", "list", "orders", "--since", "0001-01-01T00:00:00+01:00"),
        ("events", "list", "orders", "--until", "9999-12-31T23:59:59-01:00"),
        ("events", "prune", "--older-than", "1e400d"),
        ("events", "prune", "--older-than", "0s"),
        ("events", "prune", "--older-than", "PT0S", "--dry-run"),
        ("events", "prune", "--older-than", "99999999999999999999999w"),
        ("events", "prune", "--keep-last", str(2**64)),
        ("events", "tail", "--interval", "1e300", "--timeout", "0"),
        ("store", "set", "orders", "k", "1", "--expected-version", str(2**64)),
        ("assets", "register", "x", "--extra", "[" * 100_000),
    ],
    ids=lambda a: " ".join(x[:20] for x in a[:4]),
)
def test_hostile_input_is_a_usage_error(url: str, args: tuple[str, ...]) -> None:
    result = run("--url", url, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "RecursionError" not in result.output or "Usage" in result.output


def test_invalid_utf8_in_a_key_is_refused_not_stored(url: str) -> None:
    key = b"k\xff".decode("utf-8", "surrogateescape")  # what argv gives for invalid UTF-8
    result = run("--url", url, "store", "set", "orders", key, "1")
    assert result.exit_code == 2
    assert "not valid UTF-8" in result.output
    with state(url) as inst:
        assert inst.asset_store("orders").keys() == ["watermark"]
    assert run("--url", url, "store", "get", "orders", key).exit_code == 2
    assert run("--url", url, "assets", "register", key).exit_code == 2


def test_events_list_shows_the_newest_by_default(url: str) -> None:
    newest = run("--json", "--url", url, "events", "list", "orders", "--limit", "2")
    assert [e["id"] for e in json.loads(newest.stdout)] == [5, 6]
    oldest = run("--json", "--url", url, "events", "list", "orders", "--limit", "2", "--oldest")
    assert [e["id"] for e in json.loads(oldest.stdout)] == [1, 2]
    desc = run("--json", "--url", url, "events", "list", "orders", "--limit", "2", "--desc")
    assert [e["id"] for e in json.loads(desc.stdout)] == [6, 5]
    table = run("--url", url, "events", "list", "orders", "--limit", "2")
    assert "newest 2 shown" in table.stderr


@pytest.mark.parametrize("extra", [(), ("--string",)])
def test_invalid_utf8_on_standard_input_is_refused(url: str, extra: tuple[str, ...]) -> None:
    result = CliRunner().invoke(
        main, ["--url", url, "store", "set", "orders", "k", "-", *extra], input=b"\xff\xfe\n"
    )
    assert result.exit_code == 2, result.output
    assert "standard input is not valid UTF-8" in result.output
    with state(url) as inst:
        assert inst.asset_store("orders").keys() == ["watermark"]


@pytest.mark.parametrize("options", ["[" * 100_000, '{"a": ' + "1" * 5000 + "}", "[1]"])
def test_copy_options_that_are_not_a_json_object_are_usage_errors(
    url: str, tmp_path: Path, options: str
) -> None:
    result = run("copy", url, f"sqlite:///{tmp_path / 'dst.db'}", "--dst-options", options)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "dst.db").exists()
