"""The live path end to end over a real tcp socket: simulator → subscriber → engine → calls → store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from sqlalchemy import func, select

from models import schema as S
from services.demo_store import seed_demo_store
from services.feed.simulator import FeedSimulator
from services.live import LiveMonitor
from services.margin import MarginEngine
from services.store import Store


def wait_until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    st = Store(sqlite_url)
    st.migrate()
    seed_demo_store(st, clients=300, seed=5)
    yield st
    st.dispose()


def start_sim(sim: FeedSimulator) -> threading.Thread:
    t = threading.Thread(target=sim.run, daemon=True)
    t.start()
    assert sim.ready.wait(10)
    return t


def test_live_prices_update_results_and_calls(store: Store) -> None:
    sim = FeedSimulator(store.load_book(), "tcp://127.0.0.1:0", rate=3000, seed=2, jump_prob=0.02,
                        pos_every=0.3, cash_every=0.3)
    t = start_sim(sim)
    mon = LiveMonitor(store, store.load_book(), feed_address=sim.endpoint)
    mon.start()
    try:
        before = mon.engine.equity.copy()
        wait_until(lambda: mon.stats.snapshot()["updates"] > 3000)
        assert mon.feed_state() == "live"
        reset, changed = mon.take_changes()
        assert changed.size > 0
        with mon.lock:
            assert not np.allclose(before, mon.engine.equity)
            live = {k: getattr(mon.engine, k).copy() for k in ("equity", "im", "mm", "status")}
            prices = mon.engine.book.price.copy()
            book = mon.engine.book.copy()
            intraday = mon.intraday_session
        # the live incremental results equal a fresh full computation at the same prices (and in the
        # same trading session: during an HK session intraday-financing accounts use intraday ratios)
        ref = MarginEngine(book, intraday_session=intraday)
        np.testing.assert_allclose(live["equity"], ref.equity, rtol=1e-9, atol=1e-4)
        np.testing.assert_allclose(live["im"], ref.im, rtol=1e-9, atol=1e-4)
        assert (live["status"] == ref.status).all()
        assert (prices > 0).all()
        wait_until(lambda: len(mon.position_alerts) > 0)
        mon.flush_writes()
        with store.begin() as conn:
            n_open = conn.execute(select(func.count()).select_from(S.margin_calls)
                                  .where(S.margin_calls.c.state == "open")).scalar()
            n_snap = conn.execute(select(func.count()).select_from(S.margin_call_snapshots)).scalar()
        assert n_open == int(mon.tracker.open.sum()) > 0
        assert n_open is not None and n_snap is not None and n_snap >= n_open
    finally:
        mon.stop()
        sim.stop()
        t.join(5)
    assert not t.is_alive() and not mon.running


def test_gap_and_epoch_force_a_snapshot_and_malformed_is_counted(store: Store) -> None:
    sim = FeedSimulator(store.load_book(), "tcp://127.0.0.1:0", rate=2000, seed=3)
    t = start_sim(sim)
    mon = LiveMonitor(store, store.load_book(), feed_address=sim.endpoint)
    mon.start()
    try:
        wait_until(lambda: mon.stats.snapshot()["resyncs"] >= 1)  # initial snapshot
        sim.inject_gap()
        wait_until(lambda: mon.stats.snapshot()["gaps"] >= 1)
        sim.new_epoch()
        wait_until(lambda: mon.stats.snapshot()["resyncs"] >= 3)
        for kind in ("bad_json", "nan_price", "unknown_code"):
            sim.send_malformed(kind)
        wait_until(lambda: mon.stats.snapshot()["dropped"] >= 3)
        reasons = " | ".join(r for _, r in mon.stats.snapshot()["drop_reasons"])
        assert "NOPE" in reasons or "unknown" in reasons
        n = mon.stats.snapshot()["updates"]
        wait_until(lambda: mon.stats.snapshot()["updates"] > n + 500)  # still running after garbage
    finally:
        mon.stop()
        sim.stop()
        t.join(5)


def test_pause_marks_feed_and_prices_stale(store: Store) -> None:
    sim = FeedSimulator(store.load_book(), "tcp://127.0.0.1:0", rate=2000, seed=4)
    t = start_sim(sim)
    mon = LiveMonitor(store, store.load_book(), feed_address=sim.endpoint)
    mon.stale_after = 0.5
    mon._subscriber = None
    from services.feed.subscriber import FeedSubscriber

    assert sim.endpoint is not None
    mon._subscriber = FeedSubscriber(sim.endpoint, mon._on_batch, mon._on_resync, stats=mon.stats,
                                     stale_after=0.5)
    mon._subscriber.start()
    try:
        wait_until(lambda: mon.feed_state() == "live")
        sim.pause(2.0)
        wait_until(lambda: mon.feed_state() == "stale", timeout=5)
        mon.stale_after = 0.5
        assert mon.stale_securities().all()
        assert mon.stale_accounts().any()
        wait_until(lambda: mon.feed_state() == "live", timeout=10)
    finally:
        mon.stop()
        sim.stop()
        t.join(5)


def test_approved_parameter_change_reaches_live_results_within_a_second(store: Store) -> None:
    from services import auth, changes

    auth.ensure_permissions(store)
    rita, sam = auth.User("rita", "Rita", "risk_officer"), auth.User("sam", "Sam", "supervisor")
    mon = LiveMonitor(store, store.load_book())
    mon.start()
    try:
        assert mon.engine.force_call_factor == 0.8
        fc_before = mon.engine.fc.copy()
        rid = changes.submit(store, rita, "company_parameter", {"name": "force_call_factor"}, {"value": 0.5},
                             "stress the force-call level")
        changes.approve(store, sam, rid)
        t0 = time.monotonic()
        wait_until(lambda: mon.engine.force_call_factor == 0.5, timeout=3)
        assert time.monotonic() - t0 < 1.5
        with mon.lock:
            np.testing.assert_allclose(mon.engine.fc, fc_before / 0.8 * 0.5)
    finally:
        mon.stop()
