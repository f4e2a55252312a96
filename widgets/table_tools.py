"""What every dock table offers through `make_table`: a column chooser and "Export view to Excel…".

Column chooser: the header's context menu lists every column with a checkbox, plus "Show all
columns"; the last visible column cannot be hidden. What the *user* hid is remembered per table in
QSettings under the view's objectName (``tables/<name>/hidden_columns``, header texts as JSON) and
restored when the table is made. Columns a dock hides by itself (the Approvals filters) are never
saved as the user's choice.

Export (the view's context menu, the header menu, Ctrl+Shift+E): the visible columns in their
current order, the rows in the current sort and filter order (`widgets.table_export`). The GUI
thread only copies column values; formatting and writing run in a worker — the dock's `TaskRunner`
when its ``tasks`` attribute has one, else a `threading.Thread` whose result comes back by a queued
signal. The outcome shows in the main window's status bar; a failure also as an error dialog
(through `app.dialogs`, so tests answer it), never as a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from PySide6.QtCore import QObject, QPoint, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu, QTableView, QWidget

from app.tasks import TaskCancelled, TaskRunner
from widgets.table_export import (
    ExportJob,
    ViewData,
    failure_text,
    gather_view,
    sheet_name,
    visible_columns,
    write_view,
)

SETTINGS_GROUP = "tables"
EXPORT_SHORTCUT = "Ctrl+Shift+E"
EXPORT_TEXT = "Export view to Excel…"
STATUS_TIMEOUT_MS = 10_000
_H = Qt.Orientation.Horizontal
_DISPLAY = Qt.ItemDataRole.DisplayRole


def table_settings() -> QSettings:
    """The settings file `app.main_window.make_settings` uses (``$RISKDESK_SETTINGS`` or the user's)."""
    from app.qt_app import APP_NAME, ORG_NAME

    path = os.environ.get("RISKDESK_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(ORG_NAME, APP_NAME)


def default_object_name(model: Any) -> str:
    """The model's class name plus a digest of its headers: most dock tables are a
    `RecordTableModel`, and the class name alone would make hiding "Status" in one table hide it in
    all of them. Stable across runs (crc32, not the salted ``hash``)."""
    headers = [str(model.headerData(c, _H, _DISPLAY)) for c in range(model.columnCount())]
    return f"{type(model).__name__}_{zlib.crc32(chr(31).join(headers).encode()):08x}"


def tools_of(view: QTableView) -> TableTools | None:
    found = view.findChild(TableTools, "tableTools", Qt.FindChildOption.FindDirectChildrenOnly)
    return found if isinstance(found, TableTools) else None


def _find_runner(view: QTableView) -> TaskRunner | None:
    w: QWidget | None = view.parentWidget()
    while w is not None:
        tasks = getattr(w, "tasks", None)
        if isinstance(tasks, TaskRunner):
            return tasks
        w = w.parentWidget()
    return None


# ---------------------------------------------------------------------- the view's tools
class TableTools(QObject):
    """The column chooser and export of one view; a child of it, found with `tools_of`."""

    exported = Signal(str, int)  # path, rows written
    export_failed = Signal(str)  # the message the user saw
    _relay = Signal(object)  # worker thread → GUI thread: (job, kind, payload)

    def __init__(self, view: QTableView) -> None:
        super().__init__(view)
        self.setObjectName("tableTools")
        self.hidden: set[str] = set()  # header texts the user hid (not the ones a dock hides itself)
        self.job: ExportJob | None = None
        header = view.horizontalHeader()
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._show_column_menu)
        self.export_action = QAction(EXPORT_TEXT, view)
        self.export_action.setShortcut(QKeySequence(EXPORT_SHORTCUT))
        self.export_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.export_action.setToolTip("Write the visible columns and rows, as sorted and filtered, to an xlsx")
        self.export_action.triggered.connect(self._export_triggered)
        view.addAction(self.export_action)
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        view.objectNameChanged.connect(self._name_changed)
        self._relay.connect(self._finished)
        self.restore()

    @property
    def view(self) -> QTableView:
        """The view this belongs to (its parent: no Python reference, so no cycle keeps it alive)."""
        return cast(QTableView, self.parent())

    def _export_triggered(self, _checked: bool = False) -> None:
        self.export()

    def _name_changed(self, _name: str) -> None:
        self.restore()

    # ------------------------------------------------------------------ columns
    def headers(self) -> list[str]:
        model = self.view.model()
        return [str(model.headerData(c, _H, _DISPLAY) or "") for c in range(model.columnCount())]

    def settings_key(self) -> str:
        return f"{SETTINGS_GROUP}/{self.view.objectName()}/hidden_columns"

    def restore(self) -> None:
        """Hide the columns saved for this view's objectName (unknown header names are ignored)."""
        raw = table_settings().value(self.settings_key(), "")
        try:
            saved = json.loads(str(raw)) if raw else []
        except ValueError:
            saved = []
        headers = self.headers()
        previous = self.hidden
        self.hidden = {str(h) for h in saved if h in headers} if isinstance(saved, list) else set()
        if len(self.hidden) >= len(set(headers)):  # never restore a table with nothing to see
            self.hidden.clear()
        header = self.view.horizontalHeader()
        for c, h in enumerate(headers):
            if h in self.hidden:
                header.setSectionHidden(c, True)
            elif h in previous:  # hidden under the view's previous name only
                header.setSectionHidden(c, False)
        if headers and not visible_columns(self.view):
            header.setSectionHidden(0, False)

    def save(self) -> None:
        s = table_settings()
        s.setValue(self.settings_key(), json.dumps(sorted(self.hidden)))
        s.sync()

    def set_column_hidden(self, column: int, hidden: bool) -> bool:
        """Hide or show one column (logical index) and remember it; False when refused (the last
        visible column) or out of range."""
        header = self.view.horizontalHeader()
        if not 0 <= column < header.count():
            return False
        if hidden and not header.isSectionHidden(column) and len(visible_columns(self.view)) <= 1:
            return False
        name = str(self.view.model().headerData(column, _H, _DISPLAY) or "")
        header.setSectionHidden(column, hidden)
        (self.hidden.add if hidden else self.hidden.discard)(name)
        self.save()
        return True

    def show_all_columns(self) -> None:
        header = self.view.horizontalHeader()
        for c in range(header.count()):
            header.setSectionHidden(c, False)
        self.hidden.clear()
        self.save()

    def column_menu(self, parent: QWidget | None = None) -> QMenu:
        """The header's menu: a checkbox per column (visual order), "Show all columns", the export."""
        header = self.view.horizontalHeader()
        menu = QMenu(parent or header)
        menu.setObjectName("columnMenu")
        shown = visible_columns(self.view)
        model = self.view.model()
        for v in range(header.count()):
            c = header.logicalIndex(v)
            action = menu.addAction(str(model.headerData(c, _H, _DISPLAY) or f"Column {c + 1}"))
            action.setCheckable(True)
            action.setChecked(not header.isSectionHidden(c))
            action.setEnabled(shown != [c])  # the last visible column stays
            action.toggled.connect(lambda on, col=c: self.set_column_hidden(col, not on))
        menu.addSeparator()
        show_all = menu.addAction("Show all columns")
        show_all.setEnabled(len(shown) < header.count())
        show_all.triggered.connect(lambda _c=False: self.show_all_columns())
        menu.addSeparator()
        menu.addAction(self.export_action)
        return menu

    def _show_column_menu(self, pos: QPoint) -> None:
        header = self.view.horizontalHeader()
        menu = self.column_menu()
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(header.viewport().mapToGlobal(pos))

    # ------------------------------------------------------------------ export
    def export(self, path: str | Path | None = None) -> ExportJob | None:
        """Export what the view shows to ``path``; asks for a file when None (then returns None)."""
        if self.job is not None and not self.job.done:
            self.show_status("An export of this table is still running")
            return None
        if path is None:
            self._ask_path(lambda p: self.export(p) if p else None)
            return None
        p = str(path)
        if not p.lower().endswith(".xlsx"):
            p += ".xlsx"
        data = gather_view(self.view)
        job = ExportJob(p, data.rows)
        self.job = job
        self.view.destroyed.connect(job.cancel)
        self.show_status(f"Exporting {data.rows:,} rows to {Path(p).name}…")
        runner = _find_runner(self.view)
        if runner is not None:
            job.task = runner.run(write_view, p, data, name="table export",
                                  on_done=lambda n: self._finished((job, "done", n)),
                                  on_error=lambda e: self._finished((job, "error", e)),
                                  on_progress=lambda f, _t: self._progress(job, f))
        else:
            job.on_progress = lambda f, _t: self._emit((job, "progress", f))
            job.thread = threading.Thread(target=self._run, args=(job, data), name="table export")
            job.thread.start()
        return job

    def _run(self, job: ExportJob, data: ViewData) -> None:
        """The worker thread: no Qt here but the queued signal back."""
        try:
            outcome: tuple[str, Any] = ("done", write_view(job.path, data, job))
        except TaskCancelled:
            outcome = ("cancelled", None)
        except BaseException as e:  # delivered to the GUI thread, never lost
            outcome = ("error", e)
        self._emit((job, *outcome))

    def _emit(self, event: tuple[ExportJob, str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the view (and this object) is gone: nobody to tell
            self._relay.emit(event)

    def _finished(self, event: tuple[ExportJob, str, Any]) -> None:
        job, kind, payload = event
        if kind == "progress":
            self._progress(job, float(payload))
            return
        if job.thread is not None:  # its last act was this signal: joining is immediate
            job.thread.join(1.0)
        if job is self.job:
            self.job = None
        with contextlib.suppress(RuntimeError, TypeError):
            self.view.destroyed.disconnect(job.cancel)
        if kind == "cancelled" or job.cancelled:
            self.show_status("Export cancelled")
        elif kind == "done":
            self.show_status(f"Exported {int(payload):,} rows to {job.path}")
            self.exported.emit(job.path, int(payload))
        else:
            text = failure_text(payload, job.path)
            self.show_status(text)
            self.export_failed.emit(text)
            from app.dialogs import dialogs

            dialogs().error("Export to Excel failed", text)

    def _progress(self, job: ExportJob, fraction: float) -> None:
        if job is self.job and not job.cancelled:
            self.show_status(f"Exporting {job.rows:,} rows to {Path(job.path).name}… {fraction:.0%}")

    def show_status(self, text: str) -> None:
        window = self.view.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(text, STATUS_TIMEOUT_MS)

    def _ask_path(self, on_path: Callable[[str], Any]) -> None:
        from app.dialogs import DialogRequest, dialogs

        slug = re.sub(r"[^A-Za-z0-9]+", "-", sheet_name(self.view)).strip("-").lower() or "table"
        default = f"{slug}-{datetime.now():%Y%m%d-%H%M}.xlsx"
        service = dialogs()
        if not service.interactive:
            service.ask(DialogRequest("save_file", EXPORT_TEXT.rstrip("…"), "Save the table to",
                                      data={"default": default, "filter": "Excel (*.xlsx)"}, on_answer=on_path))
            return
        dlg = QFileDialog(self.view, EXPORT_TEXT.rstrip("…"), default, "Excel (*.xlsx)")
        dlg.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dlg.setDefaultSuffix("xlsx")
        dlg.fileSelected.connect(on_path)
        dlg.finished.connect(dlg.deleteLater)
        dlg.open()


def install_table_tools(view: QTableView) -> TableTools:
    """Give ``view`` the column chooser and the export (idempotent); names it when unnamed."""
    existing = tools_of(view)
    if existing is not None:
        return existing
    if not view.objectName():
        view.setObjectName(default_object_name(view.model()))
    return TableTools(view)


def export_view(view: QTableView, path: str | Path | None = None) -> ExportJob | None:
    """Export what ``view`` shows (tests and menus); asks for a file when ``path`` is None."""
    return install_table_tools(view).export(path)


def hidden_columns(view: QTableView) -> list[str]:
    """Header texts of the columns the user hid in ``view``."""
    tools = tools_of(view)
    return sorted(tools.hidden) if tools is not None else []

