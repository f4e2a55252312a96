"""Other workstations' change-request activity, within about a second (issue 3).

PostgreSQL: LISTEN on `riskdesk_changes` (the triggers NOTIFY on every insert and decision) from a
dedicated connection in its own thread; after a lost connection it reconnects and reports a full
reload. SQLite: a cheap poll of the requests' version total once a second.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from services.store import Store

CHANNEL = "riskdesk_changes"


class ChangeListener(threading.Thread):
    """Calls `on_change(payload)` for each notification; payload {"reload": True} after a reconnect."""

    def __init__(self, store: Store, on_change: Callable[[dict[str, Any]], None], poll: float = 0.5) -> None:
        super().__init__(name="change-listener", daemon=True)
        self.store = store
        self.on_change = on_change
        self.poll = poll
        self._halt = threading.Event()
        self.connected = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        if self.store.kind == "postgresql":
            self._listen()
        else:
            self._poll_sqlite()

    def _emit(self, payload: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # a consumer's failure must not end the listener
            self.on_change(payload)

    def _listen(self) -> None:
        import psycopg

        first = True
        while not self._halt.is_set():
            try:
                url = self.store.url.set(drivername="postgresql").render_as_string(hide_password=False)
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    if not first:
                        self._emit({"reload": True})
                    first = False
                    while not self._halt.is_set():
                        for n in conn.notifies(timeout=self.poll, stop_after=100):
                            try:
                                self._emit(json.loads(n.payload))
                            except ValueError:
                                self._emit({"reload": True})
            except Exception:
                self.connected.clear()
                self._halt.wait(1.0)

    def _poll_sqlite(self) -> None:
        last: Any = None
        while not self._halt.is_set():
            try:
                with self.store.begin() as conn:
                    sig = tuple(conn.execute(text(
                        "select count(*), coalesce(sum(version), 0), coalesce(max(id), 0) from change_requests"
                    )).one())
                self.connected.set()
                if last is not None and sig != last:
                    self._emit({"reload": True})
                last = sig
            except Exception:
                self.connected.clear()
            self._halt.wait(max(self.poll, 0.2))


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False
