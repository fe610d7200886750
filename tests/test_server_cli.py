"""``assetry serve``: refuses to start open to the world, serves the configured instance
when it has tokens, and the command line works against a served instance."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from assetry import Asset, Instance
from assetry.backends.memory import MemoryBackend
from assetry.cli import main
from click.testing import CliRunner

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx
from assetry.server.app import create_app
from assetry.server.auth import ApiToken
from assetry.server.live import LiveServer

TOKEN = secrets.token_urlsafe(24)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ASSETRY_"):
            monkeypatch.delenv(name)
    return tmp_path


def test_serve_refuses_to_start_without_tokens(clean_env: Path) -> None:
    result = CliRunner().invoke(main, ["--url", "memory://cli", "serve"])
    assert result.exit_code == 1
    assert "no server tokens are configured" in result.output
    assert "ASSETRY_SERVER_TOKENS" in result.output


def test_anonymous_access_only_on_loopback(clean_env: Path) -> None:
    result = CliRunner().invoke(
        main, ["--url", "memory://cli", "serve", "--host", "0.0.0.0", "--anonymous", "read"]
    )
    assert result.exit_code == 1
    assert "only on a loopback address" in result.output


def test_bad_token_configuration_stops_serve(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_SERVER_TOKENS", '[{"name": "ci", "token": "short"}]')
    result = CliRunner().invoke(main, ["--url", "memory://cli", "serve"])
    assert result.exit_code == 1 and "shorter than 16" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_with_the_configured_instance(clean_env: Path) -> None:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ASSETRY_")},
        "ASSETRY_SERVER_TOKENS": json.dumps(
            [{"name": "ops", "token_env": "OPS_TOKEN", "access": "write"}]
        ),
        "OPS_TOKEN": TOKEN,
    }
    state = clean_env / "state.db"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "assetry",
            "--url",
            f"sqlite:///{state}",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v1/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "assetry serve did not become ready"
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        created = httpx.post(
            f"{url}/api/v1/assets",
            json={"name": "orders", "uri": "s3://data/orders"},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        put = httpx.put(
            f"{url}/api/v1/store-entry/orders",
            params={"key": "k"},
            json={"value": 1},
            headers=headers,
        )
        assert put.json()["version"] == 1
        assert httpx.get(f"{url}/api/v1/assets").status_code == 401
        # a token put in a query string by mistake
        assert httpx.get(f"{url}/api/v1/health", params={"token": TOKEN}).status_code == 200
        assert httpx.head(f"{url}/ui/login").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    # the banner is one line in a log file, however long
    (banner,) = [line for line in stderr.splitlines() if "assetry serving" in line]
    assert len(banner) > 80 and "tokens: ops" in banner and str(state) in banner
    assert "GET /api/v1/health?token=***" in stdout + stderr
    assert TOKEN not in stderr and TOKEN not in stdout
    # the state outlives the server: it is the configured SQLite file
    with Instance.from_url(f"sqlite:///{state}") as inst:
        assert inst.asset_store("orders").get("k") == 1


def test_command_line_and_copy_work_against_a_remote_instance(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Instance(backend=MemoryBackend())
    served.record_events(Asset("orders", uri="s3://data/orders"), [{"i": i} for i in range(5)])
    monkeypatch.setenv("ASSETRY_HTTP_TOKEN", TOKEN)
    app = create_app(served, tokens=[ApiToken("ops", TOKEN, "write")])
    runner = CliRunner()
    with LiveServer(app) as live:
        stored = runner.invoke(main, ["--url", live.url, "store", "set", "orders", "k", '"v"'])
        assert stored.exit_code == 0, stored.output
        listed = runner.invoke(main, ["--url", live.url, "--json", "events", "list", "orders"])
        assert [e["id"] for e in json.loads(listed.output)] == [1, 2, 3, 4, 5]
        local = clean_env / "copy.db"
        copied = runner.invoke(main, ["copy", live.url, f"sqlite:///{local}"])
        assert copied.exit_code == 0, copied.output
    assert served.asset_store("orders").get("k") == "v"
    with Instance.from_url(f"sqlite:///{local}") as copy:
        assert [e.id for e in copy.events("orders")] == [1, 2, 3, 4, 5]
        assert copy.asset_store("orders").get("k") == "v"
