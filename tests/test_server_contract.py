"""The HTTP contract is stated once: the backend family's routes take and answer the
models of :mod:`assetry.server.backend_models`, the ``http`` backend builds its requests
and reads the answers with the same models, and the client side needs no web framework."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("fastapi")

from assetry.server import backend_models
from assetry.server.protocol import BACKEND_PREFIX, ERROR_KINDS, ERROR_TYPES, classify
from fastapi.routing import APIRoute


def _backend_routes() -> list[APIRoute]:
    from assetry.server import backend_api

    return [r for r in backend_api.router.routes if isinstance(r, APIRoute)]


def test_backend_routes_take_and_answer_the_shared_models() -> None:
    routes = _backend_routes()
    assert len(routes) >= 25
    for route in routes:
        assert route.path.startswith(BACKEND_PREFIX)
        assert route.response_model.__module__ == backend_models.__name__, route.path
        body = route.body_field
        if body is not None:
            assert body.field_info.annotation.__module__ == backend_models.__name__, route.path


def test_http_backend_builds_no_request_by_hand() -> None:
    """Every method of the http backend goes through a model: no dict literal of fields."""
    import inspect

    from assetry.backends import http

    source = inspect.getsource(http.HTTPBackend)
    assert "self._client.call(" in source
    assert not any(f'"{field}":' in source for field in ("asset", "key", "events", "name"))


def test_client_side_imports_no_web_framework() -> None:
    code = (
        "import sys, assetry.backends.http, assetry.client;"
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'jinja2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_every_error_type_maps_back_to_one_exception() -> None:
    assert len(ERROR_TYPES) == len(ERROR_KINDS)
    for kind in ERROR_KINDS:
        for answered in kind.answers:
            found = classify(answered("x"))
            assert found is not None and found.type == kind.type


def test_request_models_refuse_over_long_source_ids_and_aliases() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="source_run_id"):
        backend_models.NewEventIn(asset="a", source_run_id="r" * 70_000)
    with pytest.raises(ValidationError, match="aliases"):
        backend_models.NewEventIn(asset="a", aliases=[f"{i}" + "x" * 1400 for i in range(40)])
    with pytest.raises(ValidationError, match="aliases"):
        backend_models.NewEventIn(asset="a", aliases=[str(i) for i in range(101)])


def test_http_backend_without_the_server_extra_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['pydantic'] = None\n"
        "import assetry\n"
        "try:\n"
        "    assetry.Instance.from_url('http://127.0.0.1:1', token='x')\n"
        "except assetry.AssetryError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pydantic" in out.stdout and "pip install 'assetry[server]'" in out.stdout
