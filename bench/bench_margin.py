"""margin.full_1m and margin.incremental_1k (issue 2), with naive baselines in the same run.

- full_1m: RiskDesk's chunked segment sums vs a straightforward pandas merge + groupby of the
  same formulas over the same 1,000,000 positions / 50,000 accounts.
- incremental_1k: 1,000 changed prices → updated results and the alert diff, vs a full recompute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from bench.common import median_ms, row

NAMES = ("margin.full_1m", "margin.incremental_1k")


def _book() -> Any:
    from services.demo import make_demo_book

    return make_demo_book(50_000, seed=7, positions=1_060_000)  # ~1.0M after de-duplication


def pandas_baseline(book: Any, im_r: np.ndarray, mm_r: np.ndarray) -> Any:
    import pandas as pd

    pos = pd.DataFrame({"acct": book.pos_acct, "sec": book.pos_sec, "qty": book.pos_qty, "im_r": im_r,
                        "mm_r": mm_r})
    sec = pd.DataFrame({"sec": np.arange(book.n_sec), "px": book.price * book.fx[book.sec_currency]})
    m = pos.merge(sec, on="sec")
    m["v"] = m["qty"] * m["px"]
    m["mv"] = m["v"].abs()
    m["long"] = m["v"].clip(lower=0)
    m["short"] = (-m["v"]).clip(lower=0)
    m["im"] = m["mv"] * m["im_r"]
    m["mm"] = m["mv"] * m["mm_r"]
    g = m.groupby("acct")[["long", "short", "im", "mm"]].sum().reindex(range(book.n_acct), fill_value=0.0)
    cash = book.cash @ book.fx
    eq = cash + g["long"].to_numpy() - g["short"].to_numpy()
    im, mm = g["im"].to_numpy(), g["mm"].to_numpy()
    fc = 0.8 * mm
    status = np.select([eq >= im, eq >= mm, eq >= fc], [0, 1, 2], 3)
    return eq, im, mm, status


def run(selected: list[str]) -> Iterator[dict[str, Any]]:
    from services.margin import MarginEngine

    book = _book()
    engine = MarginEngine(book)
    n = book.n_pos
    if "margin.full_1m" in selected:
        value = median_ms(engine.recompute_all)
        base = median_ms(lambda: pandas_baseline(book, engine.im_ratio, engine.mm_ratio), repeat=5, warmup=1)
        eq, im, _, status = pandas_baseline(book, engine.im_ratio, engine.mm_ratio)
        assert np.allclose(eq, engine.equity) and (status == engine.status).all()
        yield row("margin.full_1m", value, "ms", base, positions=n, accounts=book.n_acct,
                  baseline_kind="pandas merge+groupby")
    if "margin.incremental_1k" in selected:
        rng = np.random.default_rng(1)
        batches = [(rng.choice(book.n_sec, 1000, replace=False), None) for _ in range(40)]
        touched: list[int] = []

        def one(i: list[int] = [0]) -> None:  # noqa: B006 - a counter across calls
            secs, _ = batches[i[0] % len(batches)]
            i[0] += 1
            px = book.price[secs] * (1 + rng.normal(0, 0.002, secs.shape[0]))
            d = engine.apply_prices(secs, px)
            touched.append(int(d.accounts.shape[0]))

        value = median_ms(one, repeat=31)
        base = median_ms(engine.recompute_all)
        yield row("margin.incremental_1k", value, "ms", base, baseline_kind="full recompute",
                  accounts_touched_median=int(np.median(touched)), securities=book.n_sec)
