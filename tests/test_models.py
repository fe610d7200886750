"""The core model: Asset, Asset.ref, AssetAlias, conditions, AssetEvent, Metadata, AssetWatcher."""

from __future__ import annotations

import copy
import datetime as dt
import json
import pickle
from collections.abc import Callable

import pytest
from assetry import (
    Asset,
    AssetAlias,
    AssetAll,
    AssetAny,
    AssetEvent,
    AssetRef,
    AssetryError,
    AssetTypeError,
    AssetValueError,
    AssetWatcher,
    BaseAsset,
    Metadata,
    normalize_uri,
)

# -- Asset -----------------------------------------------------------------------------------


def test_asset_with_only_a_name_uses_it_as_uri() -> None:
    asset = Asset("orders")
    assert (asset.name, asset.uri) == ("orders", "orders")


def test_asset_with_only_a_uri_uses_the_normalised_uri_as_name() -> None:
    asset = Asset(uri="S3://data/orders/")
    assert (asset.name, asset.uri) == ("s3://data/orders", "s3://data/orders")


def test_asset_named_by_its_uri_keeps_secret_query_values_out_of_the_name() -> None:
    uri = "abfs://lake@acct.dfs.core.windows.net/orders?sv=2022&sig=S3cretSAS"
    asset = Asset(uri=uri)
    assert "S3cretSAS" in asset.uri  # the identity keeps it, rendered as *** when shown
    assert "S3cretSAS" not in asset.name
    assert asset.name == "abfs://lake@acct.dfs.core.windows.net/orders?sig=***&sv=2022"
    assert "S3cretSAS" not in repr(asset)
    assert pickle.loads(pickle.dumps(asset)) == asset


def test_asset_name_is_kept_verbatim_and_uri_normalised() -> None:
    asset = Asset("Orders/", uri="S3://data/orders/?b=1&a=2#x")
    assert asset.name == "Orders/"
    assert asset.uri == "s3://data/orders?a=2&b=1"


def test_asset_name_only_is_normalised_into_its_uri() -> None:
    assert Asset("team/orders/").uri == "team/orders"


def test_asset_without_name_or_uri_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="name or a uri"):
        Asset()


def test_asset_uri_password_is_dropped_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="password"):
        asset = Asset("orders", uri="s3://me:secret@host/orders")
    assert asset.uri == "s3://host/orders"  # all user-info goes, as in Airflow
    assert "secret" not in repr(asset)


def test_asset_is_path_like_and_takes_an_object_storage_path() -> None:
    import os

    from assetry import ObjectStoragePath

    asset = Asset("orders", uri=ObjectStoragePath("s3://data/orders/part.csv"))
    assert asset.uri == "s3://data/orders/part.csv"
    assert os.fspath(asset) == "s3://data/orders/part.csv"
    assert Asset(uri=ObjectStoragePath("s3://bucket")).uri == "s3://bucket/"


def test_normalized_uri_is_none_without_a_scheme_rule() -> None:
    assert Asset("t", uri="postgresql://h/db/s/t").normalized_uri == "postgresql://h:5432/db/s/t"
    assert Asset("b", uri="s3://bucket").normalized_uri == "s3://bucket/"
    assert Asset("g", uri="gs://bucket/key").normalized_uri is None
    assert Asset("plain").normalized_uri is None


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"name": 1}, TypeError, "asset name must be a str"),
        ({"name": b"orders"}, TypeError, "asset name must be a str"),
        ({"name": ""}, ValueError, "must not be empty"),
        ({"name": "  "}, ValueError, "must not be empty"),
        ({"name": "a\nb"}, ValueError, "control characters"),
        ({"name": "a\ud800"}, ValueError, "surrogates"),
        ({"name": "x" * 1501}, ValueError, "at most"),
        ({"uri": 5}, TypeError, "URI must be a str"),
        ({"uri": "assetry://x"}, ValueError, "reserved"),
        ({"name": "a", "group": 1}, TypeError, "group must be a str"),
        ({"name": "a", "group": ""}, ValueError, "group must not be empty"),
        ({"name": "a", "extra": [1]}, TypeError, "extra must be a dict"),
        ({"name": "a", "extra": "x"}, TypeError, "extra must be a dict"),
        ({"name": "a", "watchers": [1]}, TypeError, "AssetWatcher"),
        ({"name": "a", "watchers": ["w"]}, TypeError, "AssetWatcher"),
        ({"name": "a", "partition_column": 3}, TypeError, "partition column"),
    ],
)
def test_asset_rejects_bad_arguments(kwargs: dict, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        Asset(**kwargs)


def test_asset_is_immutable() -> None:
    asset = Asset("orders", uri="s3://data/orders")
    with pytest.raises(AttributeError, match="immutable"):
        asset.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        asset.uri = "s3://x/y"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del asset.name
    with pytest.raises(AttributeError):
        asset.new_attribute = 1  # type: ignore[attr-defined]
    assert (asset.name, asset.uri) == ("orders", "s3://data/orders")


def test_asset_extra_is_a_copy_of_the_argument() -> None:
    extra = {"owner": "team-a"}
    asset = Asset("orders", extra=extra)
    extra["owner"] = "team-b"
    assert asset.extra == {"owner": "team-a"}


def test_assets_equal_by_name_uri_and_group() -> None:
    a = Asset("orders", uri="s3://data/orders/")
    b = Asset("orders", uri="S3://data/orders")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != Asset("orders", uri="s3://data/other")
    assert a != Asset("other", uri="s3://data/orders")
    assert a != Asset("orders", uri="s3://data/orders", group="ml")
    assert a != "orders"


def test_asset_equality_ignores_extra() -> None:
    assert Asset("a", extra={"x": 1}) == Asset("a", extra={"x": 2})


def test_asset_pickle_round_trip_keeps_every_field() -> None:
    watcher = AssetWatcher("new-files", trigger="a picklable trigger")
    asset = Asset(
        "orders",
        uri="s3://data/orders",
        group="sales",
        extra={"owner": "team-a", "tags": ["x"]},
        watchers=[watcher],
        checks=("not-null",),
        partition_column="day",
    )
    clone = pickle.loads(pickle.dumps(asset))
    assert clone == asset
    assert clone.group == "sales"
    assert clone.extra == {"owner": "team-a", "tags": ["x"]}
    assert clone.partition_column == "day"
    assert clone.checks == ("not-null",)
    assert [(w.name, w.trigger) for w in clone.watchers] == [("new-files", "a picklable trigger")]


def test_asset_copy_and_deepcopy_are_equal() -> None:
    asset = Asset("orders", uri="s3://data/orders", extra={"a": [1]})
    assert copy.copy(asset) == asset
    deep = copy.deepcopy(asset)
    assert deep == asset and deep.extra == asset.extra


def test_asset_repr_names_name_and_uri() -> None:
    assert repr(Asset("orders", uri="s3://d/o")) == "Asset(name='orders', uri='s3://d/o')"


# -- Asset.ref --------------------------------------------------------------------------------


def test_asset_ref_by_name() -> None:
    ref = Asset.ref(name="orders")
    assert isinstance(ref, AssetRef)
    assert (ref.name, ref.uri) == ("orders", None)
    assert Asset.ref("orders") == ref


def test_asset_ref_by_uri_is_normalised() -> None:
    ref = Asset.ref(uri="S3://data/orders/")
    assert (ref.name, ref.uri) == (None, "s3://data/orders")
    assert ref == Asset.ref(uri="s3://data/orders")
    assert hash(ref) == hash(Asset.ref(uri="s3://data/orders"))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"name": "a", "uri": "s3://b/a"}, {"name": None}, {"uri": None}],
)
def test_asset_ref_needs_exactly_one_argument(kwargs: dict) -> None:
    with pytest.raises(TypeError, match="exactly one"):
        Asset.ref(**kwargs)


def test_asset_ref_rejects_bad_values() -> None:
    with pytest.raises(TypeError):
        Asset.ref(name=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Asset.ref(uri="assetry://x")


def test_asset_ref_is_immutable_and_picklable() -> None:
    ref = Asset.ref(uri="s3://data/orders")
    with pytest.raises(AttributeError, match="immutable"):
        ref.name = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(ref)) == ref
    assert ref != Asset.ref(name="s3://data/orders")


# -- AssetAlias -------------------------------------------------------------------------------


def test_asset_alias_equality_hash_and_pickle() -> None:
    alias = AssetAlias("s3_bucket", group="storage")
    assert alias == AssetAlias("s3_bucket")
    assert hash(alias) == hash(AssetAlias("s3_bucket"))
    assert alias != AssetAlias("other")
    clone = pickle.loads(pickle.dumps(alias))
    assert clone == alias and clone.group == "storage"
    assert repr(alias) == "AssetAlias(name='s3_bucket')"


def test_asset_alias_validates_its_name_and_is_immutable() -> None:
    with pytest.raises(TypeError, match="alias name"):
        AssetAlias(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alias name"):
        AssetAlias("")
    alias = AssetAlias("a")
    with pytest.raises(AttributeError, match="immutable"):
        alias.name = "b"  # type: ignore[misc]


# -- conditions -------------------------------------------------------------------------------

A, B, C, D = (Asset(n, uri=f"s3://data/{n}") for n in "abcd")


def test_and_of_three_assets_is_one_flat_asset_all() -> None:
    cond = A & B & C
    assert isinstance(cond, AssetAll)
    assert cond.objects == (A, B, C)


def test_or_of_three_assets_is_one_flat_asset_any() -> None:
    cond = A | B | C
    assert isinstance(cond, AssetAny)
    assert cond.objects == (A, B, C)


def test_parenthesised_and_is_flattened_too() -> None:
    assert (A & (B & C)).objects == (A, B, C)
    assert ((A | B) | (C | D)).objects == (A, B, C, D)


def test_mixing_and_or_stays_nested() -> None:
    cond = (A | B) & C
    assert isinstance(cond, AssetAll)
    assert cond.objects == (AssetAny(A, B), C)
    other = A & B | C
    assert isinstance(other, AssetAny)
    assert other.objects == (AssetAll(A, B), C)


def test_refs_and_aliases_combine_with_assets() -> None:
    cond = A & Asset.ref(name="b") | AssetAlias("al")
    assert cond == AssetAny(AssetAll(A, AssetRef(name="b")), AssetAlias("al"))


@pytest.mark.parametrize(
    "combine",
    [
        lambda: A & 1,
        lambda: 1 & A,
        lambda: A | 1,
        lambda: 1 | A,
        lambda: A & "b",
        lambda: None | A,
        lambda: (A | B) & 2.5,
    ],
)
def test_combining_with_a_non_asset_is_a_type_error(combine) -> None:
    with pytest.raises(TypeError):
        combine()


def test_condition_constructors_validate_operands() -> None:
    with pytest.raises(TypeError, match="not int"):
        AssetAll(A, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        AssetAny()


def test_evaluate_all_and_any() -> None:
    cond = (A | B) & C
    assert cond.evaluate(lambda x: x in {A, C})
    assert cond.evaluate(lambda x: x in {B, C})
    assert not cond.evaluate(lambda x: x in {A, B})
    assert not cond.evaluate(lambda x: x == C)
    assert (A | B).evaluate(lambda x: x == B)
    assert not (A & B).evaluate(lambda x: x == B)
    assert A.evaluate(lambda x: x == A)


def test_leaves_lists_every_operand_in_order() -> None:
    cond = (A | Asset.ref(name="x")) & (AssetAlias("al") | (C & D))
    assert list(cond.leaves()) == [A, AssetRef(name="x"), AssetAlias("al"), C, D]
    assert list(A.leaves()) == [A]


def test_conditions_are_equal_hashable_immutable_and_picklable() -> None:
    cond = (A | B) & AssetAlias("al")
    assert cond == (A | B) & AssetAlias("al")
    assert hash(cond) == hash((A | B) & AssetAlias("al"))
    assert AssetAll(A, B) != AssetAny(A, B)
    assert pickle.loads(pickle.dumps(cond)) == cond
    with pytest.raises(AttributeError, match="immutable"):
        cond.objects = ()  # type: ignore[misc]


def test_every_model_is_a_base_asset() -> None:
    for obj in (A, Asset.ref(name="a"), AssetAlias("al"), A & B, A | B):
        assert isinstance(obj, BaseAsset)


# -- AssetEvent -------------------------------------------------------------------------------


def _event(**changes: object) -> AssetEvent:
    fields: dict = {
        "id": 7,
        "asset_name": "orders",
        "asset_uri": "s3://data/orders",
        "timestamp": dt.datetime(2024, 6, 1, 12, 30, tzinfo=dt.UTC),
        "extra": {"rows": 10},
        "partition_key": "2024-06-01",
        "source_task_id": "load_orders",
        "source_run_id": "run-42",
        "aliases": ("s3_bucket",),
    }
    fields.update(changes)
    return AssetEvent(**fields)


def test_asset_event_asset_rebuilds_the_asset() -> None:
    assert _event().asset == Asset("orders", uri="s3://data/orders")


def test_asset_event_source_dag_run_is_the_run_id() -> None:
    assert _event().source_dag_run == "run-42"
    assert _event(source_run_id=None).source_dag_run is None


def test_asset_event_to_dict_is_json_compatible() -> None:
    data = _event().to_dict()
    assert data == {
        "id": 7,
        "asset_name": "orders",
        "asset_uri": "s3://data/orders",
        "timestamp": "2024-06-01T12:30:00+00:00",
        "extra": {"rows": 10},
        "partition_key": "2024-06-01",
        "source_task_id": "load_orders",
        "source_run_id": "run-42",
        "aliases": ["s3_bucket"],
    }
    assert json.loads(json.dumps(data)) == data


def test_asset_event_defaults_and_immutability() -> None:
    event = AssetEvent(1, "a", "a", dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    assert (event.extra, event.partition_key, event.aliases) == ({}, None, ())
    with pytest.raises(AttributeError):
        event.id = 2  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(_event())) == _event()


# -- Metadata ---------------------------------------------------------------------------------


def test_metadata_carries_asset_extra_and_alias() -> None:
    alias = AssetAlias("al")
    meta = Metadata(A, {"rows": 1}, alias=alias)
    assert (meta.asset, meta.extra, meta.alias) == (A, {"rows": 1}, alias)
    assert Metadata(A).extra == {}
    assert Metadata(A, None).extra == {}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "text"),
    [
        (("orders",), {}, "needs an Asset"),
        ((Asset.ref(name="a"),), {}, "needs an Asset"),
        ((A, [1]), {}, "extra must be a dict"),
        ((A,), {"alias": "al"}, "alias must be an AssetAlias"),
    ],
)
def test_metadata_rejects_bad_arguments(args: tuple, kwargs: dict, text: str) -> None:
    with pytest.raises(TypeError, match=text):
        Metadata(*args, **kwargs)


# -- AssetWatcher -----------------------------------------------------------------------------


def test_asset_watcher_keeps_name_and_trigger() -> None:
    trigger = object()
    watcher = AssetWatcher("new-files", trigger)
    assert watcher.name == "new-files" and watcher.trigger is trigger
    assert "new-files" in repr(watcher)
    asset = Asset("orders", watchers=[watcher])
    assert asset.watchers == (watcher,)


def test_asset_watcher_validates_its_name() -> None:
    with pytest.raises(TypeError, match="watcher name"):
        AssetWatcher(1, trigger=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="watcher name"):
        AssetWatcher("", trigger=None)


def test_asset_extra_must_be_json_when_the_asset_is_declared() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Asset("nan-extra", extra={"x": float("nan")})


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Asset(name=""), AssetValueError),
        (lambda: Asset(name="a\x00b"), AssetValueError),
        (lambda: Asset(name=5), AssetTypeError),  # type: ignore[arg-type]
        (lambda: Asset(), AssetTypeError),
        (lambda: Asset("a", uri="s3://"), AssetValueError),
        (lambda: Asset("a", uri="x" * 1501), AssetValueError),
        (lambda: Asset.ref(name="a", uri="s3://b/k"), AssetTypeError),
        (lambda: AssetAlias(""), AssetValueError),
        (lambda: normalize_uri(None), AssetTypeError),
        (lambda: normalize_uri("assetry://x"), AssetValueError),
    ],
)
def test_bad_asset_names_and_uris_raise_typed_assetry_errors(
    build: Callable[[], object], error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        build()
    assert isinstance(caught.value, AssetryError)
    assert isinstance(caught.value, ValueError if error is AssetValueError else TypeError)
