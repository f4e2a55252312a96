"""`run_gui(args)`: the workstation's composition root.

Order matters for the 1.5 s cold start: only Qt, numpy and the dock modules are imported before
the window is shown; the store, SQLAlchemy, ZeroMQ and pyqtgraph load after the first paint (in the
session worker, or when the drill-down builds its chart). ``--screenshot FILE`` grabs the window
after ``--quit-after`` seconds (default 3) and exits 0; ``--quit-after`` alone just quits.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QWidget

from app.dialogs import dialogs
from app.qt_app import apply_style_sheet, create_qapp, exception_relay

log = logging.getLogger(__name__)
DEFAULT_SCREENSHOT_DELAY = 3.0


def run_gui(args: argparse.Namespace) -> int:
    started = time.monotonic()
    # the feed decodes many small lists per second; fewer young-generation collections keep the
    # subscriber ahead of the publisher (measured: +40% decode throughput)
    gc.set_threshold(50_000, 20, 20)
    app = create_qapp(sys.argv[:1], style_sheet=False)  # applied once the window is built
    from app.main_window import MainWindow
    from app.session import FeedChoice, SessionController
    from app.tasks import TaskRunner

    tasks = TaskRunner()
    dlg = dialogs()
    # a screenshot shows the default layout at the default size, whatever the user last arranged
    window = MainWindow(run_task=tasks.run, restore=not args.screenshot)
    apply_style_sheet(app)
    dlg.parent_widget = window
    relay = exception_relay()
    if relay is not None:
        def show_error(summary: str, details: str) -> None:
            dlg.error("Unexpected error", summary, details)

        relay.handler = show_error
        tasks.default_error = lambda e: relay.report(type(e), e, e.__traceback__, "a background task")

    url = args.db  # None: the default local store, resolved in the worker (keeps SQLAlchemy off the start)
    if args.no_feed:
        feed = FeedChoice("none")
    elif args.feed:
        feed = FeedChoice("address", args.feed)
    else:
        feed = FeedChoice("auto")
    controller = SessionController(tasks, dlg, url, feed, user=args.user)
    controller.progress.connect(lambda text: window.show_message(text))
    controller.cancelled.connect(lambda msg: window.show_message(f"Not connected: {msg}"))

    def opened(session: Any) -> None:
        window.set_store_name(session.store.display_name)
        seeded = " (demo book created)" if session.seeded else ""

        def logged_in(user: Any) -> None:
            window.attach(session.monitor, session.store, session.feed_address, session.price_timestamps)
            window.attach_governance(session.store, user, tasks)
            where = "local store" if session.store.kind == "sqlite" else session.store.display_name
            window.setWindowTitle(f"RiskDesk — {session.store.display_name} — {user.display_name} "
                                  f"({user.role_label})" + (" — local store" if session.store.kind == "sqlite"
                                                            else ""))
            window.show_message(f"Opened {session.store.display_name}{seeded} as {user.login}", 8000)
            from widgets.session_lock import IdleLock

            minutes = session.store.parameters().get("session_lock_minutes", 15.0)
            lock = IdleLock(session.store, user, tasks, minutes=minutes, window=window, parent=window)
            lock.start()
            window.idle_lock = lock
            del where
            if getattr(args, "raise_dock", None) in window.docks:
                window.raise_dock(window.docks[args.raise_dock])

        login_session(session, args, tasks, dlg, window, logged_in)

    controller.opened.connect(opened)
    window.set_store_name(_display(url))
    window.show_message(f"Opening {_display(url)}…")
    window.show()
    after_first_paint(window, controller.start)  # the window paints first, then the store opens

    exit_code = [0]
    if args.screenshot or args.quit_after is not None:
        delay = args.quit_after if args.quit_after is not None else DEFAULT_SCREENSHOT_DELAY
        remaining = max(0.0, delay - (time.monotonic() - started))

        def finish() -> None:
            if args.screenshot and not window.grab().save(args.screenshot):
                sys.stderr.write(f"riskdesk: cannot write the screenshot to {args.screenshot}\n")
                exit_code[0] = 1
            window.close()
            app.exit(exit_code[0])

        QTimer.singleShot(int(remaining * 1000), finish)

    def cleanup() -> None:
        window.shutdown()
        controller.shutdown()

    app.aboutToQuit.connect(cleanup)
    rc = app.exec()
    return exit_code[0] or rc


def login_session(session: Any, args: argparse.Namespace, tasks: Any, dlg: Any, window: Any,
                  on_user: Any) -> None:
    """A login comes first: PostgreSQL knows the login already; the local store asks (or takes
    `--user` with RISKDESK_APP_PASSWORD, for scripted starts and screenshots)."""
    from services import auth

    store = session.store

    def failed(e: BaseException) -> None:
        dlg.error("Cannot log in", str(e), "")
        window.show_message(f"Not logged in: {e}")

    if store.kind == "postgresql":
        tasks.run(auth.login_database, store, on_done=on_user, on_error=failed, name="login")
        return
    preset = os.environ.get("RISKDESK_APP_PASSWORD")
    if args.user and preset:
        tasks.run(auth.login_local, store, args.user, preset, on_done=on_user, on_error=failed, name="login")
        return
    from widgets.login_app_dialog import AppLoginDialog

    dialog = AppLoginDialog(store, tasks, login=args.user or "", parent=window)
    if session.demo:
        from PySide6.QtWidgets import QLabel

        hint = QLabel("Demo store — users: rita (risk officer), sam (supervisor), cora (CRO), tom (trader), "
                      "olga (operations), abe (auditor), ada (administrator); password: the login + \"-demo\", "
                      "e.g. sam-demo.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #8b949e;")
        layout = dialog.layout()
        if layout is not None:
            layout.addWidget(hint)
    dialog.logged_in.connect(on_user)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.show()
    window.login_dialog = dialog


class _FirstPaint(QObject):
    """Calls ``fn`` once, right after ``widget`` first paints (or after ``fallback_ms`` regardless)."""

    def __init__(self, widget: QWidget, fn: Any, fallback_ms: int = 500) -> None:
        super().__init__(widget)
        self._fn: Any = fn
        widget.installEventFilter(self)
        QTimer.singleShot(fallback_ms, self._fire)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and self._fn is not None:
            QTimer.singleShot(0, self._fire)  # let this paint finish first
        return False

    def _fire(self) -> None:
        if self._fn is not None and os.environ.get("RISKDESK_REPORT_PAINT"):
            print("painted", flush=True)  # bench/bench_gui.py measures process start → first paint
        fn, self._fn = self._fn, None
        if fn is not None:
            parent = self.parent()
            if parent is not None:
                parent.removeEventFilter(self)
            fn()


def after_first_paint(widget: QWidget, fn: Any) -> None:
    _FirstPaint(widget, fn)


def _display(url: str | None) -> str:
    """A short store name for the title before the store module is loaded (no password shown)."""
    if url is None:
        return "the local store"
    if url.startswith("sqlite:///"):
        return f"local store {url[len('sqlite:///'):]}"
    rest = url.split("://", 1)[-1]
    return rest.split("@", 1)[-1] if "@" in rest else rest
