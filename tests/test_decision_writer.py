"""The check service's decision writer: a process of its own stores what the request loop hands over.

Real SQLite files and the real PostgreSQL server; the CLI's service run as a real process over tcp.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from services import auth
from services import pretrade_store as ps
from services.decision_writer import DecisionWriter
from services.pretrade import PreTradeEngine
from services.pretrade_orders import Order
from services.store import Store, StoreError
from tests.test_check_server import _book

ROOT = Path(__file__).resolve().parent.parent
T0 = 1.8e9  # 2027-01-15 08:00 UTC


def _store(url: str) -> Store:
    st = Store(url)
    st.migrate()
    st.save_book(_book())
    return st


def _decisions(st: Store, n: int, qty0: float = 100.0) -> tuple[PreTradeEngine, list[Any]]:
    eng = ps.build_engine(st, T0)
    out = [eng.check(Order("RICH", "tom", "A.HK", "buy", qty0 + i, 100.0, "limit", f"o-{i}"), T0 + i)
           for i in range(n)]
    return eng, out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_writer_process_stores_every_decision_handed_over(backend: str, sqlite_url: str,
                                                             request: pytest.FixtureRequest) -> None:
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("pg_url")
    st = _store(url)
    _, ds = _decisions(st, 250)
    w = DecisionWriter(st, process=True, interval=0.01).start()
    try:
        assert w.process and w._proc is not None and w._proc.pid != os.getpid()
        for d in ds:
            w.put(ps.decision_row(d))
        assert w.flush(20)
        assert w.errors == 0
    finally:
        w.stop()
    rows = ps.decisions(st)
    assert [(r.client_order_id, r.qty, r.decision) for r in rows] == [(f"o-{i}", 100.0 + i, "accept")
                                                                       for i in range(250)]
    assert abs(rows[7].ts.timestamp() - (T0 + 7)) < 1e-3  # epoch seconds stored as the decision's time
    assert rows[0].notional == 10_000.0 and rows[0].reasons == []
    st.dispose()


@pytest.fixture
def on_file(sqlite_url: str) -> Iterator[tuple[Store, list[Any], DecisionWriter]]:
    """A store file with three decisions to hand over, and a started writer process."""
    st = _store(sqlite_url)
    _, ds = _decisions(st, 3)
    w = DecisionWriter(st, process=True, interval=0.01).start()
    yield st, ds, w
    w.stop()
    st.dispose()


def test_a_refused_batch_is_counted_and_the_next_batch_is_stored(on_file) -> None:  # type: ignore[no-untyped-def]
    st, ds, w = on_file
    bad = list(ps.decision_row(ds[0]))
    bad[10] = "maybe"  # not a decision the store knows: the whole batch is refused
    w.put(tuple(bad))
    w.put(ps.decision_row(ds[1]))
    assert w.flush(20)
    assert w.errors == 1
    assert ps.decisions(st) == []  # nothing half-written
    w.put(ps.decision_row(ds[2]))
    assert w.flush(20)
    assert w.errors == 1
    assert [r.client_order_id for r in ps.decisions(st)] == ["o-2"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_batch_written_in_slices_is_one_transaction(backend: str, sqlite_url: str,
                                                      request: pytest.FixtureRequest) -> None:
    """The writer process stores a batch a few rows at a time: every slice or none is kept, and the
    reasons come back as they were answered."""
    st = _store(sqlite_url if backend == "sqlite" else request.getfixturevalue("pg_url"))
    try:
        _, ds = _decisions(st, 12)
        rows = [ps.decision_row(d, [{"rule": "size_vs_normal", "action": "prompt", "threshold": 3.0,
                                     "observed": 3.5 + i, "message": "m"}] if i == 4 else None)
                for i, d in enumerate(ds)]
        bad = list(rows[9])
        bad[10] = "maybe"  # in the fourth slice of three: the first three were already executed
        with pytest.raises(StoreError, match="refused 12 pre-trade decisions"):
            ps.save_decision_rows(st, [*rows[:9], tuple(bad), *rows[10:]], slice_rows=3, pause=0.001)
        assert ps.decisions(st) == []
        ps.save_decision_rows(st, rows, slice_rows=5, pause=0.001)
        got = ps.decisions(st)
        assert [r.client_order_id for r in got] == [f"o-{i}" for i in range(12)]
        assert got[4].reasons == [{"rule": "size_vs_normal", "action": "prompt", "threshold": 3.0, "observed": 7.5,
                                   "message": "m"}]
        assert got[0].reasons == [] and got[0].ts.timestamp() == pytest.approx(T0, abs=1e-6)
    finally:
        st.dispose()


def test_a_writer_process_that_dies_is_replaced(on_file) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    st, ds, w = on_file
    first = w._proc
    os.kill(first.pid, signal.SIGKILL)
    first.join(10)
    w.put(ps.decision_row(ds[0]))  # never reached the dead process: a new one stores it
    assert w.flush(30)
    assert w._proc is not first and w.errors == 0
    second = w._proc
    lock = sqlite3.connect(str(st.url.database), timeout=0)
    lock.execute("begin immediate")  # the writer waits for the store inside its transaction…
    w.put(ps.decision_row(ds[1]))
    deadline = time.monotonic() + 30
    while w._taken < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    os.kill(second.pid, signal.SIGKILL)  # …and dies there: that batch is counted as maybe lost
    while w._proc is second and time.monotonic() < deadline:
        time.sleep(0.02)
    lock.rollback()
    lock.close()
    assert w._proc is not second and w.errors == 1
    w.put(ps.decision_row(ds[2]))
    assert w.flush(30)
    assert [r.client_order_id for r in ps.decisions(st)] == ["o-0", "o-2"]


def test_numpy_numbers_in_a_reason_are_stored_as_numbers(sqlite_url: str) -> None:
    import numpy as np

    st = _store(sqlite_url)
    _, ds = _decisions(st, 1)
    w = DecisionWriter(st).start()
    try:
        w.put(ps.decision_row(ds[0], [{"rule": "buying_power", "action": "reject", "threshold": np.float64(30_000.0),
                                       "observed": np.float64(40_000.5), "message": "m"}]))
        assert w.flush(10) and w.errors == 0
    finally:
        w.stop()
    assert ps.decisions(st)[0].reasons[0]["observed"] == 40_000.5
    st.dispose()


def test_an_in_memory_store_keeps_the_writer_in_a_thread() -> None:
    st = Store("sqlite://")
    assert DecisionWriter(st, process=True).process is False  # another process could not see the database
    st.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_cli_service_stores_decisions_through_its_writer_process(tmp_path: Path) -> None:
    """`main.py check-server` end to end: answers over tcp, decisions stored by its writer process,
    and what was answered before a SIGTERM is stored before it exits."""
    db = tmp_path / "svc.db"
    st = _store(f"sqlite:///{db}")
    auth.ensure_permissions(st)
    st.dispose()
    addr = f"tcp://127.0.0.1:{_free_port()}"
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "check-server", "--db", str(db), "--bind", addr],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 20_000)
    try:
        assert p.stdout is not None
        line = p.stdout.readline().decode()
        assert "answering on" in line, line
        sock.connect(addr)
        for i in range(40):
            sock.send(json.dumps({"op": "check", "order": {
                "account": "RICH", "trader": "tom", "code": "A.HK", "side": "buy", "qty": 100 + i, "price": 100.0,
                "order_type": "limit", "client_order_id": f"cli-{i}"}}).encode())
            assert json.loads(sock.recv())["decision"] == "accept"
        sock.send(b'{"op": "ping"}')
        assert json.loads(sock.recv())["write_errors"] == 0
    finally:
        sock.close(0)
        ctx.term()
        p.terminate()
        out = p.communicate(timeout=30)[0].decode()
    assert p.returncode == 0, out
    st = Store(f"sqlite:///{db}")
    assert [r.client_order_id for r in ps.decisions(st)] == [f"cli-{i}" for i in range(40)]
    st.dispose()


def test_the_cli_names_an_address_it_cannot_serve(tmp_path: Path) -> None:
    db = tmp_path / "svc.db"
    _store(f"sqlite:///{db}").dispose()
    bad = subprocess.run([sys.executable, str(ROOT / "main.py"), "check-server", "--db", str(db),
                          "--bind", "ipc:///tmp/riskdesk.sock"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "answers on tcp://HOST:PORT, not 'ipc'" in bad.stderr
    with socket.socket() as held:  # a port another program listens on
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        taken = subprocess.run([sys.executable, str(ROOT / "main.py"), "check-server", "--db", str(db),
                                "--bind", f"tcp://127.0.0.1:{port}", "--duration", "5"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert taken.returncode != 0 and f"cannot bind tcp://127.0.0.1:{port}" in taken.stderr, taken.stderr
