"""The workstation GUI with real widgets (offscreen), a real SQLite store, a real ZeroMQ feed.

No sleeps: everything waits on a condition (`qtbot.waitUntil`) or a signal. Every thread and process
a test starts is stopped by its fixture, and `_no_leftover_threads` fails a test that leaks one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QTableView

from app.dialogs import DialogService
from app.dock_catalog import CATALOGUE, workspace_docks
from app.feed_process import FeedProcess
from app.main_window import WINDOW_STATE_VERSION, MainWindow, make_settings
from app.qt_app import ExceptionRelay, create_qapp
from app.session import FeedChoice, SessionController
from app.tasks import TaskRunner
from widgets.alerts_dock import AlertsDock
from widgets.array_model import ArrayTableModel, Column, number_column

ROOT = Path(__file__).resolve().parent.parent
DOCK_NAMES = {"margin_alerts", "client_drilldown", "margin_table", "feed", "approvals", "risk_parameters",
              "audit_trail", "credit", "margin_requirements", "short_sell", "lists", "client_margin", "haircuts",
              "stress",
              "trading_limits", "pretrade", "limits", "lcs", "indices"}


@pytest.fixture(scope="session", autouse=True)
def _qapp_styled() -> Iterator[None]:
    """The app's own factory (style, palette); its process-wide settings (exception hooks, GIL
    switch interval) are undone afterwards so later test modules run as they would alone."""
    hooks = sys.excepthook, threading.excepthook
    interval = sys.getswitchinterval()
    create_qapp()
    yield
    sys.excepthook, threading.excepthook = hooks
    sys.setswitchinterval(interval)


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield

    def leftovers() -> list[str]:
        return [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()
                and not isinstance(t, threading._DummyThread)]  # QThreadPool threads seen by Python

    for t in threading.enumerate():
        if t.ident not in before and not isinstance(t, threading._DummyThread):
            t.join(5)
    assert leftovers() == []


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    return tmp_path / "layout.ini"


@pytest.fixture
def runner(qtbot: Any) -> Iterator[TaskRunner]:
    r = TaskRunner()
    yield r
    assert r.shutdown(5.0)


# ---------------------------------------------------------------------- main window and layout
def test_main_window_docks_menu_and_reset(qtbot: Any, settings_file: Path, runner: TaskRunner) -> None:
    w = MainWindow(settings=make_settings(settings_file), run_task=runner.run)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    catalogue = {spec.object_name for spec in CATALOGUE}
    # catalogue docks are built when first shown (eager ones at once): opening the window does not wait
    assert {n for n in w.catalogue} <= {s.object_name for s in CATALOGUE if s.eager} | {
        n for n, d in w.docks.items() if n in catalogue and d.isVisible()}
    assert "incidents" not in w.catalogue or w.docks["incidents"].isVisible()
    w.open_dock("incidents")
    assert w.docks["incidents"].widget() is w.catalogue["incidents"]
    assert set(w.docks) == DOCK_NAMES | catalogue
    assert {d.objectName() for d in w.docks.values()} == DOCK_NAMES | catalogue
    toggles = {a.text(): a for a in w.view_menu.actions() if a.isCheckable()}
    assert set(toggles) - {spec.title for spec in CATALOGUE} == {"Margin alerts", "Client drill-down", "Margin table", "Feed", "Approvals",
                            "Risk parameters", "Audit trail", "Credit", "Margin requirements", "Short-sell status", "Lists and groups", "Client margin", "Haircuts",
                            "Stress testing",
                            "Trading limits", "Pre-trade", "Limits", "LCS test", "Indices and levels"}
    toggles["Feed"].trigger()
    assert w.docks["feed"].isHidden()
    toggles["Feed"].trigger()
    assert not w.docks["feed"].isHidden()
    w.docks["margin_table"].close()
    w.docks["client_drilldown"].setFloating(True)
    w.reset_action.trigger()
    assert not w.docks["margin_table"].isHidden()
    assert not w.docks["client_drilldown"].isFloating()
    assert w.dockWidgetArea(w.docks["client_drilldown"]) == Qt.DockWidgetArea.RightDockWidgetArea
    assert w.docks["feed"] in w.tabifiedDockWidgets(w.docks["margin_table"])
    # a workspace shows its set tabbed below the alerts and hides the rest of the bottom docks
    w.workspace_actions["Stress and LCS"].trigger()
    shown = {n for n, d in w.docks.items() if not d.isHidden()}
    assert shown == {"margin_alerts", "client_drilldown", *workspace_docks("Stress and LCS")}
    assert w.docks["lcs"] in w.tabifiedDockWidgets(w.docks["stress"])
    w.workspace_actions["Margin desk"].trigger()
    assert not w.docks["risk_overview"].isHidden() and w.docks["stress"].isHidden()


def test_a_dock_outside_the_workspace_joins_the_bottom_tabs(qtbot: Any, settings_file: Path) -> None:
    # brought up by the View menu, its shortcut or --raise: tabbed with what shows below the alerts,
    # not split beside it (that widened the window to fit both and drew one panel over the drill-down)
    w = MainWindow(settings=make_settings(settings_file))
    qtbot.addWidget(w)
    w.resize(1700, 950)
    w.show()
    qtbot.waitExposed(w)
    qtbot.wait(50)
    width = w.width()
    assert w.docks["approvals"].isHidden() and not w.docks["risk_overview"].isHidden()  # the margin desk's set
    w.raise_dock(w.docks["approvals"])
    qtbot.wait(50)
    assert not w.docks["approvals"].isHidden()
    assert w.docks["approvals"] in w.tabifiedDockWidgets(w.docks["risk_overview"])
    assert w.width() == width
    # the same from the View menu's tick box
    assert w.docks["limits"].isHidden()
    next(a for a in w.view_menu.actions() if a.isCheckable() and a.text() == "Limits").trigger()
    qtbot.wait(50)
    assert not w.docks["limits"].isHidden()
    assert w.docks["limits"] in w.tabifiedDockWidgets(w.docks["risk_overview"])
    assert w.width() == width
    w.close()


def test_layout_saved_on_close_and_restored_only_for_same_version(qtbot: Any, settings_file: Path) -> None:
    w1 = MainWindow(settings=make_settings(settings_file))
    qtbot.addWidget(w1)
    w1.show()
    qtbot.waitExposed(w1)
    w1.docks["feed"].close()
    w1.close()  # closeEvent saves
    s = make_settings(settings_file)
    assert int(s.value("window/state_version")) == WINDOW_STATE_VERSION

    w2 = MainWindow(settings=make_settings(settings_file))
    qtbot.addWidget(w2)
    assert w2.restored
    assert w2.docks["feed"].isHidden()
    assert not w2.docks["margin_alerts"].isHidden()

    s.setValue("window/state_version", WINDOW_STATE_VERSION - 1)  # saved by another layout version
    s.sync()
    w3 = MainWindow(settings=make_settings(settings_file))
    qtbot.addWidget(w3)
    assert not w3.restored
    assert not w3.docks["feed"].isHidden()


def test_ctrl_f_focuses_alert_search(qtbot: Any, settings_file: Path) -> None:
    w = MainWindow(settings=make_settings(settings_file))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    w.search_action.trigger()
    qtbot.waitUntil(lambda: w.alerts.search.hasFocus())


# ---------------------------------------------------------------------- the array model
def _model(values: np.ndarray) -> ArrayTableModel:
    return ArrayTableModel([Column("key", lambda k: k, fmt=str), number_column("value", lambda k: values[k])])


def test_array_model_sort_keeps_selection(qtbot: Any) -> None:
    values = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 1234567.891])
    m = _model(values)
    m.set_keys(np.arange(6))
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(m)
    view.selectRow(2)  # key 2
    assert m.data(m.index(5, 1)) == "1,234,567.89"
    assert m.data(m.index(5, 1), Qt.ItemDataRole.TextAlignmentRole) & Qt.AlignmentFlag.AlignRight
    layouts: list[int] = []
    m.layoutChanged.connect(lambda *a: layouts.append(1))
    m.sort(1, Qt.SortOrder.DescendingOrder)
    assert m.keys.tolist() == [5, 0, 2, 4, 3, 1]
    assert layouts == [1]
    assert m.key_at(view.currentIndex().row()) == 2
    assert [i.row() for i in view.selectionModel().selectedRows()] == [m.row_of(2)]
    m.sort(1, Qt.SortOrder.AscendingOrder)
    assert m.keys.tolist() == [1, 3, 4, 2, 0, 5]
    assert m.key_at(view.currentIndex().row()) == 2


def test_array_model_filter_and_row_set_changes(qtbot: Any) -> None:
    values = np.arange(20, dtype=float)
    m = _model(values)
    m.set_keys(np.arange(10))
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(m)
    view.selectRow(m.row_of(7))
    removed: list[tuple[int, int]] = []
    inserted: list[tuple[int, int]] = []
    resets: list[int] = []
    m.rowsRemoved.connect(lambda _p, a, b: removed.append((a, b)))
    m.rowsInserted.connect(lambda _p, a, b: inserted.append((a, b)))
    m.modelReset.connect(lambda: resets.append(1))
    m.set_filter(lambda k: values[k] >= 5)
    assert m.keys.tolist() == [5, 6, 7, 8, 9]
    assert removed == [(0, 4)]  # one contiguous block, one signal
    assert m.key_at(view.currentIndex().row()) == 7
    removed.clear()
    m.set_keys(np.array([3, 5, 7, 9, 11, 12]))  # 6 and 8 leave; 11 and 12 arrive; 3 is filtered out
    assert m.keys.tolist() == [5, 7, 9, 11, 12]
    assert removed == [(3, 3), (1, 1)]  # one signal per block, bottom first
    assert inserted == [(3, 4)]  # the additions in one insert
    assert resets == []
    assert m.key_at(view.currentIndex().row()) == 7
    m.set_filter(None)
    assert m.keys.tolist() == [3, 5, 7, 9, 11, 12]
    assert m.key_at(view.currentIndex().row()) == 7


def test_update_rows_emits_one_datachanged_per_contiguous_block(qtbot: Any) -> None:
    values = np.zeros(100)
    m = _model(values)
    m.set_keys(np.arange(100))
    changes: list[tuple[int, int, int, int]] = []
    m.dataChanged.connect(lambda a, b, *_: changes.append((a.row(), b.row(), a.column(), b.column())))
    resets: list[int] = []
    m.modelReset.connect(lambda: resets.append(1))
    assert m.data(m.index(40, 1)) == "0.00"
    values[[3, 4, 5, 40, 41, 90]] = 1.5
    n = m.update_rows(np.array([41, 3, 90, 5, 4, 40, 500, -1]))  # unknown keys are ignored
    assert n == 3
    assert changes == [(3, 5, 0, 1), (40, 41, 0, 1), (90, 90, 0, 1)]
    assert m.data(m.index(40, 1)) == "1.50"  # the cached row was re-read
    assert resets == []


def test_10000_signal_emits_from_python(qtbot: Any) -> None:
    """PySide6 6.12.0 aborted with 'bool_dealloc' after a few hundred emits; 6.11.3 must not."""

    class Emitter(QObject):
        flag = Signal(bool)
        payload = Signal(object)

    e = Emitter()
    got: list[int] = []
    e.flag.connect(lambda v: got.append(1))
    e.payload.connect(lambda v: got.append(1))
    for i in range(10_000):
        e.flag.emit(i % 2 == 0)
        e.payload.emit((True, i))
    assert len(got) == 20_000


# ---------------------------------------------------------------------- tasks, hooks, dialogs
def test_task_runner_delivers_results_progress_errors_and_cancels(qtbot: Any, runner: TaskRunner) -> None:
    gui = threading.get_ident()
    seen: dict[str, Any] = {"progress": []}

    def work(n: int, task: Any) -> int:
        for i in range(n):
            task.progress(i / n, f"step {i}")
        return threading.get_ident()

    def done(worker_ident: int) -> None:
        seen["done_on_gui"] = threading.get_ident() == gui
        seen["worker_off_gui"] = worker_ident != gui

    runner.run(work, 10_000, on_done=done, on_progress=lambda f, t: seen["progress"].append(f))
    qtbot.waitUntil(lambda: "done_on_gui" in seen)
    assert seen["done_on_gui"] and seen["worker_off_gui"]
    assert len(seen["progress"]) < 50  # throttled, not 10,000 events

    runner.run(lambda: 1 / 0, on_error=lambda e: seen.setdefault("error", e))
    qtbot.waitUntil(lambda: "error" in seen)
    assert isinstance(seen["error"], ZeroDivisionError)

    gate = threading.Event()

    def slow(task: Any) -> str:
        gate.wait(5)
        return "stale"

    t = runner.run(slow, on_done=lambda r: seen.setdefault("stale", r))
    t.cancel()
    gate.set()
    assert runner.wait_all(5)
    qtbot.waitUntil(lambda: runner.active == 0)
    assert "stale" not in seen


def test_exception_from_a_thread_reaches_the_gui_thread(qtbot: Any) -> None:
    relay = ExceptionRelay()
    shown: list[tuple[str, bool]] = []
    relay.handler = lambda summary, details: shown.append((summary, threading.current_thread() is
                                                          threading.main_thread()))

    def boom() -> None:
        try:
            raise ValueError("bad tick")
        except ValueError as e:
            relay.report(type(e), e, e.__traceback__, "worker")

    t = threading.Thread(target=boom)
    t.start()
    t.join()
    qtbot.waitUntil(lambda: bool(shown))
    assert shown == [("ValueError: bad tick", True)]


def test_unreachable_database_gives_a_retry_dialog(qtbot: Any, runner: TaskRunner) -> None:
    dialogs = DialogService(interactive=False)
    ctl = SessionController(runner, dialogs, "postgresql://nobody@127.0.0.1:1/x", FeedChoice("none"))
    ctl.start()
    qtbot.waitUntil(lambda: bool(dialogs.pending), timeout=15_000)
    req = dialogs.pending[0]
    assert req.kind == "retry"
    assert "Cannot reach the database server" in req.text and "127.0.0.1" in req.text
    assert "Traceback" not in req.text + req.details
    req.answer(True)  # retry: it fails the same way and asks again
    qtbot.waitUntil(lambda: len(dialogs.history) == 2, timeout=15_000)
    with qtbot.waitSignal(ctl.cancelled, timeout=5000) as blocker:
        dialogs.pending[0].answer(False)
    assert "Cannot reach" in blocker.args[0]
    assert ctl.session is None


def test_refused_password_asks_for_a_login_then_retries_with_it(qtbot: Any, runner: TaskRunner) -> None:
    from services.store import StoreError

    dialogs = DialogService(interactive=False)
    ctl = SessionController(runner, dialogs, "postgresql://alice@127.0.0.1:1/risk", FeedChoice("none"))
    ctl._failed(StoreError("The password for alice@127.0.0.1/risk was refused."))  # as the worker reports it
    login = dialogs.pending[0]
    assert login.kind == "login" and login.data["user"] == "alice"
    assert isinstance(login.data["keyring"], bool)  # the dialog says where the password will be kept
    login.answer(("bob", "s3cret"))  # the retry goes to the (unreachable) server as bob
    qtbot.waitUntil(lambda: len(dialogs.history) == 2, timeout=15_000)
    assert (ctl.url or "").startswith("postgresql+psycopg://bob@127.0.0.1:1/risk") and ctl.attempts == 1
    retry = dialogs.pending[0]
    assert retry.kind == "retry" and "s3cret" not in retry.text
    retry.answer(False)


# ---------------------------------------------------------------------- live data
@pytest.fixture
def demo_store(tmp_path: Path) -> Any:
    from services.demo_store import seed_demo_store
    from services.store import Store

    store = Store(f"sqlite:///{tmp_path / 'demo.db'}")
    store.migrate()
    seed_demo_store(store, clients=300)
    yield store
    store.dispose()


@pytest.fixture
def live_monitor(demo_store: Any) -> Iterator[Any]:
    from services.feed.simulator import FeedSimulator
    from services.live import LiveMonitor

    sim = FeedSimulator(demo_store.load_book(), "tcp://127.0.0.1:0", rate=3000, seed=3)
    thread = threading.Thread(target=sim.run, name="test-feed-sim")
    thread.start()
    assert sim.ready.wait(10) and sim.error is None
    monitor = LiveMonitor(demo_store, demo_store.load_book(), feed_address=sim.endpoint)
    monitor.start()
    yield monitor
    monitor.stop()
    sim.stop()
    thread.join(10)


def test_live_update_reaches_the_alerts_model_in_place(qtbot: Any, live_monitor: Any) -> None:
    dock = AlertsDock()
    qtbot.addWidget(dock)
    dock.show()
    dock.set_monitor(live_monitor)
    m = dock.model
    eq = dock.column("Equity")
    # the initial snapshot has been applied and the feed is live
    qtbot.waitUntil(lambda: live_monitor.feed_state() == "live" and live_monitor.stats.resyncs >= 1
                    and m.rowCount() > 0, timeout=10_000)
    dock.tick()
    first = {m.key_at(r): m.data(m.index(r, eq)) for r in range(m.rowCount())}
    resets: list[int] = []
    changed: list[int] = []
    m.modelReset.connect(lambda: resets.append(1))
    m.dataChanged.connect(lambda a, b, *_: changed.append(b.row() - a.row() + 1))

    def an_equity_moved() -> bool:
        return any(first.get(m.key_at(r), m.data(m.index(r, eq))) != m.data(m.index(r, eq))
                   for r in range(m.rowCount()))

    qtbot.waitUntil(an_equity_moved, timeout=15_000)
    assert changed and resets == []  # updated by dataChanged, never a reset per tick
    assert sum(changed) < 50 * m.rowCount()
    # what the row shows is what the engine holds (read while the feed cannot move it)
    a = m.key_at(0)
    with live_monitor.lock:
        expected = f"{live_monitor.engine.equity[a]:,.2f}"
        dock.model.update_rows(np.array([a]))
        assert m.data(m.index(m.row_of(a), eq)) == expected
    assert "live" in dock.live_label.text()
    dock.stop()


def test_accounts_entering_and_leaving_alerts_are_inserted_and_removed(qtbot: Any, demo_store: Any) -> None:
    from services.feed.wire import decode, encode
    from services.live import LiveMonitor

    monitor = LiveMonitor(demo_store, demo_store.load_book(), persist_calls=False)
    e = monitor.engine
    b = e.book
    a = int(np.flatnonzero((e.status == 0) & (e.loan > 0) & (e.mv_long > 0))[0])
    secs = e.positions_of(a)["sec"]
    before = b.price[secs].copy()
    dock = AlertsDock()
    qtbot.addWidget(dock)
    dock.set_monitor(monitor)
    dock.stop()  # ticks are driven by the test
    m = dock.model
    assert m.row_of(a) == -1
    inserted: list[int] = []
    removed: list[int] = []
    resets: list[int] = []
    m.rowsInserted.connect(lambda _p, lo, hi: inserted.append(hi - lo + 1))
    m.rowsRemoved.connect(lambda _p, lo, hi: removed.append(hi - lo + 1))
    m.modelReset.connect(lambda: resets.append(1))

    def publish(prices: np.ndarray, seq: int) -> None:
        items = [[b.sec_codes[s], float(p)] for s, p in zip(secs.tolist(), prices.tolist(), strict=True)]
        monitor._on_batch([decode(encode("px", "test", seq, items))])  # as the subscriber thread would
        dock.tick()

    publish(before * 0.05, 0)  # a crash: the account falls into force
    assert monitor.engine.status[a] == 3
    assert m.row_of(a) >= 0 and inserted and resets == []
    row = m.row_of(a)
    assert m.data(m.index(row, dock.column("Status"))) == "force"
    publish(before, 1)  # prices back: it leaves the alert list
    assert monitor.engine.status[a] == 0
    assert m.row_of(a) == -1 and removed and resets == []


def test_drilldown_and_margin_table_follow_the_monitor(qtbot: Any, live_monitor: Any, runner: TaskRunner,
                                                       settings_file: Path) -> None:
    w = MainWindow(settings=make_settings(settings_file), run_task=runner.run)
    qtbot.addWidget(w)
    w.show()
    w.attach(live_monitor, live_monitor.store, live_monitor.feed_address)
    qtbot.waitUntil(lambda: w.drilldown.account >= 0, timeout=10_000)  # the top alert is pre-selected
    a = w.drilldown.account
    book = live_monitor.engine.book
    assert book.acct_codes[a] in w.drilldown.title.text()
    email = book.client_email(a)
    assert w.drilldown.title.toolTip() == (f"Notices go to {email}" if email else
                                           f"No e-mail on file for {book.client_codes[a]}")
    # the four-eyes dialog's live context for a limit change comes from this monitor
    qtbot.waitUntil(lambda: w._account_figures(book.acct_codes[a]) is not None)  # the feed may hold the lock
    figures = w._account_figures(book.acct_codes[a])
    assert figures is not None and figures["Status (live)"] in ("safe", "warning", "call", "force")
    assert set(figures) == {"Status (live)", "Equity", "Loan", "IM", "MM"}
    assert w._account_figures("NO-SUCH-ACCOUNT") is None
    n_pos = int(live_monitor.engine.acct_start[a + 1] - live_monitor.engine.acct_start[a])
    assert w.drilldown.positions.rowCount() == n_pos
    qtbot.waitUntil(lambda: w.drilldown.chart is not None and w.drilldown.chart.n >= 1)
    if live_monitor.tracker.open[a]:
        qtbot.waitUntil(lambda: "snapshot" in w.drilldown.call_panel.note.text(), timeout=10_000)
    assert w.margin_table.model.rowCount() == book.n_sec
    w.margin_table.search.setText(book.sec_codes[0])
    assert 1 <= w.margin_table.model.rowCount() < book.n_sec
    qtbot.waitUntil(lambda: w.feed.fields.values["Messages"].text() not in ("", "0"), timeout=10_000)
    w.shutdown()


def test_feed_process_starts_and_is_gone_after_stop(demo_store: Any) -> None:
    url = str(demo_store.url.render_as_string(hide_password=False))
    fp = FeedProcess(url)
    address = fp.start()
    assert address.startswith("tcp://127.0.0.1:")
    proc = fp.proc
    assert proc is not None and fp.running
    fp.stop()
    assert proc.poll() is not None and not fp.running


def test_screenshot_command_writes_a_png_and_exits_0(tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RISKDESK_HOME=str(tmp_path / "home"))
    subprocess.run([sys.executable, "main.py", "demo", "--db", f"sqlite:///{tmp_path / 's.db'}",
                    "--clients", "300"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    r = subprocess.run([sys.executable, "main.py", "--db", f"sqlite:///{tmp_path / 's.db'}", "--no-feed",
                        "--screenshot", str(shot), "--quit-after", "1.5"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert shot.stat().st_size > 10_000
    assert "Traceback" not in r.stderr
