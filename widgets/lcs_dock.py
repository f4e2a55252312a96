"""The LCS test dock (issue 6): the SFC liquid-capital-shortfall test of RISK_METHODS §4.

LC and RLC are checked as they are typed (numbers, commas allowed; the message names the field).
Run tests the store's book now in a worker with progress and stores the run with its inputs and
book (`risk_runs.run_lcs`); the dock then shows the stored run — ELC, LCS, buffer and PASS/FAIL, the
totals of the 30% and 50% screens, the client shortfall list (sorted and filtered in numpy) with the
selected account's long positions recomputed from the run's own book, and the top-10 stocks. The
history lists past runs: reopen one, re-run it on its stored inputs and book, or export it to xlsx.

Nothing here touches the database or the engine on the GUI thread: every call goes through the
task runner and comes back as a `services.lcs_view.LcsRunView`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.lazy import lazy_module
from widgets.figures import FigureCard
from widgets.formatting import money
from widgets.lcs_tables import (
    FAIL_COLOUR,
    PASS_COLOUR,
    account_fields,
    history_fields,
    parse_amount,
    percent,
    position_fields,
    top10_fields,
)
from widgets.records import ERROR_COLOUR, CoalescedLoad, RecordTableModel, error_text, hk_time, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services import lcs_view, risk_runs
    from services.auth import User
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    lcs_view = lazy_module("services.lcs_view")
    risk_runs = lazy_module("services.risk_runs")

BAD_FIELD = f"border: 1px solid {ERROR_COLOUR}"


def _caption(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "caption")
    return label


class LcsDock(QWidget):
    """Inputs, result header, client shortfalls with positions, top-10 stocks, history."""

    shown = Signal(int)  # the run id now on screen
    history_loaded = Signal()
    failed = Signal(str)
    exported = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.shown_run: lcs_view.LcsRunView | None = None
        self.history: list[dict[str, Any]] = []
        self._job: Task | None = None
        self._export_task: Task | None = None
        self._opened_latest = False
        self._codes = np.zeros(0, "<U32")
        self._shortfall = np.zeros(0)
        self._fitted: set[str] = set()
        self._history = CoalescedLoad(self._start_history, self._history_done, self._history_failed)
        self._build_ui()
        self._update_inputs()

    # ------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        lay.setSpacing(4)
        bar = QHBoxLayout()
        self.lc_edit, self.rlc_edit = QLineEdit(), QLineEdit()
        for name, edit in (("LC", self.lc_edit), ("RLC", self.rlc_edit)):
            label = QLabel(f"&{name}")
            label.setBuddy(edit)
            label.setToolTip("liquid capital" if name == "LC" else "required liquid capital")
            edit.setPlaceholderText("e.g. 300,000,000" if name == "LC" else "e.g. 120,000,000")
            edit.setMaximumWidth(170)
            edit.textChanged.connect(self._update_inputs)
            edit.returnPressed.connect(self.run_test)
            bar.addWidget(label)
            bar.addWidget(edit)
        self.run_button = QPushButton("&Run LCS test")
        self.run_button.setAutoDefault(False)
        self.run_button.clicked.connect(self.run_test)
        bar.addWidget(self.run_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(260)
        self.progress.hide()
        bar.addWidget(self.progress)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        bar.addWidget(self.validation)
        self.message = QLabel("")
        self.message.hide()
        bar.addWidget(self.message)
        self.run_caption = _caption("No LCS run yet")
        self.run_caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.run_caption.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar.addWidget(self.run_caption, 1)
        lay.addLayout(bar)

        cards = QHBoxLayout()
        self.cards = {k: FigureCard(cap, tip) for k, cap, tip in (
            ("elc", "ELC", "excess liquid capital = LC − RLC"),
            ("lcs", "LCS", "liquid-capital shortfall: Σ per-account shortfall"),
            ("buffer", "Buffer", "0.5·ELC − LCS; the test passes when it is ≥ 0"),
            ("result", "Result", "PASS when the buffer is ≥ 0"),
            ("total_shortfall_30", "30% screen total", "Σ max(0, loan − 0.7·RV)"),
            ("total_shortfall_50", "50% screen total", "Σ max(0, loan − 0.5·RV)"))}
        for card in self.cards.values():
            for label in (card.caption, card.value):  # narrow docks clip a figure rather than widen the window
                label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            card.setMinimumWidth(90)
            cards.addWidget(card, 1)
        lay.addLayout(cards)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self._build_shortfalls(), "Client shortfalls")
        self.top10_model = RecordTableModel(top10_fields(), self)
        self.top10_view = make_table(self.top10_model)
        self.top10_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.top10_view.horizontalHeader().setStretchLastSection(False)  # a PASS/FAIL badge, not a banner
        self.tabs.addTab(self.top10_view, "Top 10 stocks")
        self.tabs.addTab(self._build_history(), "History")
        lay.addWidget(self.tabs, 1)

    def _build_shortfalls(self) -> QWidget:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(4)
        self.account_model = RecordTableModel(account_fields(), self)
        bar = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("filter account")
        self.search.setClearButtonEnabled(True)
        self.search.setMaximumWidth(220)
        self.search.textChanged.connect(self.account_model.refilter)
        bar.addWidget(self.search)
        self.shortfall_only = QCheckBox("With a shortfall only")
        self.shortfall_only.toggled.connect(self.account_model.refilter)
        bar.addWidget(self.shortfall_only)
        bar.addStretch(1)
        self.account_count = _caption("")
        bar.addWidget(self.account_count)
        lay.addLayout(bar)
        self.account_model.set_filter(self._visible_accounts)
        self.account_model.rowsInserted.connect(lambda *_: self._count_accounts())
        self.account_model.rowsRemoved.connect(lambda *_: self._count_accounts())
        self.account_view = make_table(self.account_model)
        self.account_view.sortByColumn(4, Qt.SortOrder.DescendingOrder)
        self.account_view.selectionModel().currentRowChanged.connect(self._account_changed)
        self.position_model = RecordTableModel(position_fields(), self)
        self.position_view = make_table(self.position_model)
        self.position_view.sortByColumn(7, Qt.SortOrder.DescendingOrder)
        self.position_caption = _caption("Positions — select an account")
        self.position_caption.setWordWrap(True)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(2)
        rl.addWidget(self.position_caption)
        rl.addWidget(self.position_view, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.account_view)
        split.addWidget(right)
        split.setSizes([560, 520])
        lay.addWidget(split, 1)
        return page

    def _build_history(self) -> QWidget:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(4)
        bar = QHBoxLayout()
        self.open_button = QPushButton("&Open")
        self.open_button.setToolTip("show the selected run's results (as stored)")
        self.open_button.clicked.connect(self.open_selected)
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setToolTip("run again on the stored inputs and book: a new run, the same numbers")
        self.rerun_button.clicked.connect(self.rerun_selected)
        self.export_button = QPushButton("Export to Excel…")
        self.export_button.clicked.connect(lambda: self.export_selected())
        self.history_refresh = QPushButton("Refresh")
        self.history_refresh.clicked.connect(self.refresh)
        for b in (self.open_button, self.rerun_button, self.export_button):
            b.setAutoDefault(False)
            bar.addWidget(b)
        bar.addStretch(1)
        self.history_status = _caption("")
        bar.addWidget(self.history_status)
        bar.addWidget(self.history_refresh)
        lay.addLayout(bar)
        self.history_model = RecordTableModel(history_fields(), self)
        self.history_view = make_table(self.history_model)
        self.history_view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        self.history_view.doubleClicked.connect(lambda _i: self.open_selected())
        self.history_view.selectionModel().currentRowChanged.connect(lambda *_: self._update_history_buttons())
        lay.addWidget(self.history_view, 1)
        self._update_history_buttons()
        return page

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self._update_inputs()
        self.refresh()

    def stop(self) -> None:
        self._history.cancel()
        for t in (self._job, self._export_task):
            if t is not None:
                t.cancel()
        self._job = self._export_task = None

    def refresh(self) -> None:
        """Read the run history again."""
        if self.store is not None and self.tasks is not None:
            self._history.request()

    @property
    def busy(self) -> bool:
        return self._job is not None

    # ------------------------------------------------------------------ inputs and runs
    def inputs(self) -> tuple[tuple[float | None, str], tuple[float | None, str]]:
        return parse_amount("LC", self.lc_edit.text()), parse_amount("RLC", self.rlc_edit.text())

    def _update_inputs(self, *_: Any) -> None:
        (lc, lc_why), (rlc, rlc_why) = self.inputs()
        typed = [bool(e.text().strip()) for e in (self.lc_edit, self.rlc_edit)]
        shown = [w for w, t in ((lc_why, typed[0]), (rlc_why, typed[1])) if w and t]
        self.validation.setText(" ".join(shown))
        self.validation.setVisible(bool(shown))
        self.lc_edit.setStyleSheet(BAD_FIELD if lc_why and typed[0] else "")
        self.rlc_edit.setStyleSheet(BAD_FIELD if rlc_why and typed[1] else "")
        self.run_button.setEnabled(lc is not None and rlc is not None and self._job is None
                                   and self.store is not None)

    def run_test(self) -> None:
        """Run the test on the store's book now (refused inline when LC or RLC is not a number)."""
        (lc, lc_why), (rlc, rlc_why) = self.inputs()
        if lc is None or rlc is None:
            self.validation.setText(" ".join(w for w in (lc_why, rlc_why) if w))
            self.validation.show()
            (self.lc_edit if lc is None else self.rlc_edit).setFocus()
            return
        if self.store is None or self.user is None or self.tasks is None or self._job is not None:
            return
        self._start(lcs_view.run_and_open, (self.store, self.user, lc, rlc),
                    f"LCS test LC {lc:,.0f} RLC {rlc:,.0f}")

    def _start(self, fn: Any, args: tuple[Any, ...], what: str) -> None:
        assert self.tasks is not None
        self.message.hide()
        self.progress.setValue(0)
        self.progress.setFormat(f"{what} %p%")
        self.progress.show()
        self._job = self.tasks.run(fn, *args, on_done=self._shown, on_error=self._failed,
                                   on_progress=self._progressed, name=what)
        self._update_inputs()
        self._update_history_buttons()

    def _progressed(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(fraction * 100))
        if text:
            self.progress.setFormat(f"{text} %p%")

    def _shown(self, view: lcs_view.LcsRunView) -> None:
        self._job = None
        self.progress.hide()
        self.show_view(view)
        self._update_inputs()
        self._update_history_buttons()
        self.refresh()

    def _failed(self, e: BaseException) -> None:
        self._job = None
        self.progress.hide()
        text = str(e) if isinstance(e, ValueError) else error_text(e)  # LcsError, RunError: the user's words
        set_tone(self.message, text)
        self._update_inputs()
        self._update_history_buttons()
        self.failed.emit(text)
        self.refresh()

    # ------------------------------------------------------------------ results
    def show_view(self, view: lcs_view.LcsRunView) -> None:
        """Show one stored run: header, shortfall list, top 10; the inputs take its LC and RLC."""
        self.shown_run = view
        s = view.summary
        for edit, v in ((self.lc_edit, view.lc), (self.rlc_edit, view.rlc)):
            if not edit.text().strip():
                edit.setText(f"{v:,.0f}")
        for key in ("elc", "lcs", "total_shortfall_30", "total_shortfall_50"):
            self.cards[key].set_value(money(s.get(key)) if s.get(key) is not None else "–")
        buf = s.get("buffer")
        self.cards["buffer"].set_value("–" if buf is None else money(buf),
                                       None if buf is None else (PASS_COLOUR if buf >= 0 else FAIL_COLOUR))
        passed = s.get("pass")
        self.cards["result"].set_value("–" if passed is None else ("PASS" if passed else "FAIL"),
                                       None if passed is None else (PASS_COLOUR if passed else FAIL_COLOUR))
        when = f" · book as of {hk_time(view.as_of)}" if view.as_of else ""
        self.run_caption.setText(f"Run #{view.id} · {view.name} · {view.status}{when}"
                                 + (f" · {view.error}" if view.error else ""))
        self.run_caption.setToolTip(self.run_caption.text())
        self._codes = np.array([a["account"] for a in view.accounts] or [""], "<U32")
        self._shortfall = np.array([a["shortfall"] for a in view.accounts] or [0.0])
        self.account_model.set_records(view.accounts)
        self.top10_model.set_records(view.top10)
        for name, table in (("accounts", self.account_view), ("top10", self.top10_view)):
            if name not in self._fitted and table.model().rowCount():
                fit_columns(table, 130)
                self._fitted.add(name)
        self._count_accounts()
        if not self.account_view.currentIndex().isValid() and self.account_model.rowCount():
            self.account_view.selectRow(0)
        self._show_positions()
        self.select_history(view.id)
        self.shown.emit(view.id)

    def _visible_accounts(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        ok = (keys >= 0) & (keys < self._codes.shape[0])
        mask = np.zeros(keys.shape, bool)
        k = keys[ok]
        m = np.ones(k.shape, bool)
        needle = self.search.text().strip().upper()
        if needle:
            m &= np.char.find(np.char.upper(self._codes[k]), needle) >= 0
        if self.shortfall_only.isChecked():
            m &= self._shortfall[k] > 0
        mask[ok] = m
        return mask

    def _count_accounts(self) -> None:
        n, total = self.account_model.rowCount(), len(self.shown_run.accounts) if self.shown_run else 0
        short = int((self._shortfall > 0).sum()) if self.shown_run and self.shown_run.accounts else 0
        self.account_count.setText(f"{n:,} of {total:,} accounts · {short:,} with a shortfall" if total else "")

    def _account_changed(self, _cur: QModelIndex, _prev: QModelIndex) -> None:
        self._show_positions()

    def selected_account(self) -> dict[str, Any] | None:
        idx = self.account_view.currentIndex()
        return self.account_model.record_at(idx.row()) if idx.isValid() else None

    def _show_positions(self) -> None:
        """The selected account's long positions in this run (one account: a few dozen rows)."""
        a = self.selected_account()
        run = self.shown_run
        rows = run.positions.of(a["account"]) if a is not None and run is not None and run.positions else []
        self.position_model.set_records(rows)
        if a is None:
            self.position_caption.setText("Positions — select an account")
        else:
            self.position_caption.setText(
                f"{a['account']} · loan {money(a['loan'])} · RV {money(a['rv'])} · decline {percent(a['decline'])}"
                f" · shortfall {money(a['shortfall'])} · {len(rows)} long position{'s' if len(rows) != 1 else ''}")
        if rows and "positions" not in self._fitted:
            fit_columns(self.position_view, 120)
            self._fitted.add("positions")

    def top10_rows(self) -> list[dict[str, Any]]:
        """The top-10 table as shown, in view order."""
        m = self.top10_model
        return [r for r in (m.record_at(i) for i in range(m.rowCount())) if r is not None]

    def card_text(self, key: str) -> str:
        return self.cards[key].value.text()

    # ------------------------------------------------------------------ history
    def _start_history(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(lcs_view.history, self.store, on_done=on_done, on_error=on_error, name="lcs history")

    def _history_done(self, rows: list[dict[str, Any]]) -> None:
        self.history = rows
        self.history_model.set_records(rows)
        if "history" not in self._fitted and rows:
            fit_columns(self.history_view, 280)
            self._fitted.add("history")
        self.history_status.setStyleSheet("")
        self.history_status.setText(f"{len(rows)} run{'s' if len(rows) != 1 else ''}")
        if self.shown_run is not None:
            self.select_history(self.shown_run.id)
        elif rows and not self._opened_latest and self._job is None:
            self._opened_latest = True  # the latest run on screen when the dock opens
            self.open_run(int(rows[0]["id"]))
        self._update_history_buttons()
        self.history_loaded.emit()

    def _history_failed(self, e: BaseException) -> None:
        self.history_status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.history_status.setText(f"history: {error_text(e)}")

    def select_history(self, run_id: int) -> None:
        row = self.history_model.row_of(run_id)
        if row >= 0:
            self.history_view.selectRow(row)

    def selected_run(self) -> dict[str, Any] | None:
        idx = self.history_view.currentIndex()
        return self.history_model.record_at(idx.row()) if idx.isValid() else None

    def _update_history_buttons(self) -> None:
        r = self.selected_run()
        idle = self._job is None
        self.open_button.setEnabled(idle and r is not None)
        self.rerun_button.setEnabled(idle and r is not None and r["status"] == "done")
        self.export_button.setEnabled(self._export_task is None and r is not None and r["status"] == "done")

    def open_run(self, run_id: int) -> None:
        if self.store is None or self._job is not None:
            return
        self._start(lcs_view.open_run, (self.store, run_id), f"opening run #{run_id}")

    def open_selected(self) -> None:
        r = self.selected_run()
        if r is not None:
            self.open_run(int(r["id"]))

    def rerun_selected(self) -> None:
        r = self.selected_run()
        if r is None or self.store is None or self.user is None or self._job is not None:
            return
        self._start(lcs_view.rerun_and_open, (self.store, self.user, int(r["id"])), f"re-running run #{r['id']}")

    def export_selected(self, path: str | None = None) -> None:
        """The selected run to xlsx (`risk_runs.export_run`); asks for the file when ``path`` is None."""
        r = self.selected_run()
        if r is None or self.store is None or self.tasks is None or self._export_task is not None:
            return
        if path is None:
            self._ask_path(int(r["id"]), lambda p: self.export_selected(p) if p else None)
            return
        run_id = int(r["id"])
        set_tone(self.message, f"exporting run #{run_id}…", "info")
        self._export_task = self.tasks.run(risk_runs.export_run, self.store, run_id, str(path),
                                           on_done=lambda _r: self._exported(run_id, str(path)),
                                           on_error=self._export_failed, name=f"export run #{run_id}")
        self._update_history_buttons()

    def _ask_path(self, run_id: int, on_path: Any) -> None:
        from PySide6.QtWidgets import QFileDialog

        from app.dialogs import DialogRequest, dialogs

        default = f"lcs-run-{run_id}.xlsx"
        service = dialogs()
        if not service.interactive:
            service.ask(DialogRequest("save_file", "Export the LCS run", "Save the run to",
                                      data={"default": default, "filter": "Excel (*.xlsx)"}, on_answer=on_path))
            return
        dlg = QFileDialog(self, "Export the LCS run", default, "Excel (*.xlsx)")
        dlg.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dlg.setDefaultSuffix("xlsx")
        dlg.fileSelected.connect(on_path)
        dlg.finished.connect(dlg.deleteLater)
        dlg.open()

    def _exported(self, run_id: int, path: str) -> None:
        self._export_task = None
        set_tone(self.message, f"run #{run_id} exported to {path}", "ok")
        self._update_history_buttons()
        self.exported.emit(path)

    def _export_failed(self, e: BaseException) -> None:
        self._export_task = None
        set_tone(self.message, f"export failed: {e if isinstance(e, OSError | ValueError) else error_text(e)}")
        self._update_history_buttons()
