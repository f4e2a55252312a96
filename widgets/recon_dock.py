"""The reconciliation dock (issue 7, RISK_METHODS §7 "Breaks"): our file against theirs, and the breaks.

Choose the kind (position, transaction, cash) and the source (who sent their file), pick our file and
theirs (CSV or xlsx) and Reconcile: the headers are read in the background; a file whose columns the
source's saved mapping (or the usual names) does not cover opens the column-mapping dialog, and the
mapping is saved for the source so its next file needs no questions. The match runs in the background
with progress and Cancel; the result gives matched, auto-resolved within tolerance and breaks, or says
the same two files were already reconciled for that day (nothing changes). Below: the breaks, the aged
breaks, and the imports; assign / investigate / resolve with a root cause.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.auth import User
from services.breaks import WHO_MAY, BreakError, may_work
from services.recon import KINDS, ReconError
from services.recon_sources import KIND_LABELS, BreaksView, ReconRun, inspect_files, load_view, run_import
from widgets.recon_breaks import BreakActions, BreaksTable
from widgets.recon_mapping import MappingDialog
from widgets.records import CoalescedLoad, Field, RecordTableModel, error_text, set_tone
from widgets.tables import make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.store import Store

FILE_FILTER = "Records (*.csv *.xlsx)"
SIDES = ("ours", "theirs")


def _recon_task(store: Store, user: User | str, kind: str, source: str, ours: str, theirs: str, as_of: date,
                m_ours: dict[str, str], m_theirs: dict[str, str], task: Task) -> ReconRun:
    def progress(fraction: float, text: str) -> None:
        if fraction <= 0.8:  # Cancel stops before the breaks are recorded, never half-way
            task.check()
        task.progress(fraction, text)

    return run_import(store, user, kind, source, ours, theirs, as_of, m_ours, m_theirs, progress)


class ReconDock(QWidget):
    loaded = Signal()  # breaks, imports and sources shown
    reconciled = Signal(object)  # ReconRun
    mapping_requested = Signal(str)  # "ours" | "theirs": `mapping_dialog` is open
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.view_data: BreaksView | None = None
        self.paths = {"ours": "", "theirs": ""}
        self.mapping_dialog: MappingDialog | None = None
        self.last_run: ReconRun | None = None
        self.view_as_of: date | None = None  # the day breaks are aged to (None: today)
        self._job: Task | None = None
        self._pending: dict[str, Any] = {}
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        top = QHBoxLayout()
        self.kind_box = QComboBox()
        for k in KINDS:
            self.kind_box.addItem(KIND_LABELS[k], k)
        self.source_box = QComboBox()
        self.source_box.setEditable(True)
        self.source_box.setMinimumWidth(180)
        edit = self.source_box.lineEdit()
        if edit is not None:
            edit.setPlaceholderText("who sent their file")
        self.as_of_edit = QDateEdit(QDate.currentDate())
        self.as_of_edit.setCalendarPopup(True)
        self.as_of_edit.setDisplayFormat("yyyy-MM-dd")
        for text, w in (("Kind", self.kind_box), ("Source", self.source_box), ("As of", self.as_of_edit)):
            top.addWidget(QLabel(text))
            top.addWidget(w)
        top.addStretch(1)
        lay.addLayout(top)
        files = QHBoxLayout()
        self.file_labels: dict[str, QLabel] = {}
        self.file_buttons: dict[str, QPushButton] = {}
        for side, text in (("ours", "Our file…"), ("theirs", "Their file…")):
            b = QPushButton(text)
            b.clicked.connect(lambda _c=False, s=side: self.ask_file(s))
            lab = QLabel("none chosen")
            lab.setStyleSheet("color: #8b949e;")
            files.addWidget(b)
            files.addWidget(lab, 1)
            self.file_buttons[side], self.file_labels[side] = b, lab
        self.columns_button = QPushButton("Columns…")
        self.columns_button.setToolTip("review or change how each file's columns map to ours")
        self.run_button = QPushButton("Reconcile")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        for b in (self.columns_button, self.run_button, self.cancel_button):
            files.addWidget(b)
        lay.addLayout(files)
        prog = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumHeight(14)
        self.progress.setVisible(False)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setVisible(False)
        prog.addWidget(self.progress)
        lay.addLayout(prog)
        lay.addWidget(self.result)
        self.counts = QLabel()
        self.counts.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.counts)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.breaks = BreaksTable("recon_breaks")
        self.aged = BreaksTable("recon_aged_breaks", aged=True)
        self.imports_model = RecordTableModel([
            Field("Import", "id", "number", fmt=lambda v: f"#{v:.0f}"), Field("Kind", "kind"),
            Field("As of", "as_of"), Field("Matched", "matched", "number", fmt=lambda v: f"{v:,.0f}"),
            Field("Auto-resolved", "auto_resolved", "number", fmt=lambda v: f"{v:,.0f}"),
            Field("Breaks", "breaks", "number", fmt=lambda v: f"{v:,.0f}"),
            Field("By", "imported_by"), Field("At", "imported_at", "time")])
        self.imports_view = make_table(self.imports_model)
        self.imports_view.setObjectName("recon_imports")
        self.tabs.addTab(self.breaks, "Breaks")
        self.tabs.addTab(self.aged, "Aged breaks")
        self.tabs.addTab(self.imports_view, "Imports")
        lay.addWidget(self.tabs, 1)
        self.break_actions = BreakActions(self.selected_break)
        lay.addWidget(self.break_actions)
        self.kind_box.currentIndexChanged.connect(self._kind_changed)
        self.columns_button.clicked.connect(lambda: self.reconcile(review=True))
        self.run_button.clicked.connect(lambda: self.reconcile())
        self.cancel_button.clicked.connect(self.cancel)
        for t in (self.breaks, self.aged):
            t.selection_changed.connect(self.break_actions.update_state)
        self.tabs.currentChanged.connect(lambda _i: self.break_actions.update_state())
        self.break_actions.changed.connect(lambda _m: self.refresh())

    # ------------------------------------------------------------------ dock protocol
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.break_actions.set_context(store, user, tasks)
        self._busy(False, "")
        self.refresh()

    def refresh(self) -> None:
        if self.store is not None and self.tasks is not None:
            self._load.request()

    def stop(self) -> None:
        self._load.cancel()
        self.cancel()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_view, self.store, self.view_as_of, on_done=on_done, on_error=on_error, name="recon breaks")

    def _loaded(self, v: BreaksView) -> None:
        self.view_data = v
        self.breaks.show_breaks(v.breaks)
        self.aged.show_breaks(v.breaks)
        self.imports_model.set_records(v.imports)
        self.break_actions.set_users(v.users)
        self._fill_sources()
        unresolved = [b for b in v.breaks if b["status"] != "resolved"]
        aged = sum(1 for b in unresolved if b["age_days"] >= 6)
        self.counts.setText(f"<b>{len(unresolved):,} unresolved breaks</b> · <span style='color:#f85149'>"
                            f"{aged:,} critical (6+ business days)</span> · {len(v.imports):,} imports · "
                            f"<span style='color:#8b949e'>{v.resolved_text}</span>")
        self.tabs.setTabText(1, f"Aged breaks ({sum(1 for b in unresolved if b['age_days'] >= 2)})")
        self.break_actions.update_state()
        self.loaded.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.counts.setText(f"<span style='color:#f85149'>breaks could not be read: {error_text(e)}</span>")

    # ------------------------------------------------------------------ inputs
    @property
    def kind(self) -> str:
        return str(self.kind_box.currentData())

    @property
    def source(self) -> str:
        return self.source_box.currentText().strip()

    def _kind_changed(self) -> None:
        self._fill_sources()

    def _fill_sources(self) -> None:
        current = self.source
        names = (self.view_data.sources.get(self.kind, []) if self.view_data else [])
        self.source_box.blockSignals(True)
        self.source_box.clear()
        self.source_box.addItems(names)
        self.source_box.setCurrentText(current or (names[0] if names else ""))
        self.source_box.blockSignals(False)

    def set_file(self, side: str, path: str) -> None:
        if not path:
            return
        self.paths[side] = path
        self.file_labels[side].setText(Path(path).name)
        self.file_labels[side].setToolTip(path)
        self.file_labels[side].setStyleSheet("")

    def ask_file(self, side: str) -> None:
        from app.dialogs import DialogRequest, dialogs

        title = "Our records" if side == "ours" else f"{self.source or 'Their'} records"
        service = dialogs()
        if not service.interactive:
            service.ask(DialogRequest("open_file", title, "Reconciliation file", data={"filter": FILE_FILTER,
                                                                                      "side": side},
                                      on_answer=lambda p: self.set_file(side, p or "")))
            return
        dlg = QFileDialog(self, title, "", FILE_FILTER)
        dlg.setFileMode(QFileDialog.FileMode.ExistingFile)
        dlg.fileSelected.connect(lambda p: self.set_file(side, p))
        dlg.finished.connect(dlg.deleteLater)
        dlg.open()

    def as_of(self) -> date:
        q = self.as_of_edit.date()
        return date(q.year(), q.month(), q.day())

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, review: bool = False) -> None:
        """Read both headers, ask for the mappings that are missing (all with ``review``), then match."""
        if self.tasks is None or self.store is None or self._job is not None:
            return
        problem = ("Source: name who sent their file" if not self.source else
                   "Our file: choose it" if not self.paths["ours"] else
                   "Their file: choose it" if not self.paths["theirs"] else "")
        if problem:
            self._say(problem, "error")
            return
        self._pending = {"kind": self.kind, "source": self.source, "as_of": self.as_of(), "review": review,
                         "paths": dict(self.paths), "mappings": {}}
        self._busy(True, "Reading the files' columns…")
        self._job = self.tasks.run(inspect_files, self.store, self.kind, self.source, self.paths["ours"],
                                   self.paths["theirs"], on_done=self._inspected, on_error=self._failed,
                                   name="recon headers")

    def _inspected(self, info: dict[str, Any]) -> None:
        self._job = None
        self._pending["info"] = info
        self._next_mapping()

    def _next_mapping(self) -> None:
        p = self._pending
        for side in SIDES:
            if side in p["mappings"]:
                continue
            i = p["info"][side]
            if i["missing"] or p["review"]:
                self._ask_mapping(side, i)
                return
            p["mappings"][side] = i["mapping"]
        self._match()

    def _ask_mapping(self, side: str, info: dict[str, Any]) -> None:
        dlg = MappingDialog(self._pending["kind"], info["source"], info["path"], info["columns"], info["mapping"],
                            self)
        self.mapping_dialog = dlg

        def finished(code: int) -> None:
            self.mapping_dialog = None
            dlg.deleteLater()
            if code != QDialog.DialogCode.Accepted:
                self._busy(False, "Cancelled: no mapping for " + ("our file" if side == "ours" else "their file"))
                return
            self._pending["mappings"][side] = dlg.mapping()
            self._next_mapping()

        dlg.finished.connect(finished)
        self.progress.setFormat(f"Columns of {Path(info['path']).name}…")
        dlg.open()
        self.mapping_requested.emit(side)

    def _match(self) -> None:
        assert self.tasks is not None and self.user is not None
        p = self._pending
        self.progress.setFormat("Matching…")
        self._job = self.tasks.run(_recon_task, self.store, self.user, p["kind"], p["source"],
                                   p["paths"]["ours"], p["paths"]["theirs"], p["as_of"], p["mappings"]["ours"],
                                   p["mappings"]["theirs"], on_done=self._done, on_error=self._failed,
                                   on_progress=self._progress, name="reconcile")

    def _progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(f"{text} %p%")

    def _done(self, run: ReconRun) -> None:
        self._job = None
        self.last_run = run
        self._busy(False, "")
        self._say(run.summary, "ok" if run.new else "info")
        self.reconciled.emit(run)
        self.refresh()

    def _failed(self, e: BaseException) -> None:
        self._job = None
        text = str(e) if isinstance(e, ReconError | BreakError) else error_text(e)
        self._busy(False, "")
        self._say(text, "error")
        self.failed.emit(text)

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job = None
        if self.mapping_dialog is not None:
            self.mapping_dialog.reject()
        if self.cancel_button.isEnabled():
            self._busy(False, "Cancelled: nothing recorded")

    def _busy(self, on: bool, text: str) -> None:
        self.progress.setVisible(on)
        self.progress.setValue(0)
        self.progress.setFormat(text)
        may = self.user is not None and may_work(self.user)
        self.run_button.setEnabled(not on and may)
        self.columns_button.setEnabled(not on and may)
        for b, tip in ((self.run_button, "match the two files and record the breaks"),
                       (self.columns_button, "review or change how each file's columns map to ours")):
            b.setToolTip(tip if may or self.user is None else WHO_MAY)
        self.cancel_button.setEnabled(on)
        if on:
            self.result.setVisible(False)
        elif text:
            self._say(text, "warn")

    def _say(self, text: str, tone: str) -> None:
        set_tone(self.result, text, tone)

    # ------------------------------------------------------------------ breaks
    def current_table(self) -> BreaksTable:
        return self.aged if self.tabs.currentWidget() is self.aged else self.breaks

    def selected_break(self) -> dict[str, Any] | None:
        w = self.tabs.currentWidget()
        return w.selected() if isinstance(w, BreaksTable) else None


__all__ = ["ReconDock"]
