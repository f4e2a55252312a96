"""The main window: four docks from one factory, View menu, versioned layout, status bar, shortcuts.

Layout persistence follows spyder rather than vnpy: every dock gets a stable objectName from
`create_dock`, and the state is saved with `WINDOW_STATE_VERSION`. A state saved by another version
is ignored (the default layout is used), so an upgrade that adds or renames a dock never restores a
broken arrangement. Settings go to an explicit INI file when ``RISKDESK_SETTINGS`` or the
constructor says so (tests), else to the platform's settings store.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QWidget

from app.dock_catalog import CATALOGUE, WORKSPACES, workspace_docks
from app.qt_app import APP_NAME, ORG_NAME
from widgets.alerts_dock import AlertsDock
from widgets.approvals_dock import ApprovalsDock
from widgets.audit_dock import AuditDock
from widgets.client_margin_dock import ClientMarginDock
from widgets.credit_dock import CreditDock
from widgets.drilldown_dock import DrilldownDock
from widgets.feed_dock import FeedDock
from widgets.formatting import FEED_STATE_COLOURS, clock_time, dot_html
from widgets.haircuts_dock import HaircutsDock
from widgets.index_dock import IndexDock
from widgets.lcs_dock import LcsDock
from widgets.limits_dock import LimitsDock
from widgets.lists_dock import ListsDock
from widgets.margin_settings_dock import MarginSettingsDock
from widgets.margin_table_dock import MarginTableDock
from widgets.parameters_dock import ParametersDock
from widgets.pretrade_dock import PretradeDock
from widgets.short_sell_dock import ShortSellDock
from widgets.stress_dock import StressDock
from widgets.trading_limits_dock import TradingLimitsDock

if TYPE_CHECKING:
    from services.live import LiveMonitor

WINDOW_STATE_VERSION = 11  # bumped whenever the set of docks changes (saved layouts are then discarded)
DEFAULT_SIZE = (1760, 990)  # fits every alert column; shrunk to the screen when it is smaller
Area = Qt.DockWidgetArea


def make_settings(path: str | os.PathLike[str] | None = None) -> QSettings:
    """An INI file at ``path`` or ``$RISKDESK_SETTINGS``; otherwise the user's RiskDesk settings."""
    path = path or os.environ.get("RISKDESK_SETTINGS")
    if path:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(ORG_NAME, APP_NAME)


def _default_size() -> tuple[int, int]:
    """The default size, or 95 % of a smaller real screen (offscreen rendering reports 800×800)."""
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return DEFAULT_SIZE
    avail = screen.availableGeometry()
    if avail.width() < 1024 or avail.height() < 700:  # not a real desk screen: render at full size
        return DEFAULT_SIZE
    return min(DEFAULT_SIZE[0], int(avail.width() * 0.95)), min(DEFAULT_SIZE[1], int(avail.height() * 0.95))


class MainWindow(QMainWindow):
    refresh_requested = Signal()

    def __init__(self, settings: QSettings | None = None, run_task: Any = None, restore: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings if settings is not None else make_settings()
        self.monitor: LiveMonitor | None = None
        self.setWindowTitle(APP_NAME)
        self.resize(*_default_size())
        self.setDockNestingEnabled(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks
                            | QMainWindow.DockOption.AllowNestedDocks)
        self.setCorner(Qt.Corner.BottomRightCorner, Area.RightDockWidgetArea)
        self.setCorner(Qt.Corner.TopRightCorner, Area.RightDockWidgetArea)
        self.setCorner(Qt.Corner.BottomLeftCorner, Area.BottomDockWidgetArea)

        self.view_menu = self.menuBar().addMenu("&View")
        self.alerts = AlertsDock()
        self.drilldown = DrilldownDock(run_task)
        self.margin_table = MarginTableDock()
        self.feed = FeedDock()
        self.approvals = ApprovalsDock()
        self.parameters = ParametersDock()
        self.audit = AuditDock()
        self.credit = CreditDock()
        self.margin_settings = MarginSettingsDock()
        self.short_sell = ShortSellDock()
        self.lists = ListsDock()
        self.client_margin = ClientMarginDock()
        self.haircuts = HaircutsDock()
        self.trading_limits = TradingLimitsDock()
        self.stress = StressDock()
        self.lcs = LcsDock()
        self.indices = IndexDock()
        self.pretrade = PretradeDock()
        self.limits = LimitsDock()
        self.what_if_dialog: Any = None
        self.pack_dialog: Any = None
        self.user: Any = None
        self.idle_lock: Any = None  # widgets.session_lock.IdleLock once logged in
        self._governance: tuple[Any, Any, Any] | None = None  # (store, user, tasks) after login
        self.import_dialog: Any = None
        self.login_dialog: Any = None
        self.docks: dict[str, QDockWidget] = {}
        for widget, title, name, area in (
                (self.alerts, "Margin alerts", "margin_alerts", Area.LeftDockWidgetArea),
                (self.drilldown, "Client drill-down", "client_drilldown", Area.RightDockWidgetArea),
                (self.margin_table, "Margin table", "margin_table", Area.BottomDockWidgetArea),
                (self.feed, "Feed", "feed", Area.BottomDockWidgetArea),
                (self.approvals, "Approvals", "approvals", Area.BottomDockWidgetArea),
                (self.parameters, "Risk parameters", "risk_parameters", Area.BottomDockWidgetArea),
                (self.audit, "Audit trail", "audit_trail", Area.BottomDockWidgetArea),
                (self.credit, "Credit", "credit", Area.BottomDockWidgetArea),
                (self.margin_settings, "Margin requirements", "margin_requirements", Area.BottomDockWidgetArea),
                (self.short_sell, "Short-sell status", "short_sell", Area.BottomDockWidgetArea),
                (self.lists, "Lists and groups", "lists", Area.BottomDockWidgetArea),
                (self.client_margin, "Client margin", "client_margin", Area.BottomDockWidgetArea),
                (self.haircuts, "Haircuts", "haircuts", Area.BottomDockWidgetArea),
                (self.stress, "Stress testing", "stress", Area.BottomDockWidgetArea),
                (self.trading_limits, "Trading limits", "trading_limits", Area.BottomDockWidgetArea),
                (self.pretrade, "Pre-trade", "pretrade", Area.BottomDockWidgetArea),
                (self.limits, "Limits", "limits", Area.BottomDockWidgetArea),
                (self.lcs, "LCS test", "lcs", Area.BottomDockWidgetArea),
                (self.indices, "Indices and levels", "indices", Area.BottomDockWidgetArea)):
            self.create_dock(widget, title, name, area)
        # catalogue docks (app/dock_catalog.py): a dock's widget is built the first time the dock is
        # shown (eager ones at once), so opening the window and logging in do not wait for thirty
        # panels and their first reads; `catalogue` holds the ones built so far
        self.catalogue: dict[str, Any] = {}
        self._specs = {spec.object_name: spec for spec in CATALOGUE}
        for spec in CATALOGUE:
            placeholder = QLabel(f"{spec.title}: opening…")
            placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
            dock = self.create_dock(placeholder, spec.title, spec.object_name, Area.BottomDockWidgetArea)
            dock.visibilityChanged.connect(lambda visible, n=spec.object_name: visible and self.build_dock(n))
        for spec in CATALOGUE:
            if spec.eager:
                self.build_dock(spec.object_name)
        self.approvals.pending_count_changed.connect(self._show_pending_count)
        self.credit.account_selected.connect(self.drilldown.show_account)
        self.approvals.requests_changed.connect(lambda _full: self.parameters.refresh())
        for editor in (self.margin_settings, self.short_sell, self.lists, self.client_margin, self.haircuts,
                       self.trading_limits, self.limits, self.pretrade, self.indices):
            self.approvals.requests_changed.connect(lambda _full, e=editor: e.refresh())
        self.approvals.requests_changed.connect(lambda _full: self.stress.refresh())
        self._build_menus()
        self._build_status_bar()
        self.alerts.account_selected.connect(self.drilldown.show_account)
        self.apply_default_layout()
        self.restored = self.restore_layout() if restore else False
        if not self.restored:  # a first start: the margin desk's docks, not thirty tabs (View ▸ Workspaces)
            self.apply_workspace("Margin desk")
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(500)
        self._status_timer.timeout.connect(self.update_status)

    # ------------------------------------------------------------------ docks
    def create_dock(self, widget: QWidget, title: str, object_name: str, area: Area) -> QDockWidget:
        """The only way docks are made: a stable objectName makes saveState/restoreState work."""
        dock = QDockWidget(title, self)
        dock.setObjectName(object_name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        action = dock.toggleViewAction()
        # ticked in the View menu: `toggled` comes before the dock's own handler shows it
        action.toggled.connect(lambda on, d=dock: self._join_tabs(d) if on else None)
        n = len(self.docks) + 1
        action.setShortcut(QKeySequence(f"Ctrl+Shift+{n}"))
        self.view_menu.addAction(action)
        shortcut = QShortcut(QKeySequence(f"Ctrl+{n}"), self)
        shortcut.activated.connect(lambda d=dock: self.raise_dock(d))
        self.docks[object_name] = dock
        return dock

    def build_dock(self, object_name: str) -> Any:
        """The catalogue dock's widget, built and wired on first use (the same hooks as at login)."""
        widget = self.catalogue.get(object_name)
        if widget is not None or object_name not in self._specs:
            return widget
        spec = self._specs[object_name]
        widget = spec.build()
        self.catalogue[object_name] = widget
        self.docks[object_name].setWidget(widget)
        if spec.refresh_on_approval:
            self.approvals.requests_changed.connect(lambda _full, e=widget: e.refresh())
        if hasattr(widget, "open_dock"):
            widget.open_dock.connect(self.open_dock)
        if hasattr(widget, "account_selected"):
            widget.account_selected.connect(self.drilldown.show_account)
        if hasattr(widget, "follow"):
            widget.follow(self.alerts.call_actions)
        if self._governance is not None:
            widget.set_context(*self._governance)
        if self.monitor is not None and hasattr(widget, "set_monitor"):
            widget.set_monitor(self.monitor)
        return widget

    def open_dock(self, object_name: str) -> None:
        """Show and raise a dock by its object name (risk overview figures, cross-links)."""
        dock = self.docks.get(object_name)
        if dock is not None:
            self.raise_dock(dock)

    def apply_workspace(self, name: str) -> None:
        """Show one workspace's docks tabbed below the alerts; hide the other bottom docks."""
        wanted = [n for n in workspace_docks(name) if n in self.docks
                  and (n != "audit_trail" or self._audit_allowed())]
        fixed = {"margin_alerts", "client_drilldown"}
        for n, dock in self.docks.items():
            if n not in fixed and n not in wanted:
                dock.hide()
        first = None
        for n in wanted:
            dock = self.docks[n]
            dock.setFloating(False)
            self.addDockWidget(Area.BottomDockWidgetArea, dock)
            if first is None:
                first = dock
            else:
                self.tabifyDockWidget(first, dock)
            dock.show()
        if first is not None:
            first.raise_()
        self.settings.setValue("window/workspace", name)

    def _join_tabs(self, dock: QDockWidget) -> None:
        """A hidden dock about to be shown (not in the current workspace) joins the tabs of a dock
        showing in its area: shown where it last was, Qt would split the area beside them and widen
        the window to fit both."""
        if dock.isHidden() and not dock.isFloating():
            area = self.dockWidgetArea(dock)
            peer = next((d for d in self.docks.values() if d is not dock and not d.isHidden()
                         and not d.isFloating() and self.dockWidgetArea(d) == area), None)
            if peer is not None:
                self.tabifyDockWidget(peer, dock)

    def raise_dock(self, dock: QDockWidget) -> None:
        """Show a dock in front (a hidden one joins the tabs of its area, see `_join_tabs`)."""
        self._join_tabs(dock)
        dock.show()
        dock.raise_()
        w = dock.widget()
        if w is not None:
            w.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def apply_default_layout(self) -> None:
        """Alerts large on the left, drill-down on the right, margin table and feed tabbed below."""
        d = self.docks
        for dock in d.values():
            dock.setFloating(False)
            dock.show()
        self.addDockWidget(Area.LeftDockWidgetArea, d["margin_alerts"])
        self.addDockWidget(Area.RightDockWidgetArea, d["client_drilldown"])
        self.addDockWidget(Area.BottomDockWidgetArea, d["margin_table"])
        self.addDockWidget(Area.BottomDockWidgetArea, d["feed"])
        self.tabifyDockWidget(d["margin_table"], d["feed"])
        for name in ("approvals", "pretrade", "risk_parameters", "margin_requirements", "client_margin", "haircuts",
                     "short_sell", "credit", "trading_limits", "limits", "lists", "lcs", "indices", "audit_trail"):
            self.addDockWidget(Area.BottomDockWidgetArea, d[name])
            self.tabifyDockWidget(d["margin_table"], d[name])
        self.addDockWidget(Area.BottomDockWidgetArea, d["stress"])
        self.tabifyDockWidget(d["margin_table"], d["stress"])
        for spec in CATALOGUE:
            self.addDockWidget(Area.BottomDockWidgetArea, d[spec.object_name])
            self.tabifyDockWidget(d["margin_table"], d[spec.object_name])
        if not self._audit_allowed():
            d["audit_trail"].hide()
        d.get("risk_overview", d["margin_table"]).raise_()  # the home dock
        w, h = self.width(), self.height()
        self.resizeDocks([d["margin_alerts"], d["client_drilldown"]], [int(w * 0.65), int(w * 0.35)],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([d["margin_alerts"], d["margin_table"]], [int(h * 0.66), int(h * 0.30)],
                         Qt.Orientation.Vertical)

    # ------------------------------------------------------------------ four-eyes
    def _audit_allowed(self) -> bool:
        """The audit trail is for auditors (and the CRO); others do not get the dock."""
        return self.user is None or self.user.role in ("auditor", "cro")

    def _account_figures(self, account_code: str) -> dict[str, Any] | None:
        """The live monitor's status, equity, loan, IM and MM for an account, shown beside a limit change
        in the four-eyes dialog (None before the monitor runs or while it is busy)."""
        from widgets.request_view import monitor_account_figures

        return None if self.monitor is None else monitor_account_figures(self.monitor)(account_code)

    def attach_governance(self, store: Any, user: Any, tasks: Any) -> None:
        """After login: approvals, parameter editor and (auditors) the audit trail for this user."""
        self.user = user
        self._governance = (store, user, tasks)
        self.import_action.setEnabled(True)
        self.approvals.set_context(store, user, tasks, account_figures=self._account_figures)
        self.approvals.start_listening()
        self.parameters.set_context(store, user, tasks)
        self.margin_settings.set_context(store, user, tasks)
        self.short_sell.set_context(store, user, tasks)
        self.lists.set_context(store, user, tasks)
        self.client_margin.set_context(store, user, tasks)
        self.haircuts.set_context(store, user, tasks)
        self.trading_limits.set_context(store, user, tasks)
        self.stress.set_context(store, user, tasks)
        self.pretrade.set_context(store, user, tasks)
        self.limits.set_context(store, user, tasks)
        self.lcs.set_context(store, user, tasks)
        self.indices.set_context(store, user, tasks)
        for widget in self.catalogue.values():
            widget.set_context(store, user, tasks)
        # the alerts dock's Send notice… / Adjust deadline… / Remark… / Exception… act as this user
        self.alerts.call_actions.set_context(store, user, tasks)
        self.drilldown.call_panel.records.set_user(user.login)  # snapshot exports are audited as this user
        self.what_if_action.setEnabled(True)
        self.pack_action.setEnabled(True)
        if self.monitor is not None:
            self.credit.set_context(store, user, tasks, self.monitor)
        # pending requests past their time expire (also checked by every decision); the sweep
        # runs off the GUI thread and the approvals dock refreshes through its listener
        from services.changes import expire_due

        self._expiry_timer = QTimer(self)
        self._expiry_timer.setInterval(60_000)
        self._expiry_timer.timeout.connect(lambda: tasks.run(expire_due, store, on_done=lambda _n: None,
                                                             on_error=lambda _e: None, name="expire requests"))
        self._expiry_timer.start()
        audit_dock = self.docks["audit_trail"]
        if self._audit_allowed():
            self.audit.set_context(store, user, tasks)
        else:
            audit_dock.hide()
            audit_dock.toggleViewAction().setEnabled(False)
            audit_dock.toggleViewAction().setVisible(False)

    def open_import(self) -> Any:
        """The bulk import dialog (template, upload, row report, submit as change requests); non-modal."""
        if self._governance is None:
            return None
        from widgets.import_dialog import ImportDialog

        store, user, tasks = self._governance
        dialog = ImportDialog(store, user, tasks, parent=self)
        dialog.submitted.connect(lambda _ids: self.approvals.refresh())
        dialog.show()
        self.import_dialog = dialog
        return dialog

    def open_pack(self) -> Any:
        """Export ▸ Risk pack: sheets (remembered), file, built in the background with progress."""
        if self._governance is None:
            return None
        from widgets.pack_dialog import PackDialog

        store, user, tasks = self._governance
        if self.pack_dialog is None or not self.pack_dialog.isVisible():
            self.pack_dialog = PackDialog(store, user, tasks, self.monitor, parent=self)
        self.pack_dialog.show()
        self.pack_dialog.raise_()
        self.pack_dialog.activateWindow()
        return self.pack_dialog

    def open_what_if(self) -> Any:
        """The What-if order dialog (non-modal): the decision and the margin after the trade, on the
        live margin engine; nothing is stored or sent."""
        if self._governance is None:
            return None
        from widgets.what_if_dialog import WhatIfDialog

        store, user, tasks = self._governance
        if self.what_if_dialog is None:
            self.what_if_dialog = WhatIfDialog(store, user, tasks, self.monitor, parent=self)
        self.what_if_dialog.show()
        self.what_if_dialog.raise_()
        self.what_if_dialog.activateWindow()
        return self.what_if_dialog

    def _show_pending_count(self, n: int) -> None:
        self.docks["approvals"].setWindowTitle(f"Approvals ({n})" if n else "Approvals")

    def reset_layout(self) -> None:
        self.apply_default_layout()
        QTimer.singleShot(0, self.apply_default_layout)  # sizes settle once the window has laid out

    def save_layout(self) -> None:
        s = self.settings
        s.setValue("window/state_version", WINDOW_STATE_VERSION)
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(WINDOW_STATE_VERSION))
        s.sync()

    def restore_layout(self) -> bool:
        """Restore geometry and docks when saved by this layout version; False = defaults kept."""
        s = self.settings
        try:
            version = int(str(s.value("window/state_version", -1)))
        except (TypeError, ValueError):
            version = -1
        if version != WINDOW_STATE_VERSION:
            return False
        geometry, state = s.value("window/geometry"), s.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)  # type: ignore[arg-type]
        return state is not None and bool(self.restoreState(state, WINDOW_STATE_VERSION))  # type: ignore[arg-type]

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        self.shutdown()
        super().closeEvent(event)

    # ------------------------------------------------------------------ menus and status
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.import_action = self._action("&Import from Excel…", self.open_import, QKeySequence("Ctrl+I"))
        self.import_action.setEnabled(False)  # after login
        file_menu.addAction(self.import_action)
        file_menu.addSeparator()
        file_menu.addAction(self._action("&Quit", self.close, QKeySequence(QKeySequence.StandardKey.Quit)))
        self.menuBar().insertMenu(self.view_menu.menuAction(), file_menu)
        export_menu = self.menuBar().addMenu("E&xport")
        self.pack_action = self._action("&Risk pack…", self.open_pack, QKeySequence("Ctrl+Shift+P"))
        self.pack_action.setEnabled(False)  # after login
        export_menu.addAction(self.pack_action)
        trading_menu = self.menuBar().addMenu("&Trading")
        self.what_if_action = self._action("&What-if order…", self.open_what_if, QKeySequence("Ctrl+W"))
        self.what_if_action.setEnabled(False)  # after login
        trading_menu.addAction(self.what_if_action)
        self.view_menu.addSeparator()
        workspaces = self.view_menu.addMenu("&Workspaces")
        self.workspace_actions: dict[str, QAction] = {}
        for i, name in enumerate(WORKSPACES, start=1):
            act = self._action(name, lambda n=name: self.apply_workspace(n), QKeySequence(f"Alt+Shift+{i}"))
            workspaces.addAction(act)
            self.workspace_actions[name] = act
        workspaces.addSeparator()
        workspaces.addAction(self._action("All docks", self.reset_layout))
        self.reset_action = self._action("&Reset layout", self.reset_layout)
        self.view_menu.addAction(self.reset_action)
        self.refresh_action = self._action("Refresh", self.refresh, QKeySequence(Qt.Key.Key_F5))
        self.view_menu.addAction(self.refresh_action)
        self.search_action = self._action("Find account", self.focus_alert_search,
                                          QKeySequence(QKeySequence.StandardKey.Find))
        self.view_menu.addAction(self.search_action)

    def _action(self, text: str, slot: Any, shortcut: QKeySequence | None = None) -> QAction:
        """A window-wide action (its shortcut works whichever dock has focus)."""
        action = QAction(text, self)
        action.triggered.connect(lambda _checked=False: slot())
        if shortcut is not None:
            action.setShortcut(shortcut)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.addAction(action)
        return action

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.store_label = QLabel("no store")
        self.feed_label = QLabel(dot_html(FEED_STATE_COLOURS["no feed"], "feed: –"))
        self.recalc_label = QLabel("last recalc –")
        for label in (self.store_label, self.feed_label, self.recalc_label):
            bar.addPermanentWidget(label)

    def focus_alert_search(self) -> None:
        self.raise_dock(self.docks["margin_alerts"])
        self.alerts.focus_search()

    def refresh(self) -> None:
        for w in (self.alerts, self.drilldown, self.margin_table, self.feed):
            w.refresh()
        self.refresh_requested.emit()

    # ------------------------------------------------------------------ session
    def set_store_name(self, name: str) -> None:
        self.setWindowTitle(f"{APP_NAME} — {name}")
        self.store_label.setText(name)

    def show_message(self, text: str, timeout_ms: int = 0) -> None:
        self.statusBar().showMessage(text, timeout_ms)
        if self.monitor is None:
            self.alerts.set_message(text)

    def attach(self, monitor: LiveMonitor, store: Any = None, feed_address: str | None = None,
               price_timestamps: Any = None) -> None:
        """Wire a running monitor into every dock (called once the store is open)."""
        self.monitor = monitor
        self.alerts.set_monitor(monitor)
        self.drilldown.set_monitor(monitor, store)
        self.margin_table.set_monitor(monitor, price_timestamps)
        self.feed.set_monitor(monitor, feed_address)
        for widget in self.catalogue.values():
            if hasattr(widget, "set_monitor"):
                widget.set_monitor(monitor)
        self._status_timer.start()
        self.update_status()

    def update_status(self) -> None:
        m = self.monitor
        if m is None:
            return
        state = m.feed_state()
        self.feed_label.setText(dot_html(FEED_STATE_COLOURS.get(state, "#8b949e"), f"feed: {state}"))
        self.recalc_label.setText(f"last recalc {clock_time(m.last_recalc)}")

    def shutdown(self) -> None:
        """Stop every timer (the monitor and workers are stopped by their owner)."""
        self._status_timer.stop()
        if getattr(self, "_expiry_timer", None) is not None:
            self._expiry_timer.stop()
        for w in (self.alerts, self.drilldown, self.margin_table, self.feed, self.approvals, self.parameters,
                  self.audit, self.credit, self.margin_settings, self.short_sell, self.lists,
                  self.client_margin, self.haircuts, self.trading_limits, self.pretrade, self.limits,
                  self.lcs, self.indices):
            w.stop()
        for widget in self.catalogue.values():
            widget.stop()
        self.stress.stop()
        if self.what_if_dialog is not None:
            self.what_if_dialog.close()
        if self.pack_dialog is not None:
            self.pack_dialog.close()
