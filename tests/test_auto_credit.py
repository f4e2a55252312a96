"""Automatic credit (issue 4): the rule's numbers, the blacklist skip, and four-eyes on the result."""

from __future__ import annotations

import numpy as np

from services import auth, auto_credit, changes
from services.margin import MarginEngine
from services.store import Store
from tests.test_margin_formulas import _acct, make_book


def test_deposit_proposes_share_of_lendable_collateral_capped_and_needs_approval(sqlite_url: str) -> None:
    st = Store(sqlite_url)
    st.migrate()
    # M1: 1000 A.HK @ 100, IM 0.5 → lendable 50,000 → × 0.5 = 25,000 → 20,000 in 10,000 steps (limit 10,000);
    # M2: 10,000 shares → lendable 500,000 → 250,000, capped at 200,000; M3 blacklisted;
    # M4 already has a larger limit; C1 is a cash account
    st.save_book(make_book(
        [_acct("M1", 0, limit=10_000), _acct("M2", 0, limit=0), _acct("M3", 0, limit=0),
         _acct("M4", 0, limit=900_000), _acct("C1", 0, type_="cash", limit=0)],
        [("M1", "A.HK", 1000), ("M2", "A.HK", 10_000), ("M3", "A.HK", 1000), ("M4", "A.HK", 1000),
         ("C1", "A.HK", 1000)]))
    auth.ensure_permissions(st)
    e = MarginEngine(st.load_book())
    props, skipped = auto_credit.evaluate(e, np.arange(5), share=0.5, cap=200_000, blacklisted={"M3"})
    assert [(p.code, p.current, p.proposed) for p in props] == [("M1", 10_000.0, 20_000.0),
                                                                ("M2", 0.0, 200_000.0)]
    assert skipped == ["M3"]
    ids = auto_credit.submit(st, e, props)
    assert len(ids) == 2 and auto_credit.submit(st, e, props) == []  # no duplicate while pending
    req = changes.get(st, ids[0])
    assert (req.maker, req.status, req.after) == ("system", "pending", {"amount": 20_000.0})
    assert st.load_book().financing_limit[0] == 10_000.0  # nothing until a checker approves
    changes.approve(st, auth.User("sam", "S", "supervisor"), ids[0])
    assert st.load_book().financing_limit[0] == 20_000.0


def test_live_deposit_triggers_an_automatic_credit_request(sqlite_url: str) -> None:
    import threading
    import time

    from services.demo_store import seed_demo_store
    from services.feed.simulator import FeedSimulator
    from services.live import LiveMonitor

    st = Store(sqlite_url)
    st.migrate()
    seed_demo_store(st, clients=300, seed=4)
    from sqlalchemy import text

    with st.begin() as conn:  # the rule is opt-in (a four-eyes parameter); switched on for this test
        conn.execute(text("update company_parameters set value = 1 where name = 'auto_credit_enabled'"))
    sim = FeedSimulator(st.load_book(), "tcp://127.0.0.1:0", rate=2000, cash_every=0.05, pos_every=0.05)
    t = threading.Thread(target=sim.run, daemon=True)
    t.start()
    assert sim.ready.wait(10)
    mon = LiveMonitor(st, st.load_book(), feed_address=sim.endpoint)
    mon.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not mon.auto_credit_requests:
            time.sleep(0.05)
        assert mon.auto_credit_requests, "a deposit or transfer into a margin account proposed a limit"
        req = changes.get(st, mon.auto_credit_requests[0])
        assert (req.kind, req.maker, req.status) == ("financing_limit", "system", "pending")
        assert req.after["amount"] > req.before.get("amount", 0.0)
    finally:
        mon.stop()
        sim.stop()
        t.join(5)
