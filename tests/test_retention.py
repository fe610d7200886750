"""Event retention: what a policy deletes, and the invariants no policy can break."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from assetry import AssetryError, ConfigurationError, Instance, load_settings, plugins
from assetry.backend import EventQuery, NewEvent, StateBackend
from assetry.backends.memory import MemoryBackend
from assetry.errors import PluginError
from assetry.retention import (
    RetentionPolicy,
    format_duration,
    parse_duration,
    prune_events,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NOW = dt.datetime(2024, 6, 30, tzinfo=dt.UTC)


def _sql_backend(tmp_path: Path) -> StateBackend:
    try:
        plugins.backends.load("sql")
    except PluginError as exc:
        pytest.skip(f"the sql backend is not importable yet: {exc}")
    instance = Instance.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    instance.upgrade()
    return instance.backend


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    """A fresh backend that can delete events: memory, and the sql backend on SQLite."""
    b = MemoryBackend() if request.param == "memory" else _sql_backend(tmp_path)
    try:
        yield b
    finally:
        b.close()


def _seed(
    backend: StateBackend, asset: str, partitions: list[str | None], *, days_ago: list[int]
) -> None:
    """Register ``asset`` and append one event per partition entry, aged ``days_ago``."""
    if backend.get_asset(asset) is None:
        backend.register_asset(asset, f"s3://bucket/{asset}")
    backend.append_events(
        [
            NewEvent(
                asset,
                extra_json=f'{{"n":{i}}}',
                partition_key=p,
                timestamp=NOW - dt.timedelta(days=d),
            )
            for i, (p, d) in enumerate(zip(partitions, days_ago, strict=True))
        ]
    )


def _ids(backend: StateBackend, asset: str) -> list[int]:
    return [e.id for e in backend.query_events(EventQuery(asset))]


# -- policies --------------------------------------------------------------------------------------


def test_keep_last_keeps_the_newest_n_of_each_partition(backend: StateBackend) -> None:
    parts: list[str | None] = ["p", "q", "p", "q", "p", "q", "p", None, None]
    _seed(backend, "a", parts, days_ago=[9] * len(parts))
    results = prune_events(backend, RetentionPolicy(keep_last=2), now=NOW)
    # p: 1 3 5 7 -> keep 5 7; q: 2 4 6 -> keep 4 6; unpartitioned: 8 9 -> keep both
    assert _ids(backend, "a") == [4, 5, 6, 7, 8, 9]
    assert [(r.asset, r.examined, r.deleted) for r in results] == [("a", 9, 3)]


def test_older_than_deletes_only_older_events(backend: StateBackend) -> None:
    _seed(backend, "a", [None] * 5, days_ago=[40, 35, 31, 29, 1])
    prune_events(backend, RetentionPolicy(older_than=parse_duration("30d")), now=NOW)
    assert _ids(backend, "a") == [4, 5]


def test_both_rules_delete_only_what_neither_keeps(backend: StateBackend) -> None:
    _seed(backend, "a", [None] * 6, days_ago=[50, 40, 2, 1, 1, 1])
    prune_events(backend, RetentionPolicy(keep_last=2, older_than=dt.timedelta(days=30)), now=NOW)
    # the two newest are kept by keep_last, ids 3..4 by age; 1 and 2 are old and not newest
    assert _ids(backend, "a") == [3, 4, 5, 6]


def test_dry_run_counts_and_deletes_nothing(backend: StateBackend) -> None:
    _seed(backend, "a", [None] * 5, days_ago=[9] * 5)
    results = prune_events(backend, RetentionPolicy(keep_last=1), dry_run=True, now=NOW)
    assert results[0].deleted == 4 and results[0].dry_run
    assert _ids(backend, "a") == [1, 2, 3, 4, 5]


def test_prune_can_be_limited_to_some_assets(backend: StateBackend) -> None:
    _seed(backend, "a", [None] * 3, days_ago=[9] * 3)
    _seed(backend, "b", [None] * 3, days_ago=[9] * 3)
    prune_events(backend, RetentionPolicy(keep_last=1), assets=["b"], now=NOW)
    assert _ids(backend, "a") == [1, 2, 3]
    assert _ids(backend, "b") == [3]


def test_pruning_pages_through_long_logs(backend: StateBackend) -> None:
    _seed(backend, "a", [None, "p"] * 12, days_ago=[9] * 24)
    prune_events(backend, RetentionPolicy(keep_last=3), now=NOW, page_size=5)
    assert _ids(backend, "a") == [19, 20, 21, 22, 23, 24]


# -- invariants ------------------------------------------------------------------------------------


def test_never_deletes_the_newest_event_of_an_asset_or_partition(backend: StateBackend) -> None:
    _seed(backend, "a", ["p", "q", "p", None, "q", "p"], days_ago=[90] * 6)
    prune_events(backend, RetentionPolicy(keep_last=1, older_than=dt.timedelta(seconds=1)), now=NOW)
    # newest of p is 6 (also the asset's newest), of q 5, unpartitioned 4
    assert _ids(backend, "a") == [4, 5, 6]
    assert backend.latest_events(["a"])["a"].id == 6
    assert {k: e.id for k, e in backend.latest_partition_events("a").items()} == {"p": 6, "q": 5}


def test_never_deletes_events_a_consumer_has_not_seen(backend: StateBackend) -> None:
    _seed(backend, "a", [None] * 8, days_ago=[90] * 8)
    backend.set_cursors("slow", {"a": 3})
    backend.set_cursors("fast", {"a": 7})
    unseen_by_slow = backend.query_events(EventQuery("a", after=3))
    results = prune_events(backend, RetentionPolicy(keep_last=1), now=NOW)
    assert backend.query_events(EventQuery("a", after=3)) == unseen_by_slow
    assert _ids(backend, "a") == [4, 5, 6, 7, 8]
    assert results[0].kept_for_consumers == 4  # 4..7: beyond keep_last, but unseen by "slow"


def test_a_cursor_on_another_asset_does_not_hold_this_one(backend: StateBackend) -> None:
    _seed(backend, "a", [None] * 4, days_ago=[90] * 4)
    _seed(backend, "b", [None] * 4, days_ago=[90] * 4)
    backend.set_cursors("reader", {"b": 1})
    prune_events(backend, RetentionPolicy(keep_last=1), now=NOW)
    assert _ids(backend, "a") == [4]
    assert _ids(backend, "b") == [2, 3, 4]  # unseen by "reader"


def test_never_touches_the_asset_store(backend: StateBackend) -> None:
    _seed(backend, "a", [None, "p"] * 3, days_ago=[90] * 6)
    backend.store_set("a", "watermark", '"2024-06-01"')
    backend.store_set("a", "k", "1", "p")
    backend.deactivate_asset("a")  # inactive assets are pruned too; their store stays readable
    before = [
        (e.key, e.value_json, e.version) for p in (None, "p") for e in backend.store_entries("a", p)
    ]
    prune_events(backend, RetentionPolicy(keep_last=1), now=NOW)
    after = [
        (e.key, e.value_json, e.version) for p in (None, "p") for e in backend.store_entries("a", p)
    ]
    assert after == before
    assert _ids(backend, "a") == [5, 6]


def test_ids_are_not_reused_after_pruning(backend: StateBackend) -> None:
    _seed(backend, "a", [None] * 3, days_ago=[90] * 3)
    prune_events(backend, RetentionPolicy(keep_last=1), now=NOW)
    _seed(backend, "a", [None], days_ago=[0])
    assert _ids(backend, "a") == [3, 4]


class _NoDeletion(MemoryBackend):
    capabilities = dataclasses.replace(MemoryBackend.capabilities, event_deletion=False)


def test_backend_without_event_deletion_is_refused_but_can_dry_run() -> None:
    backend = _NoDeletion()
    _seed(backend, "a", [None] * 3, days_ago=[90] * 3)
    with pytest.raises(AssetryError, match="cannot delete events"):
        prune_events(backend, RetentionPolicy(keep_last=1))
    assert prune_events(backend, RetentionPolicy(keep_last=1), dry_run=True)[0].deleted == 2
    assert _ids(backend, "a") == [1, 2, 3]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(
        st.tuples(st.sampled_from([None, "p", "q"]), st.integers(min_value=0, max_value=60)),
        min_size=1,
        max_size=25,
    ),
    keep_last=st.none() | st.integers(min_value=1, max_value=4),
    older_than_days=st.none() | st.integers(min_value=1, max_value=60),
    cursors=st.lists(st.integers(min_value=0, max_value=26), max_size=3),
)
def test_pruning_deletes_exactly_what_no_rule_protects(
    events: list[tuple[str | None, int]],
    keep_last: int | None,
    older_than_days: int | None,
    cursors: list[int],
) -> None:
    if keep_last is None and older_than_days is None:
        keep_last = 1
    backend = MemoryBackend()
    _seed(backend, "a", [p for p, _ in events], days_ago=[d for _, d in events])
    for i, cursor in enumerate(cursors):
        backend.set_cursors(f"consumer-{i}", {"a": cursor})
    before = backend.query_events(EventQuery("a"))
    store_before = backend.store_entries("a")
    policy = RetentionPolicy(
        keep_last=keep_last,
        older_than=dt.timedelta(days=older_than_days) if older_than_days else None,
    )
    prune_events(backend, policy, now=NOW)
    kept = {e.id for e in backend.query_events(EventQuery("a"))}

    protected: set[int] = {before[-1].id}  # the asset's newest
    for group in {e.partition_key for e in before}:
        newest_first = sorted((e for e in before if e.partition_key == group), key=lambda e: -e.id)
        protected.add(newest_first[0].id)  # the newest of each partition
        if keep_last is not None:
            protected.update(e.id for e in newest_first[:keep_last])
    if older_than_days is not None:
        cutoff = NOW - dt.timedelta(days=older_than_days)
        protected.update(e.id for e in before if e.timestamp >= cutoff)
    if cursors:
        protected.update(e.id for e in before if e.id > min(cursors))
    assert kept == protected
    assert backend.store_entries("a") == store_before


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30min", 1800),
        ("12h", 43200),
        ("PT10M", 600),
        ("P1D", 86400),
        ("P2W", 1209600),
        ("P1DT2H30M", 95400),
        ("30d", 2592000),
        ("2w", 1209600),
        ("1d12h", 129600),
    ],
)
def test_parse_duration_accepts_units_and_combinations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "30x", "-1d", "1d 2", "P", "PT", "PT1M2H"])
def test_parse_duration_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["1M", "30m", "1d30m"])
def test_parse_duration_refuses_m_as_minutes_or_months(text: str) -> None:
    with pytest.raises(ValueError, match=r"ambiguous.*min"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["P1M", "P1Y", "P1Y2D"])
def test_parse_duration_refuses_iso_years_and_months(text: str) -> None:
    with pytest.raises(ValueError, match="no fixed length"):
        parse_duration(text)


def test_parse_duration_bounds_huge_values() -> None:
    with pytest.raises(ValueError, match="longest duration"):
        parse_duration("99999999999999999999d")


def test_format_duration_round_trips() -> None:
    for text in ("90s", "30min", "12h", "30d", "2w"):
        assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "needs keep_last"), ({"keep_last": 0}, ">= 1"), ({"keep_last": True}, ">= 1")],
)
def test_policy_rejects_empty_or_invalid_rules(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetentionPolicy(**kwargs)  # type: ignore[arg-type]


def test_retention_is_read_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.assetry]\nretention = {keep_last = 100, older_than = "30d"}\n'
    )
    found = load_settings(cwd=tmp_path, environ={})
    assert found.retention == RetentionPolicy(keep_last=100, older_than=dt.timedelta(days=30))
    assert found.sources["retention"] == str(tmp_path / "pyproject.toml")


def test_retention_from_the_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.assetry]\nretention = {keep_last = 100}\n")
    found = load_settings(cwd=tmp_path, environ={"ASSETRY_RETENTION": '{"older_than": "7d"}'})
    assert found.retention == RetentionPolicy(older_than=dt.timedelta(days=7))
    assert found.sources["retention"] == "environment ASSETRY_RETENTION"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("{keep_last = 0}", "keep_last must be"),
        ('{older_than = "soon"}', "not a duration"),
        ("{keep = 3}", "unknown key"),
        ('"30d"', "must be a table"),
    ],
)
def test_invalid_retention_setting_names_the_file(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.assetry]\nretention = {table}\n")
    with pytest.raises(ConfigurationError, match=message) as info:
        load_settings(cwd=tmp_path, environ={})
    assert "retention" in str(info.value)
