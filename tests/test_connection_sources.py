"""Connection sources declared by packages: where a connection id that assetry's
configuration and the registered lookups lack is looked up last.

An integration (``assetry.airflow``) declares one under the ``assetry.connection_sources``
entry point; assetry's own configuration always wins.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from assetry import ConfigurationError, Connection, config, load_settings
from assetry.config import lookup_connection, resolve_connection, storage_options_for


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ASSETRY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The declared sources, as loaded from entry points; a test may add its own."""
    sources = dict(config._entry_point_sources())
    monkeypatch.setattr(config, "_sources", sources)
    return sources


@pytest.fixture
def source(declared: dict[str, object]) -> Iterator[dict[str, Connection]]:
    """A declared source serving the connections put in the returned dict."""
    served: dict[str, Connection] = {}
    declared["test-source"] = served.get
    yield served


def test_the_airflow_source_is_found_by_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="assetry.connection_sources")}
    assert "airflow" in names


def test_the_airflow_source_stays_silent_outside_an_airflow_process() -> None:
    from assetry.airflow import airflow_connection

    assert "airflow" not in sys.modules
    assert airflow_connection("aws_default") is None
    assert "airflow" not in sys.modules  # it did not import Airflow to find out


def test_a_missing_id_falls_back_to_a_source(
    source: dict[str, Connection], tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    source["aws_default"] = Connection(
        "aws_default", None, {"key": "AKIA-SOURCE", "endpoint_url": "http://127.0.0.1:9"}
    )
    settings = load_settings()
    assert settings.connection("aws_default") is source["aws_default"]
    assert storage_options_for("s3://bucket/key", settings=settings) == {
        "key": "AKIA-SOURCE",
        "endpoint_url": "http://127.0.0.1:9",
    }
    assert resolve_connection("s3", "aws_default", settings) is source["aws_default"]


def test_assetry_configuration_wins_over_a_source(
    source: dict[str, Connection], monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", '{"endpoint_url": "http://127.0.0.1:1"}')
    source["aws_default"] = Connection("aws_default", None, {"endpoint_url": "http://other"})
    conn = load_settings().connection("aws_default")
    assert conn is not None and conn.options == {"endpoint_url": "http://127.0.0.1:1"}


def test_a_named_connection_no_source_has_is_still_an_error(
    source: dict[str, Connection], monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ASSETRY_CONN_NOWHERE"):
        resolve_connection("s3", "nowhere", load_settings())


def test_a_failing_source_is_skipped(
    declared: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(conn_id: str) -> Connection | None:
        raise RuntimeError("secret-in-message")

    declared["broken"] = broken
    assert config._entry_point_connection("anything") is None
    assert "broken" in caplog.text and "RuntimeError" in caplog.text
    assert "secret-in-message" not in caplog.text


def test_a_source_that_cannot_convert_its_connection_says_so(
    declared: dict[str, object], tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refusing(conn_id: str) -> Connection | None:
        raise ConfigurationError(f"connection {conn_id!r} has an unknown type")

    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    declared["refusing"] = refusing
    with pytest.raises(ConfigurationError, match="unknown type"):
        lookup_connection("x", load_settings())
