"""store.load_1m: load a 1,000,000-position book from SQLite, vs pandas.read_sql of the same rows."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from bench.common import row

NAMES = ("store.load_1m",)


def run(selected: list[str]) -> Iterator[dict[str, Any]]:
    import pandas as pd

    from services.demo import make_demo_book
    from services.store import Store

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.db")
        store = Store(f"sqlite:///{path}")
        store.migrate()
        book = make_demo_book(50_000, seed=7, positions=1_060_000)
        t = time.perf_counter()
        store.save_book(book)
        save_s = time.perf_counter() - t
        times = []
        for _ in range(3):
            t = time.perf_counter()
            loaded = store.load_book()
            times.append(time.perf_counter() - t)
        value = sorted(times)[1]
        t = time.perf_counter()
        with store.engine.connect() as conn:
            df = pd.read_sql("select account_id, security_id, qty from positions", conn)
        base = time.perf_counter() - t
        assert len(df) == loaded.n_pos
        store.dispose()
        yield row("store.load_1m", value, "s", base, positions=loaded.n_pos, save_s=round(save_s, 2),
                  baseline_kind="pandas.read_sql of the positions table alone")
