"""Asset URIs stored by assetry 0.1.0 (before the per-scheme rules of
:mod:`assetry.uri_normalizers`) are normalised again by the backends' upgrades, so the same
asset registered now is found, not refused or duplicated; two assets that would become one
stop the upgrade with nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import assetry
import pytest
import sqlalchemy as sa
from assetry import Asset
from assetry.backends.objectstore import LAYOUT_VERSION, Layout, ObjectStoreBackend
from assetry.backends.sql import migrate, schema
from assetry.errors import ConflictError, SchemaVersionError
from assetry.uri_upgrade import plan_renormalisation
from assetry.urls import normalize_uri
from test_sql_migrations import _engine, _migrate_to

NOW_US = 1_717_200_000_000_000

#: (name, as 0.1.0 stored it, as it is registered now)
OLD_FORMS = [
    ("orders", "postgresql://db.example/sales/orders", "postgresql://db.example:5432/sales/orders"),
    ("items", "mariadb://db.example/shop/items", "mysql://db.example:3306/shop/items"),
    ("lake", "s3://lake", "s3://lake/"),
    ("plain", "s3://lake/plain", "s3://lake/plain"),
]


def test_the_new_forms_are_what_normalize_uri_writes_now() -> None:
    for _name, old, new in OLD_FORMS:
        assert normalize_uri(old) == new
    assert plan_renormalisation([(n, old) for n, old, _ in OLD_FORMS]) == [
        (n, old, new) for n, old, new in OLD_FORMS if old != new
    ]


def test_a_clash_names_both_assets() -> None:
    with pytest.raises(ConflictError, match=r"asset 'a' .* and asset 'b' .*:5432/x"):
        plan_renormalisation([("a", "postgresql://db/x"), ("b", "postgresql://db:5432/x")])


# == sql ==========================================================================================


def test_a_clash_names_the_uris_with_their_secrets_hidden() -> None:
    with pytest.raises(ConflictError) as caught:
        plan_renormalisation([("a", "s3://b/x?token=S3cr3t-a"), ("b", "s3://b/x/?token=S3cr3t-a")])
    message = str(caught.value)
    assert "'a'" in message and "'b'" in message and "token=***" in message
    assert "S3cr3t" not in message


def _insert_assets(url: str, rows: list[tuple[str, str]]) -> None:
    """Asset rows as 0.1.0 wrote them, one store entry each."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            for i, (name, uri) in enumerate(rows, start=1):
                conn.execute(
                    schema.assets.insert().values(
                        id=i,
                        name=name,
                        name_hash=schema.digest(name),
                        uri=uri,
                        uri_hash=schema.digest(uri),
                        asset_group="asset",
                        extra="{}",
                        active=True,
                        last_event_id=0,
                        created_at_us=NOW_US,
                        updated_at_us=NOW_US,
                    )
                )
                conn.execute(
                    schema.store.insert().values(
                        asset_id=i,
                        partition_hash=schema.digest(""),
                        key="k",
                        partition_key="",
                        value=json.dumps(name),
                        version=3,
                        updated_at_us=NOW_US,
                    )
                )
    finally:
        engine.dispose()


def _stored_uris(url: str) -> dict[str, str]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(schema.assets.c.name, schema.assets.c.uri))
            return {name: uri for name, uri in rows}
    finally:
        engine.dispose()


def test_sql_upgrade_normalises_stored_uris_again(database_url: str) -> None:
    _migrate_to(database_url, "0004")
    _insert_assets(database_url, [(name, old) for name, old, _new in OLD_FORMS])
    with assetry.Instance(backend="sql", url=database_url) as instance:
        instance.upgrade()
        assert instance.backend.schema_status()["current"] == migrate.head_revision()
        for name, old, new in OLD_FORMS:
            found = instance.backend.get_asset_by_uri(new)
            assert found is not None and found.name == name
            record = instance.register(Asset(name, uri=old))  # normalised to `new` first
            assert (record.uri, record.created_at.timestamp()) == (new, NOW_US / 1e6)
            assert instance.asset_store(name).get("k") == name
        assert [r.name for r in instance.assets()] == sorted(n for n, _o, _n in OLD_FORMS)
    assert _stored_uris(database_url) == {name: new for name, _old, new in OLD_FORMS}


def test_sql_upgrade_stops_on_a_clash_and_changes_nothing(database_url: str) -> None:
    _migrate_to(database_url, "0002")  # DDL revisions pending too: none of them may run
    rows = [("a", "postgresql://db/x"), ("b", "postgresql://db:5432/x"), ("c", "s3://lake")]
    _insert_assets(database_url, rows)
    with assetry.Instance(backend="sql", url=database_url) as instance:
        with pytest.raises(ConflictError, match=r"asset 'a' \('postgresql://db/x'\) and asset 'b'"):
            instance.upgrade()
        assert instance.backend.schema_status()["current"] == "0002"
    assert _stored_uris(database_url) == dict(rows)


# == objectstore ==================================================================================


def _write_layout_1(root: Path, rows: list[tuple[str, str]]) -> None:
    """The objects 0.1.0 wrote: format.json at layout 1, asset documents, URI claims."""

    def put(key: str, doc: dict[str, object]) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))

    put(Layout.FORMAT, {"format": "assetry-objectstore", "layout": 1})
    created = "2024-06-01T00:00:00+00:00"
    for name, uri in rows:
        put(
            Layout.asset(name),
            {
                "name": name,
                "uri": uri,
                "group": "asset",
                "extra": {},
                "active": True,
                "created_at": created,
                "updated_at": created,
                "w": "0",
            },
        )
        put(Layout.uri(uri), {"uri": uri, "name": name, "w": "0"})
        put(
            Layout.store_entry(name, "k", None),
            {
                "asset": name,
                "key": "k",
                "partition": None,
                "version": 3,
                "updated_at": created,
                "w": "0",
                "h": [],
                "value": name,
            },
        )


def test_objectstore_upgrade_normalises_stored_uris_again(tmp_path: Path) -> None:
    _write_layout_1(tmp_path, [(name, old) for name, old, _new in OLD_FORMS])
    url = f"file://{tmp_path}"
    with ObjectStoreBackend(url) as stale:
        with pytest.raises(SchemaVersionError, match=r"layout 1.*upgrade"):
            stale.register_asset("orders", OLD_FORMS[0][2])
        with pytest.raises(SchemaVersionError, match=r"layout 1.*upgrade"):
            stale.get_asset_by_uri(OLD_FORMS[0][2])
    with assetry.Instance(backend="objectstore", url=url) as instance:
        instance.upgrade()
        assert instance.backend.schema_status() == {
            "current": str(LAYOUT_VERSION),
            "head": str(LAYOUT_VERSION),
        }
        for name, old, new in OLD_FORMS:
            found = instance.backend.get_asset_by_uri(new)
            assert found is not None and found.name == name
            record = instance.register(Asset(name, uri=old))
            assert (record.uri, record.created_at.isoformat()) == (new, "2024-06-01T00:00:00+00:00")
            assert instance.asset_store(name).get("k") == name
            if old != new:  # the old claim is gone: the old form is free of this asset
                assert not (tmp_path / Layout.uri(old)).exists()
        assert [r.name for r in instance.assets()] == sorted(n for n, _o, _n in OLD_FORMS)
        instance.upgrade()  # again: nothing to do


def test_objectstore_upgrade_stops_on_a_clash_and_changes_nothing(tmp_path: Path) -> None:
    rows = [("a", "postgresql://db/x"), ("b", "postgresql://db:5432/x"), ("c", "s3://lake")]
    _write_layout_1(tmp_path, rows)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with ObjectStoreBackend(f"file://{tmp_path}") as backend:
        with pytest.raises(ConflictError, match=r"asset 'a' \('postgresql://db/x'\) and asset 'b'"):
            backend.upgrade()
        assert backend.schema_status()["current"] == "1"
    after = {
        p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "_locks" not in p.parts
    }
    assert after == before


def test_db_upgrade_reports_the_layouts_and_a_clash(tmp_path: Path) -> None:
    from assetry.cli import main
    from click.testing import CliRunner

    good, bad = tmp_path / "good", tmp_path / "bad"
    _write_layout_1(good, [(name, old) for name, old, _new in OLD_FORMS])
    _write_layout_1(bad, [("a", "mariadb://db/x"), ("b", "mysql://db:3306/x")])
    runner = CliRunner()
    upgraded = runner.invoke(main, ["--json", "--url", f"file://{good}", "db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert json.loads(upgraded.stdout)["from"] == "1"
    assert json.loads(upgraded.stdout)["to"] == str(LAYOUT_VERSION)
    refused = runner.invoke(main, ["--url", f"file://{bad}", "db", "upgrade"])
    assert refused.exit_code == 1
    assert "asset 'a' ('mariadb://db/x') and asset 'b'" in refused.output
    assert "Nothing was changed" in refused.output
