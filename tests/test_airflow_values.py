"""How Airflow's state-store text meets assetry's JSON values (``assetry.airflow._common``).

Runs without Airflow: the codec and the asset mapping are plain assetry; the Airflow-side
behaviour is tested in tests_airflow/ with Airflow installed.
"""

from __future__ import annotations

import json
import logging

import pytest
from assetry import Instance, StoreValueError
from assetry.airflow._common import (
    TEXT_KEY,
    AirflowAsset,
    AssetMapper,
    text_from_value_json,
    value_for_text,
)
from assetry.values import encode_value

LIMIT = 64 * 1024


@pytest.mark.parametrize(
    "text",
    [
        json.dumps("2024-06-01"),
        json.dumps(42),
        json.dumps({"z": 1, "a": [1, 2.5, None, "é"]}),
        json.dumps(True),
    ],
)
def test_what_airflow_writes_is_stored_as_the_json_value(text: str) -> None:
    value = value_for_text(text, max_bytes=LIMIT)
    assert value == json.loads(text)
    assert text_from_value_json(encode_value(value)) == text


@pytest.mark.parametrize(
    "text",
    ["2024-06-01T00:00:00Z", "", "null", "NaN", '{"a":1}', "1.0e5", json.dumps({TEXT_KEY: "x"})],
)
def test_any_other_text_is_kept_verbatim_in_an_envelope(text: str) -> None:
    value = value_for_text(text, max_bytes=LIMIT)
    assert value == {TEXT_KEY: text}
    assert text_from_value_json(encode_value(value)) == text


def test_a_value_over_the_limit_is_refused_when_written() -> None:
    value = value_for_text(json.dumps("x" * 100), max_bytes=50)
    with pytest.raises(StoreValueError, match="over the limit"):
        encode_value(value, max_bytes=50)


def test_text_is_required() -> None:
    with pytest.raises(StoreValueError):
        value_for_text(b"bytes", max_bytes=LIMIT)  # type: ignore[arg-type]


def test_the_name_is_the_identity(caplog: pytest.LogCaptureFixture) -> None:
    with Instance(backend="memory") as inst:
        mapper = AssetMapper(inst)
        first = AirflowAsset("orders", "s3://data/orders/", asset_id=1)
        assert mapper.existing(first) is None  # reads register nothing
        assert mapper.writable(first) == "orders"
        record = inst.get_asset("orders")
        assert record.uri == "s3://data/orders"
        assert record.extra == {"airflow": {"asset_id": 1}}
        inst.asset_store("orders").set("watermark", "w")

        moved = AirflowAsset("orders", "s3://warehouse/orders", asset_id=2)
        with caplog.at_level(logging.WARNING, logger="assetry.airflow"):
            assert AssetMapper(inst).writable(moved) == "orders"
        assert inst.get_asset("orders").uri == "s3://data/orders"
        assert inst.asset_store("orders").get("watermark") == "w"
        assert "keeps uri 's3://data/orders'" in caplog.text


def test_a_uri_assetry_cannot_take_is_recorded_opaquely() -> None:
    with Instance(backend="memory") as inst:
        mapper = AssetMapper(inst)
        inst.backend.register_asset("legacy", "s3://data/orders")
        assert mapper.writable(AirflowAsset("orders", "s3://data/orders")) == "orders"
        assert inst.get_asset("orders").uri == "airflow-asset:orders"
        assert mapper.writable(AirflowAsset("odd name/ü", "assetry://reserved")) == "odd name/ü"
        assert inst.get_asset("odd name/ü").uri == "airflow-asset:odd%20name%2F%C3%BC"


def test_an_inactive_asset_is_reactivated_for_a_write() -> None:
    with Instance(backend="memory") as inst:
        mapper = AssetMapper(inst)
        asset = AirflowAsset("orders", "s3://data/orders")
        mapper.writable(asset)
        inst.deactivate("orders")
        mapper.forget("orders")
        assert mapper.writable(asset) == "orders"
        assert inst.get_asset("orders").active
