"""What the LCS test needs from the store beyond the book: how long each security has been suspended."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
from sqlalchemy import text

from models.book import Book
from services.calendar import HK_TZ, TradingCalendar, shipped_holidays
from services.store import Store

LONG_SUSPENSION_DAYS = 3


def long_suspended(store: Store, book: Book, today: date | None = None,
                   calendar: TradingCalendar | None = None) -> np.ndarray:
    """Per security of ``book``: suspended for 3 business days or more (haircut 1.0 in the test).
    A suspended security with no date counts as long-suspended."""
    today = today or datetime.now(UTC).astimezone(HK_TZ).date()
    cal = calendar or TradingCalendar(d for d, _ in shipped_holidays())
    out = np.zeros(book.n_sec, bool)
    with store.begin() as conn:
        rows = conn.execute(text("select code, suspended_since from securities where suspended")).all()
    for code, since in rows:
        j = book.sec_index.get(code)
        if j is None:
            continue
        if since is None:
            out[j] = True
            continue
        if isinstance(since, str):
            since = date.fromisoformat(since[:10])
        out[j] = bool(cal.business_days_between(since, today) >= LONG_SUSPENSION_DAYS)
    return out
