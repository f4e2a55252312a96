"""`python main.py --self-test` (and the installed program's): can this machine run RiskDesk?

Checks, each reported on one line: the libraries import (Qt offscreen included), a scratch SQLite
store migrates to the newest schema and computes margin, a keyring backend answers (a missing one is
reported, not fatal: the password is then asked each session), and a ZeroMQ PUB/SUB pair on
127.0.0.1 delivers a feed message. Exit code 0 only when every required check passes.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REQUIRED_MODULES = ("numpy", "pandas", "sqlalchemy", "alembic", "psycopg", "openpyxl", "xlsxwriter", "zmq",
                    "pyqtgraph", "keyring", "argon2", "PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets")


def _imports() -> str:
    missing = []
    for m in REQUIRED_MODULES:
        try:
            importlib.import_module(m)
        except Exception as e:  # report every missing one
            missing.append(f"{m} ({type(e).__name__}: {e})")
    if missing:
        raise RuntimeError("cannot import " + "; ".join(missing))
    return f"{len(REQUIRED_MODULES)} modules"


def _window() -> str:
    """The main window with every dock (the catalogue's are imported by name: a frozen build must carry them)."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    w = MainWindow(restore=False)
    n = len(w.docks)
    w.shutdown()
    w.deleteLater()
    app.processEvents()
    return f"{n} docks"


def _store() -> str:
    from services.demo_store import seed_demo_store
    from services.margin import MarginEngine
    from services.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        st = Store(f"sqlite:///{Path(tmp) / 'self-test.db'}")
        st.migrate()
        rev = st.schema_revision()
        seed_demo_store(st, clients=50, seed=1)
        e = MarginEngine(st.load_book())
        st.dispose()
    return f"schema {rev}, margin for {e.book.n_acct} accounts"


def _keyring() -> str:
    import keyring

    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if "fail" in name.lower() or "null" in name.lower():
        return f"no usable backend ({name}): database passwords are asked once per session"
    return name


def _feed() -> str:
    import zmq

    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    try:
        for s in (pub, sub):
            s.setsockopt(zmq.LINGER, 0)
        pub.bind("tcp://127.0.0.1:*")
        addr = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        sub.setsockopt(zmq.SUBSCRIBE, b"hb")
        sub.connect(addr)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pub.send_multipart([b"hb", b'{"v": 1}'])
            if sub.poll(100):
                sub.recv_multipart()
                return f"PUB/SUB on {addr}"
        raise RuntimeError(f"no message through {addr} in 5 s")
    finally:
        pub.close(0)
        sub.close(0)
        ctx.term()


CHECKS: tuple[tuple[str, Callable[[], str], bool], ...] = (
    ("imports", _imports, True), ("store", _store, True), ("keyring", _keyring, False), ("feed", _feed, True),
    ("window", _window, True))


def run(out: Any = None) -> int:
    out = out or sys.stdout
    ok = True
    for name, fn, required in CHECKS:
        t = time.perf_counter()
        try:
            detail = fn()
            status = "ok"
        except Exception as e:
            detail = f"{type(e).__name__}: {e}"
            status = "fail" if required else "warn"
            ok = ok and not required
        out.write(json.dumps({"check": name, "status": status, "detail": detail,
                              "ms": round((time.perf_counter() - t) * 1e3, 1)}) + "\n")
    out.write(json.dumps({"self_test": "passed" if ok else "failed"}) + "\n")
    return 0 if ok else 1
