"""Helpers shared by the benchmarks: timing, and the side-by-side report.

    from _common import Row, measure, report

    ours = measure(lambda: store.get("k"), 10_000)      # best seconds per call
    base = measure(lambda: plain.get("k"), 10_000)
    report([Row("store get", 1 / ours, 1 / base, "ops/s")], title="memory backend")

A row holds our figure beside the raw baseline's, measured in the same run; the ratio is
always ours / baseline, so for a rate (``.../s``) below 1 means slower and for seconds above 1
means slower.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

__all__ = ["Row", "Timer", "interleaved", "measure", "report"]


class Timer:
    """Wall-clock seconds of a ``with`` block (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.seconds = time.perf_counter() - self._start


def measure(fn: Callable[[], object], n: int, *, repeat: int = 3) -> float:
    """Seconds per call of ``fn``: ``n`` calls per run, the best of ``repeat`` runs.

    The best run is the least disturbed one on a shared machine.
    """
    if n < 1 or repeat < 1:
        raise ValueError("measure() needs n >= 1 and repeat >= 1")
    best = float("inf")
    for _ in range(repeat):
        with Timer() as timer:
            for _ in range(n):
                fn()
        best = min(best, timer.seconds)
    return best / n


def interleaved(
    sides: dict[str, Callable[[], object]], n: int, *, blocks: int = 9
) -> dict[str, float]:
    """Seconds per call of each side: ``blocks`` rounds of ``n`` calls per side, the sides
    alternating block by block (their order reversed every other round), the median block.

    Interleaving exposes every side to the same load on a shared machine and the median
    keeps one disturbed block from deciding the figure, so a ratio of two sides is stable
    where best-of-three of back-to-back runs is not.
    """
    if n < 1 or blocks < 1:
        raise ValueError("interleaved() needs n >= 1 and blocks >= 1")
    names = list(sides)
    for name in names:  # warm caches and lazy set-up outside the timing
        sides[name]()
    spent: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(blocks):
        for name in names if round_ % 2 == 0 else reversed(names):
            work = sides[name]
            with Timer() as timer:
                for _ in range(n):
                    work()
            spent[name].append(timer.seconds / n)
    return {name: statistics.median(times) for name, times in spent.items()}


@dataclass(frozen=True)
class Row:
    """One comparison: our figure and the baseline's, in ``unit`` (``ops/s``, ``s``, ...)."""

    operation: str
    ours: float
    baseline: float
    unit: str = "ops/s"
    target: float | None = None  # the least acceptable ratio, when there is one

    @property
    def missed(self) -> bool:
        """Whether the ratio is below its target."""
        return self.target is not None and self.ratio < self.target

    @property
    def ratio(self) -> float:
        """ours / baseline."""
        return self.ours / self.baseline if self.baseline else float("inf")


def _figure(value: float, unit: str) -> str:
    if unit.endswith("/s"):
        return f"{value:,.0f} {unit}"
    return f"{value:.4g} {unit}"


def report(rows: Iterable[Row], *, title: str | None = None) -> str:
    """Print ``rows`` as aligned columns ``operation | assetry | baseline | ratio | target``;
    return the printed text."""
    rows = list(rows)
    table = [("operation", "assetry", "baseline", "ratio", "target")] + [
        (
            r.operation,
            _figure(r.ours, r.unit),
            _figure(r.baseline, r.unit),
            f"{r.ratio:.2f}x",
            "" if r.target is None else f">= {r.target}x {'BELOW' if r.missed else 'ok'}",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    lines = [title] if title else []
    for i, line in enumerate(table):
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        lines.append(" | ".join(cells))
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text, flush=True)
    return text
