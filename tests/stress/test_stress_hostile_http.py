"""Hostile requests straight at a served instance: random JSON bodies and query values at
every kind of route of a real ``assetry serve`` process answer 2xx or 4xx, never 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from assetry import Asset
from hypothesis import given
from hypothesis import strategies as st
from stress_kit import NASTY, Recorder, Sizes, examples, make_case, time_limit

pytest_plugins = ["stress_fixtures"]
pytestmark = pytest.mark.timeout(time_limit(900))


# -- hostile requests straight at a served instance ----------------------------------------------

#: Every write and read route of the API, with the field names its bodies use.
_API_ROUTES = [
    ("POST", "/api/v1/backend/register_asset"),
    ("POST", "/api/v1/backend/store_set"),
    ("POST", "/api/v1/backend/store_get"),
    ("POST", "/api/v1/backend/append_events"),
    ("POST", "/api/v1/backend/query_events"),
    ("POST", "/api/v1/backend/apply"),
    ("POST", "/api/v1/backend/import_events"),
    ("POST", "/api/v1/backend/set_cursors"),
    ("POST", "/api/v1/backend/latest_events"),
    ("POST", "/api/v1/assets"),
    ("POST", "/api/v1/events/orders"),
    ("PUT", "/api/v1/store-entry/orders"),
    ("GET", "/api/v1/events/orders"),
    ("GET", "/ui/timeline"),
]
_FIELDS = [
    "asset", "name", "uri", "key", "value_json", "extra_json", "extra", "partition",
    "partition_key", "source_run_id", "source_task_id", "aliases", "after", "before", "limit",
    "events", "writes", "cursors", "consumer", "timestamp", "expected_version", "value", "id",
]  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.tuples(st.sampled_from("ab\x00é"), st.integers(60_000, 70_000)).map(lambda t: t[0] * t[1]),
)
_URL_SAFE_NASTY = [n for n in NASTY if n == n.encode("utf-8", "replace").decode("utf-8")]
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_FIELDS), inner, max_size=5)
    ),
    max_leaves=12,
)


def test_hostile_requests_to_a_served_instance_never_answer_500(
    sizes: Sizes, figures: Recorder, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Random JSON bodies and query values at every kind of route of a real ``assetry
    serve`` process: each answers 2xx or 4xx with the JSON (or page) error shape, never
    500, and the server keeps serving the state it had."""
    import httpx

    cases = make_case("http", request, tmp_path)
    case = next(cases)
    with case.instance() as inst:
        inst.register(Asset("orders", uri="s3://data/orders"))
        inst.asset_store("orders").set("k", 1)
    headers = {"Authorization": f"Bearer {case.options['token']}"}
    sent = 0
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=case.url, headers=headers, timeout=30) as http:

        @examples(sizes, 150, 1500)
        @given(
            route=st.sampled_from(_API_ROUTES),
            body=_JSON,
            query=st.dictionaries(
                st.sampled_from(_FIELDS),
                st.sampled_from(_URL_SAFE_NASTY) | st.integers().map(str),
                max_size=3,
            ),
        )
        def attempt(route: tuple[str, str], body: Any, query: dict[str, str]) -> None:
            nonlocal sent
            method, path = route
            params = {**query, "name": "orders"} if path == "/ui/timeline" else query
            kw: dict[str, Any] = {"params": params}
            if method in ("POST", "PUT"):
                kw["content"] = json.dumps(body).encode()
                kw["headers"] = {"content-type": "application/json"}
            response = http.request(method, path, **kw)
            sent += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (method, path, response.text[:300])
            if response.status_code >= 400 and path.startswith("/api"):
                assert set(response.json()) == {"error"}

        attempt()
        assert http.get("/api/v1/ready").status_code == 200
    with case.instance() as inst:
        assert inst.asset_store("orders").get("k") is not None
    figures.record(
        "http",
        "hostile",
        hostile_inputs=sent,
        notes={
            "scenario": "random requests at every route of a served instance",
            "statuses": dict(sorted(statuses.items())),
        },
    )
    next(cases, None)
