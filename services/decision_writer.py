"""Where the order-check service's decisions are stored, off its request loop.

The request loop hands each decision over as its row (`put`: `pretrade_store.decision_row`, its
reasons already JSON text). What arrived is sent on every ``interval`` seconds as one batch (`pump`):

- **process mode** (the CLI's service): the batch goes down a pipe (pickled: one C call for the
  batch) to a writer *process* that stores it in one transaction (`pretrade_store.save_decision_rows`)
  and acknowledges it. The service's own interpreter never runs the storing code. Measured at 5,000
  requests/s, storing a batch in a thread of the service held the interpreter lock for 2–5 ms every
  20 ms, the whole of the service's latency tail (the SQLAlchemy and row-building work holds it; so
  does the sqlite3 module around each step). A request loop that pumps the writer itself between
  requests (``start(pumped=True)``, the check service) leaves no thread to take the interpreter from
  it; otherwise a forwarding thread pumps.
- **thread mode** (tests, in-memory stores): the forwarding thread stores the batch itself.

A batch the store refuses is logged and counted in ``errors`` (the service reports it in ``ping``);
`flush` waits until everything handed over is stored or refused. If the writer process dies, the
batches it had not acknowledged are counted as an error and a new process takes over.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import pickle
import select
import signal
import threading
import time
from typing import Any

from services import pretrade_store as ps
from services.store import Store

log = logging.getLogger(__name__)
_STOP = b""  # tells the writer process to finish
# The writer process stores a batch SLICE_ROWS rows at a time with PAUSE between (one transaction):
# measured at 5,000 requests/s, a 20 ms batch written in one go held a core for 1–2 ms and cost the
# service's answers ~0.8 ms of p99 (the same service storing nothing: 1.7 ms, storing in one go: 3.1,
# in slices of 5: 2.3, in the same minutes). Over 13 interleaved runs, pauses of 0.6 ms gave a p99
# median of 1.86 ms against 2.03 with 0.3 ms; slices of 10 (2.97), no pauses (3.4) or a 0.1 ms
# scheduler slice for the writer (2.9) were worse. 5 rows per ~0.7 ms keeps up with 7,000 rows/s;
# a backlog (BACKLOG rows or more, a busier service) is written without pauses.
SLICE_ROWS = 5
PAUSE = 0.0006
BACKLOG = 1000


def _writer_process(url: str, conn: Any, nice: int) -> None:
    """The writer process: store each batch received, answer (rows, error or None)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops the service, which stops this
    if nice and hasattr(os, "nice"):
        os.nice(nice)  # storing is throughput work: the request loop goes first on a busy machine
    store = Store(url)
    try:
        conn.send((0, None))  # ready
        while True:
            try:
                batches = [conn.recv_bytes()]
                while batches[-1] != _STOP and len(batches) < 64 and conn.poll(0):
                    batches.append(conn.recv_bytes())  # a backlog: one transaction for all of it
            except EOFError:  # the service is gone
                return
            stop = batches[-1] == _STOP
            rows = [r for b in batches if b != _STOP for r in pickle.loads(b)]
            if rows:
                try:
                    ps.save_decision_rows(store, rows, SLICE_ROWS, PAUSE if len(rows) < BACKLOG else 0.0)
                    conn.send((len(rows), None))
                except Exception as e:  # refused: reported to the service, which logs and counts it
                    conn.send((len(rows), str(e) or type(e).__name__))
            if stop:
                return
    finally:
        store.dispose()


def _readable(conn: Any) -> bool:
    """Anything to read, without blocking: one select call (a pipe on Windows is no socket: its poll)."""
    if os.name == "nt":
        return bool(conn.poll(0))
    return bool(select.select((conn,), (), (), 0)[0])


class DecisionWriter:
    """Stores the decisions the request loop `put`s, in batches, off the loop's interpreter if asked."""

    def __init__(self, store: Store, process: bool = False, interval: float = 0.02, nice: int = 19) -> None:
        if process and store.kind == "sqlite" and store.url.database in (None, "", ":memory:"):
            process = False  # another process cannot see an in-memory database
        self.store = store
        self.process = process
        self.interval = interval
        self.nice = nice
        self.errors = 0
        self._rows: collections.deque[tuple[Any, ...]] = collections.deque()
        self.pumped = False  # the owner calls `pump` (set by `start`)
        self._sent_at = 0.0  # when `pump` last sent a batch
        self._checked = 0.0  # when it last looked at the writer process
        self._taken = 0  # rows taken from the queue (counted before they leave it)
        self._done = 0  # rows stored or refused
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: Any = None
        self._conn: Any = None

    # ---------------------------------------------------------------- the request loop's side
    def put(self, row: tuple[Any, ...]) -> None:
        """Queue one decision row (`pretrade_store.decision_row`); never blocks."""
        self._rows.append(row)

    def pump(self, now: float) -> None:
        """Send what was put once ``interval`` has passed since the last batch, and take the writer's
        acknowledgements (the owner of a pumped writer calls this between requests; ``now``: monotonic)."""
        if self._rows and now - self._sent_at >= self.interval:
            self._sent_at = now
            self._send_batch()
        conn = self._conn
        if conn is not None:
            if _readable(conn):
                self._read_acks(block=False)
            if self._taken > self._done and now - self._checked > 1.0:
                self._checked = now
                if not self._proc.is_alive():
                    self._respawn()

    # ---------------------------------------------------------------- life cycle
    def start(self, pumped: bool = False) -> DecisionWriter:
        """Start the writer process (process mode); ``pumped``: the caller will call `pump` often
        enough (else a forwarding thread does every ``interval``)."""
        self.pumped = pumped and self.process
        if self.process:
            self._spawn()
        if not self.pumped:
            self._thread = threading.Thread(target=self._forward, name="decision-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Store what is queued, then stop (the writer process too). A pumped writer is stopped by its
        owner's thread."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._finish()
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.terminate()
            self._conn.close()
            self._proc = None

    def pending(self) -> int:
        return len(self._rows) + self._taken - self._done

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row put so far is stored or refused."""
        end = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > end:
                return False
            time.sleep(0.005)
        return True

    # ---------------------------------------------------------------- the forwarding thread
    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding ZeroMQ and threads
        self._conn, child = ctx.Pipe()
        url = self.store.url.render_as_string(hide_password=False)  # through the pipe, never argv
        self._proc = ctx.Process(target=_writer_process, args=(url, child, self.nice),
                                 name="riskdesk-decision-writer", daemon=True)
        self._proc.start()
        child.close()
        # ready before the service says it is answering: starting up takes a core for a second
        if not self._conn.poll(60) or self._conn.recv() != (0, None):
            raise RuntimeError("the decision writer process did not start")

    def _forward(self) -> None:
        # every wake takes the interpreter from the request loop: plain sleep, one select for the
        # acknowledgements and a look at the process once a second keep each wake short
        while not self._halt.is_set():
            time.sleep(self.interval)
            self.pump(time.monotonic())
        self._finish()

    def _finish(self) -> None:
        """Send what is left, tell the writer process to finish, and wait for its acknowledgements."""
        while self._rows:
            self._send_batch()
        if self._conn is not None:
            try:
                self._conn.send_bytes(_STOP)
                while self.pending() and self._read_acks(block=True):
                    pass
            except (OSError, EOFError):
                pass

    def _send_batch(self) -> None:
        n = len(self._rows)
        self._taken += n  # before they leave the queue: `pending` never reads low
        batch = [self._rows.popleft() for _ in range(n)]
        if self._conn is None:
            try:
                ps.save_decision_rows(self.store, batch)
            except Exception:
                self.errors += 1
                log.exception("storing %d pre-trade decisions failed", len(batch))
            self._done += len(batch)
            return
        payload = pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
        try:
            self._conn.send_bytes(payload)
        except OSError:  # the writer process is gone: this batch never reached it, a new one takes it
            self._respawn(in_hand=len(batch))
            self._conn.send_bytes(payload)

    def _respawn(self, in_hand: int = 0) -> None:
        """The writer process is gone: what it was sent but had not acknowledged may not be stored
        (counted in ``errors``, logged); a new process takes what follows."""
        lost = self._taken - self._done - in_hand
        if lost:
            self.errors += 1
            log.error("the decision writer process stopped; %d pre-trade decisions may not be stored", lost)
        else:
            log.warning("the decision writer process stopped; a new one takes over")
        self._done += lost
        self._conn.close()
        self._spawn()

    def _read_acks(self, block: bool) -> bool:
        """Take the writer's answers; False when it has gone."""
        try:
            while block or self._conn.poll(0):
                if block and not self._conn.poll(5.0):
                    return False
                rows, error = self._conn.recv()
                self._done += rows
                if error is not None:
                    self.errors += 1
                    log.error("storing %d pre-trade decisions failed: %s", rows, error)
                block = False
        except (OSError, EOFError):
            return False
        return True
