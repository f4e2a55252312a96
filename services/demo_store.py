"""Seed a store with the demo book, its index membership, holidays and demo settings."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.calendar import shipped_holidays
from services.demo import make_demo_book
from services.store import Store

# (code, name, market, level): the index a security belongs to decides its level (RISK_METHODS §4)
DEMO_INDICES = (
    ("HSI", "Hang Seng Index", "HK", 1),
    ("HSCI", "Hang Seng Composite Index", "HK", 2),
    ("OEX", "S&P 100", "US", 1),
    ("SPX", "S&P 500", "US", 2),
)


def seed_demo_store(store: Store, clients: int = 3000, seed: int = 7, positions: int | None = None
                    ) -> dict[str, Any]:
    book = make_demo_book(clients, seed=seed, positions=positions)
    # the demo market is open round the clock, so prices go stale whenever the feed stops
    book.parameters["market_open_hhmm"] = 0.0
    book.parameters["market_close_hhmm"] = 2400.0
    indices = []
    for k, (code, name, market, level) in enumerate(DEMO_INDICES):
        mkt = book.markets.index(market) if market in book.markets else -1
        members = np.flatnonzero((book.sec_market == mkt) & (book.level <= level))
        indices.append({"id": k + 1, "code": code, "name": name, "market": market, "level": level,
                        "members": members.tolist()})
    store.save_book(book, indices=indices, holidays=shipped_holidays())
    store.set_meta("demo", "1")
    return {"accounts": book.n_acct, "securities": book.n_sec, "positions": book.n_pos}


def ensure_demo_store(store: Store) -> bool:
    """Migrate, and seed the demo book when the store is empty. True when it seeded."""
    store.migrate()
    if store.is_empty():
        seed_demo_store(store)
        return True
    return False
