"""Schemathesis against the server's OpenAPI document: generated requests for every
operation never make the server fail (no 5xx), and every answer matches the document
(documented status, content type and body schema)."""

from __future__ import annotations

import secrets
import warnings

import pytest

pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

import schemathesis
from assetry import Asset, Instance
from assetry.backends.memory import MemoryBackend
from assetry.server.app import create_app
from assetry.server.auth import ApiToken
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

TOKEN = secrets.token_urlsafe(24)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _seeded_instance() -> Instance:
    """Some state for generated requests to find: assets, store entries, events."""
    instance = Instance(backend=MemoryBackend())
    for name, group in (("orders", "sales"), ("a/b", "sales"), ("customers", "crm")):
        asset = Asset(name, uri=f"s3://data/{name}", group=group)
        instance.asset_store(asset).set("watermark", "2024-06-01")
        instance.record_event(asset, extra={"rows": 1}, partition_key="2024-06-01")
    return instance


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    app = create_app(
        _seeded_instance(), tokens=[ApiToken("fuzz", TOKEN, "write")], max_body_bytes=128 * 1024
    )
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_api_answers_every_generated_request_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
