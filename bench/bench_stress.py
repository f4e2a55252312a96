"""stress.one_1m, stress.hundred_1m and lcs.top10_1m (issue 6) on the 50,000-account / 1M-position book.

- stress.one_1m: one scenario (market, level, group and single-stock shocks plus an FX shock).
  Baseline: the naive way — a fresh `MarginEngine` on a copy of the book with shocked prices.
- stress.hundred_1m: 100 scenarios (across-the-board falls of 1%…100%).
- lcs.top10_1m: the LCS test with every per-stock impact in one pass. Baseline: recomputing the whole
  test once per security held (`lcs.naive_impact`), timed on a sample of 5 securities and scaled to
  all of them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from bench.common import median_ms, row

NAMES = ("stress.one_1m", "stress.hundred_1m", "lcs.top10_1m")


def run(selected: list[str]) -> Iterator[dict[str, Any]]:
    from services import lcs, stress
    from services.demo import make_demo_book
    from services.margin import MarginEngine

    book = make_demo_book(50_000, seed=7, positions=1_060_000)
    engine = MarginEngine(book)
    n_pos = book.n_pos
    if "stress.one_1m" in selected:
        group = next(iter(book.stock_groups), None)
        shocks = [("all", -0.1), ("market:HK", -0.2), ("level:1", -0.15), ("security:" + book.sec_codes[0], -0.5)]
        if group:
            shocks.append(("group:" + group, -0.3))
        sc = stress.Scenario("bench", shocks, [("USD", -0.05)] if "USD" in book.currencies else [])
        t = median_ms(lambda: stress.run(engine, sc), repeat=11)

        def naive() -> Any:
            b2 = copy.deepcopy(book)
            b2.price = b2.price * (1 + stress.security_changes(book, sc))
            return MarginEngine(b2)

        base = median_ms(naive, repeat=3, warmup=1)
        yield row("stress.one_1m", t, "ms", base, positions=n_pos, accounts=book.n_acct)
    if "stress.hundred_1m" in selected:
        scs = [stress.Scenario(f"all {i}%", [("all", -i / 100)]) for i in range(1, 101)]
        t0 = time.perf_counter()
        totals = [float(stress.run(engine, s).call_amount.sum()) for s in scs]
        yield row("stress.hundred_1m", (time.perf_counter() - t0) * 1e3, "ms", scenarios=len(scs),
                  call_at_minus_30=round(totals[29], 2))
    if "lcs.top10_1m" in selected:
        lc, rlc = 5e9, 2e9
        t = median_ms(lambda: lcs.run(engine, lc, rlc).top10(), repeat=11)
        res = lcs.run(engine, lc, rlc)
        held = np.flatnonzero(res.held)
        sample = held[:: max(1, held.size // 5)][:5]
        t0 = time.perf_counter()
        for j in sample:
            lcs.naive_impact(engine, lc, rlc, int(j))
        per = (time.perf_counter() - t0) / len(sample)
        yield row("lcs.top10_1m", t, "ms", per * held.size * 1e3, securities_held=int(held.size),
                  naive_sampled=len(sample))
