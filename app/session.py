"""Opening the store and the live feed after the window has painted: the workstation's session.

`open_session` is a pure function for the task runner (no Qt): connect, migrate, seed the demo book
when the store is the default (or a demo) store, start the demo feed simulator, load the book and
build the `LiveMonitor`. `SessionController` drives it from the GUI thread and turns failures into
dialogs — a refused or missing PostgreSQL password asks for a login, anything else offers Retry /
Cancel with the store's own message — so the user never sees a traceback.
"""

from __future__ import annotations

import getpass
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.dialogs import DialogService
from app.feed_process import FeedProcess, FeedProcessError
from app.tasks import Task, TaskRunner

log = logging.getLogger(__name__)


@dataclass
class FeedChoice:
    """Where live prices come from: the demo simulator (``auto``), an address, or none."""

    mode: str = "auto"  # "auto" | "address" | "none"
    address: str | None = None


@dataclass
class Session:
    store: Any
    monitor: Any
    url: str
    demo: bool
    seeded: bool
    price_timestamps: Any = None
    feed: FeedProcess | None = None
    feed_address: str | None = None
    feed_error: str = ""
    password: str | None = None


@dataclass
class _Launched:
    """Feed processes a job started, visible to the GUI thread even if the job is cancelled."""

    processes: list[FeedProcess] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def open_session(url: str | None, password: str | None, lookup_password: bool, feed: FeedChoice,
                 launched: _Launched, task: Task) -> Session:
    """Connect, migrate, seed (demo), start the feed, load the book and build the monitor.

    ``url`` None means the default local store; ``lookup_password`` asks the keyring here, off the
    GUI thread (a keyring backend may take seconds to answer).
    """
    from services.calendar import TradingCalendar, shipped_holidays
    from services.credentials import password_for
    from services.demo_store import ensure_demo_store
    from services.live import LiveMonitor
    from services.store import Store, default_url, normalise_url, price_timestamps

    url = url or default_url()
    if password is None and lookup_password:
        password = password_for(url)
    store = Store(url, password=password)
    task.progress(0.05, f"Connecting to {store.display_name}…")
    store.check()
    task.check()
    task.progress(0.15, f"Bringing {store.display_name} to the newest schema…")
    store.migrate()
    demo = normalise_url(url) == normalise_url(default_url()) or store.meta("demo") == "1"
    seeded = False
    if demo:
        if store.is_empty():
            task.progress(0.25, "Creating the demo book (3,000 accounts; first start only)…")
        seeded = ensure_demo_store(store)
    task.check()
    proc: FeedProcess | None = None
    if feed.mode == "auto" and demo:
        proc = FeedProcess(url, password=password)
        with launched.lock:
            launched.processes.append(proc)
        proc.launch()  # its start-up overlaps the book load below
    task.progress(0.5, "Loading the book…")
    book = store.load_book()
    ts = price_timestamps(store)
    task.check()
    task.progress(0.75, "Calculating margin for every account…")
    monitor = LiveMonitor(store, book, calendar=TradingCalendar(d for d, _ in shipped_holidays()))
    session = Session(store, monitor, url, demo, seeded, ts, password=password)
    if feed.mode == "address":
        session.feed_address = feed.address
    elif proc is not None:
        task.progress(0.9, "Starting the demo feed…")
        try:
            session.feed_address = proc.wait_ready()
            session.feed = proc
        except FeedProcessError as e:
            session.feed_error = str(e)
    monitor.feed_address = session.feed_address
    return session


class SessionController(QObject):
    """Opens the store in a worker and keeps asking (login, retry) until it opens or the user cancels."""

    opened = Signal(object)  # Session
    cancelled = Signal(str)  # the last problem, when the user gave up
    progress = Signal(str)

    def __init__(self, tasks: TaskRunner, dialogs: DialogService, url: str | None, feed: FeedChoice,
                 user: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tasks = tasks
        self.dialogs = dialogs
        self.url = url
        self.feed = feed
        self.user = user
        self.session: Session | None = None
        self.attempts = 0
        self._typed_password = False
        self._password: str | None = None
        self._launched = _Launched()
        self._task: Task | None = None

    def start(self) -> None:
        """First attempt: the password (if any) is looked up in the worker."""
        if self.user and self.url:
            self.url = _with_user(self.url, self.user)
        self._attempt(None, lookup=True)

    def _attempt(self, password: str | None, lookup: bool = False) -> None:
        self.attempts += 1
        self._password = password
        self._task = self.tasks.run(open_session, self.url, password, lookup, self.feed, self._launched,
                                    on_done=self._done, on_error=self._failed,
                                    on_progress=lambda _f, text: self.progress.emit(text), name="open store")

    def _done(self, session: Session) -> None:
        self._task = None
        self.session = session
        self.url = session.url
        if self._typed_password and session.password:
            from services.credentials import remember

            where = remember(self.url, session.password)
            self.progress.emit("Password kept in the operating system keyring." if where == "keyring"
                               else "Password kept in memory for this session only.")
        if session.feed_error:
            self.dialogs.error("Live feed not started", session.feed_error + "\n\nThe workstation runs "
                               "without live prices; margin figures are those of the stored prices.")
        self.opened.emit(session)
        if session.monitor is not None:
            session.monitor.start()

    def _failed(self, exc: BaseException) -> None:
        self._task = None
        self._stop_launched()
        from services.store import StoreError, default_url, normalise_url

        self.url = self.url or default_url()
        message = str(exc) if isinstance(exc, StoreError) else f"Could not open the store: {type(exc).__name__}: {exc}"
        if not isinstance(exc, StoreError):
            log.error("opening %s failed", self.url, exc_info=exc)
        postgres = normalise_url(self.url).startswith("postgresql")
        if postgres and "password" in message.lower():
            from sqlalchemy.engine import make_url

            from services.credentials import forget, keyring_usable

            if self._password or self.attempts == 1:
                forget(self.url)  # a remembered password that no longer works
            u = make_url(normalise_url(self.url))
            target = f"{u.host or 'localhost'}/{u.database}"
            self.dialogs.login(target, u.username or self.user or getpass.getuser(), keyring_usable(),
                               on_answer=lambda ans: self._login_answer(ans, message),
                               message=message if self._password else "")
            return
        self.dialogs.retry_cancel("Cannot open the store", message,
                                  on_answer=lambda retry: self._attempt(self._password) if retry
                                  else self._give_up(message))

    def _login_answer(self, answer: tuple[str, str] | None, message: str) -> None:
        if answer is None:
            self._give_up(message)
            return
        user, password = answer
        if user and self.url:
            self.url = _with_user(self.url, user)
        self._typed_password = True
        self._attempt(password)

    def _give_up(self, message: str) -> None:
        self.cancelled.emit(message)

    def _stop_launched(self) -> None:
        with self._launched.lock:
            procs, self._launched.processes = self._launched.processes, []
        for p in procs:
            if self.session is None or p is not self.session.feed:
                p.stop()

    def shutdown(self) -> None:
        """Stop the monitor, the feed simulator and any half-opened attempt (application exit)."""
        if self._task is not None:
            self._task.cancel()
        s = self.session
        if s is not None and s.monitor is not None:
            s.monitor.stop()
        self.tasks.shutdown(timeout=3.0)
        with self._launched.lock:
            procs, self._launched.processes = self._launched.processes, []
        for p in procs:
            p.stop()
        if s is not None and s.store is not None:
            s.store.dispose()


def _with_user(url: str, user: str) -> str:
    from sqlalchemy.engine import make_url

    from services.store import normalise_url

    u = make_url(normalise_url(url))
    if u.get_backend_name() == "sqlite":
        return url
    return u.set(username=user).render_as_string(hide_password=False)
