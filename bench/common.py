"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def median_ms(fn: Callable[[], Any], repeat: int = 21, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def row(name: str, value: float, unit: str, baseline: float | None = None, higher_is_better: bool = False,
        **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "value": round(value, 3), "unit": unit}
    if baseline is not None:
        out["baseline"] = round(baseline, 3)
        out["ratio"] = round((value / baseline) if higher_is_better else (baseline / value), 2)
    out.update(extra)
    return out
