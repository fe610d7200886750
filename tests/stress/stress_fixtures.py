"""The stress suites' fixtures and session hook, loaded by each ``test_stress_*.py`` module
through ``pytest_plugins`` (see :mod:`stress_kit` for what they build on)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from stress_kit import (
    BACKENDS,
    FIGURES,
    FIGURES_ENV,
    PROCESS_BACKENDS,
    SCALE_ENV,
    TRANSACTIONAL_BACKENDS,
    BackendCase,
    Recorder,
    Sizes,
    make_case,
)


@pytest.fixture(scope="session")
def sizes(request: pytest.FixtureRequest) -> Sizes:
    """How big to make each run."""
    raw = os.environ.get(SCALE_ENV, "1")
    try:
        factor = float(raw)
    except ValueError:
        raise pytest.UsageError(f"{SCALE_ENV} must be a number, got {raw!r}") from None
    return Sizes(slow=bool(request.config.getoption("--run-slow")), factor=factor)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Recorder:
    """Where a test records the figures the reliability report shows."""
    return Recorder(request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(FIGURES_ENV)
    if not path:
        return
    data = {
        "run_slow": bool(session.config.getoption("--run-slow")),
        "scale": os.environ.get(SCALE_ENV, "1"),
        "exitstatus": int(exitstatus),
        "figures": [asdict(f) for f in FIGURES],
    }
    Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")


@pytest.fixture(params=BACKENDS)
def backend_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendCase]:
    """A fresh state on each backend."""
    yield from make_case(request.param, request, tmp_path)


@pytest.fixture(params=PROCESS_BACKENDS)
def process_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendCase]:
    """A fresh state on each backend that several processes can share."""
    yield from make_case(request.param, request, tmp_path)


@pytest.fixture(params=TRANSACTIONAL_BACKENDS)
def transactional_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendCase]:
    """A fresh state on each backend with transactions."""
    yield from make_case(request.param, request, tmp_path)


@pytest.fixture(params=["postgresql", "mariadb"])
def server_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendCase]:
    """A fresh state on each database server."""
    yield from make_case(request.param, request, tmp_path)
