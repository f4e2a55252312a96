"""Killing the process mid-recalculation leaves the store consistent (issue 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from services.demo_store import seed_demo_store
from services.store import Store

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import sys, threading, time
from services.store import Store
from services.feed.simulator import FeedSimulator
from services.live import LiveMonitor
store = Store(sys.argv[1])
sim = FeedSimulator(store.load_book(), "tcp://127.0.0.1:0", rate=20000, jump_prob=0.05, pos_every=0.05,
                    cash_every=0.05)
threading.Thread(target=sim.run, daemon=True).start()
sim.ready.wait(10)
mon = LiveMonitor(store, store.load_book(), feed_address=sim.endpoint)
mon.start()
print("running", flush=True)
time.sleep(60)
"""


def test_kill_during_live_recalculation_leaves_store_consistent(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    store.migrate()
    seed_demo_store(store, clients=400, seed=2)
    p = subprocess.Popen([sys.executable, "-c", WORKER, sqlite_url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "running"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with store.begin() as conn:
                if conn.execute(text("select count(*) from margin_call_events")).scalar_one() > 20:
                    break
            time.sleep(0.1)
        time.sleep(0.3)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    with store.begin() as conn:
        assert conn.execute(text("pragma integrity_check")).scalar() == "ok"
        # every call has its opening event and trigger snapshot: events were written with their call
        orphans = conn.execute(text(
            "select count(*) from margin_calls c where not exists (select 1 from margin_call_events e "
            "where e.call_id = c.id and e.kind = 'open') or not exists (select 1 from margin_call_snapshots s "
            "where s.call_id = c.id and s.kind = 'trigger')")).scalar()
        assert orphans == 0
        dup_open = conn.execute(text("select count(*) from (select account_id from margin_calls where state = "
                                     "'open' group by account_id having count(*) > 1)")).scalar()
        assert dup_open == 0
        assert conn.execute(text("select count(*) from margin_calls")).scalar_one() > 0
    # the store opens again and the book loads
    assert Store(sqlite_url).load_book().n_acct == 400
