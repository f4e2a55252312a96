"""Bulk limit update with review (issue 4): upload a financing-limits file → an open batch → review its
rows (edit an amount, remove a row, restore it) → submit the batch as change requests.

The file's problems (row, column, value, reason) are listed above the rows; a file already in an
open or submitted batch is refused with a message. Every store call — upload, row edits, submit,
discard, the list of open batches — runs in the task runner, one at a time, and its result or
refusal is shown inline. The dialog never runs a nested event loop: show it with `show()`; tests
drive it through `load_file`, `open_batch`, `select_account`, `edit_selected`, `remove_selected`,
`restore_selected`, `submit` and `discard` instead of the file pickers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from services import imports
from services import limit_batches as lb
from services.imports import ImportFileError
from widgets.credit_parts import OVER_TEXT, fit_and_stretch, stretch_column
from widgets.formatting import money
from widgets.records import ERROR_COLOUR, MUTED_TEXT, Field, RecordTableModel, error_text, set_tone
from widgets.tables import make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.store import Store

PROBLEM_HEADERS = ("Row", "Column", "Value", "Reason")


# ---------------------------------------------------------------------- task functions (worker thread)
def upload(store: Store, user: User, path: str) -> tuple[lb.BatchResult, list[dict[str, Any]]]:
    res = lb.create_batch(store, user, path)
    return res, ([] if res.batch_id is None else lb.batch_rows(store, res.batch_id))


def read_batch(store: Store, batch_id: int) -> list[dict[str, Any]]:
    return lb.batch_rows(store, batch_id)


def change_row(store: Store, user: User, action: str, row_id: int, batch_id: int, amount: float | None
               ) -> list[dict[str, Any]]:
    """Edit, remove or restore one row, then the batch's rows as they now are."""
    if action == "edit":
        assert amount is not None
        lb.edit_row(store, user, row_id, amount)
    elif action == "remove":
        lb.remove_row(store, user, row_id)
    else:
        lb.restore_row(store, user, row_id)
    return lb.batch_rows(store, batch_id)


def parse_amount(text: str) -> tuple[float | None, str]:
    """(amount, "") for an acceptable new limit in the row editor, else (None, why not)."""
    t = text.strip().replace(",", "").replace("_", "")
    if not t:
        return None, "Enter the new limit."
    try:
        v = float(t)
    except ValueError:
        return None, f"“{text.strip()}” is not a number."
    if not math.isfinite(v) or v < 0:
        return None, "A financing limit must be a finite amount ≥ 0."
    return v, ""


def _status(r: dict[str, Any]) -> str:
    if r["request_id"] is not None:
        return f"request #{r['request_id']}"
    if r["removed"]:
        return "removed"
    return "new client" if r["current"] is None else ("unchanged" if r["change"] == 0 else "")


class LimitBatchDialog(QDialog):
    """Upload, review and submit a bulk financing-limit batch."""

    loaded = Signal(int)  # the batch shown (after an upload or opening one)
    rows_changed = Signal()  # an edit / remove / restore was stored
    batch_submitted = Signal(list)  # the change-request ids
    discarded = Signal(int)
    failed = Signal(str)  # an inline refusal or error

    def __init__(self, store: Store, user: User, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Bulk financing-limit update")
        self.resize(900, 600)
        self.store, self.user, self.tasks = store, user, tasks
        self.batch_id: int | None = None
        self.submitted_ids: list[int] = []
        self.rows: list[dict[str, Any]] = []
        self._task: Task | None = None  # the one store action at a time (upload, edit, submit, …)
        self._list_task: Task | None = None  # the open-batches list (read only, beside it)

        self.batch_combo = QComboBox()
        self.batch_combo.setMinimumWidth(260)
        self.batch_combo.activated.connect(self._batch_picked)
        self.upload_button = QPushButton("Upload file…")
        self.upload_button.clicked.connect(self._pick_upload)
        self.template_button = QPushButton("Download template…")
        self.template_button.clicked.connect(self._pick_template)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.hide()

        self.problems_caption = QLabel("Problems in the file (these rows are not in the batch)")
        self.problems_caption.setStyleSheet("font-weight: 600")
        self.problems = QTableWidget(0, len(PROBLEM_HEADERS))
        self.problems.setHorizontalHeaderLabels(list(PROBLEM_HEADERS))
        self.problems.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.problems.verticalHeader().setVisible(False)
        self.problems.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)

        self.model = RecordTableModel([
            Field("Row", "row_no", "number", fmt=lambda v: f"{int(v)}"),
            Field("Account", "account"),
            Field("Client", "client"),
            Field("Name", "client_name"),
            Field("Current limit", "current", "number", fmt=lambda v: "none" if v != v else money(v)),
            Field("New limit", "amount", "number"),
            Field("Change", "change", "number", fmt=lambda v: f"+{money(v)}" if v > 0 else money(v),
                  foreground=lambda v: OVER_TEXT if v < 0 else None),
            Field("Status", "status"),
        ], self, key="id", row_foreground=lambda r: MUTED_TEXT if r.get("removed") else None)
        self.view = make_table(self.model)
        stretch_column(self.view, 3)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

        self.amount_edit = QLineEdit()
        self.amount_edit.setPlaceholderText("new limit (HKD)")
        self.amount_edit.textChanged.connect(lambda _t: self._update())
        self.amount_edit.returnPressed.connect(self.edit_selected)
        self.edit_button = QPushButton("Set amount")
        self.edit_button.clicked.connect(self.edit_selected)
        self.remove_button = QPushButton("Remove row")
        self.remove_button.clicked.connect(self.remove_selected)
        self.restore_button = QPushButton("Restore row")
        self.restore_button.clicked.connect(self.restore_selected)
        self.row_validation = QLabel("")
        self.row_validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.summary = QLabel("")
        self.summary.setProperty("role", "caption")

        self.reason = QLineEdit()
        self.reason.setPlaceholderText("Reason for the change requests (required; shown to the checker)")
        self.reason.textChanged.connect(lambda _t: self._update())
        self.submit_button = QPushButton("Submit batch")
        self.submit_button.clicked.connect(self.submit)
        self.discard_button = QPushButton("Discard batch")
        self.discard_button.clicked.connect(self.discard)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        for b in (self.upload_button, self.template_button, self.edit_button, self.remove_button,
                  self.restore_button, self.submit_button, self.discard_button, self.close_button):
            b.setAutoDefault(False)

        top = QHBoxLayout()
        top.addWidget(QLabel("Open batches:"))
        top.addWidget(self.batch_combo, 1)
        top.addWidget(self.upload_button)
        top.addWidget(self.template_button)
        editor = QHBoxLayout()
        editor.addWidget(QLabel("Selected row:"))
        editor.addWidget(self.amount_edit)
        editor.addWidget(self.edit_button)
        editor.addWidget(self.remove_button)
        editor.addWidget(self.restore_button)
        editor.addWidget(self.row_validation, 1)
        editor.addWidget(self.summary)
        bottom = QHBoxLayout()
        bottom.addWidget(self.reason, 1)
        bottom.addWidget(self.submit_button)
        bottom.addWidget(self.discard_button)
        bottom.addWidget(self.close_button)

        problems_box = QWidget()
        pl = QVBoxLayout(problems_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.problems_caption)
        pl.addWidget(self.problems, 1)
        rows_box = QWidget()
        rl = QVBoxLayout(rows_box)
        rl.setContentsMargins(0, 0, 0, 0)
        self.rows_caption = QLabel("Rows of the batch")
        self.rows_caption.setStyleSheet("font-weight: 600")
        rl.addWidget(self.rows_caption)
        rl.addWidget(self.view, 1)
        rl.addLayout(editor)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(problems_box)
        split.addWidget(rows_box)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        self.problems_box = problems_box
        problems_box.hide()

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.message)
        lay.addWidget(split, 1)
        lay.addLayout(bottom)
        set_tone(self.message, "Upload a financing-limits file (Download template… shows the layout), or pick "
                               "a batch still under review.", "info")
        self._update()
        self.refresh_batches()

    # ------------------------------------------------------------------ public API
    @property
    def busy(self) -> bool:
        return self._task is not None

    def refresh_batches(self) -> None:
        """Re-read the list of open batches (worker)."""
        if self._list_task is not None:
            self._list_task.cancel()
        self._list_task = self.tasks.run(lb.batches, self.store, "open", on_done=self._batches_loaded,
                                         on_error=self._list_failed, name="open limit batches")

    def load_file(self, path: str | Path) -> None:
        """Upload ``path`` as a new batch (worker); `loaded` or `failed` follows."""
        self._run(upload, self.store, self.user, str(path), done=self._uploaded,
                  what=f"Checking {Path(path).name}…")

    def open_batch(self, batch_id: int) -> None:
        self._run(read_batch, self.store, batch_id, done=lambda rows: self._show_batch(batch_id, rows, None),
                  what=f"Opening batch #{batch_id}…")

    def download_template(self, path: str | Path) -> None:
        self._run(imports.write_template, "financing-limits", str(path),
                  done=lambda _r: set_tone(self.message, f"Template saved to {path}", "info"), what="")

    def select_account(self, code: str) -> bool:
        for row in range(self.model.rowCount()):
            rec = self.model.record_at(row)
            if rec is not None and rec["account"] == code:
                self.view.selectRow(row)
                return True
        return False

    def selected(self) -> dict[str, Any] | None:
        idx = self.view.selectionModel().currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    def edit_selected(self) -> None:
        rec = self.selected()
        amount, why = parse_amount(self.amount_edit.text())
        if rec is None or self.batch_id is None or self.busy:
            return
        if amount is None:
            self.row_validation.setText(why)
            return
        self._change("edit", rec, amount, f"row {rec['row_no']}: {rec['account']} → {money(amount)}")

    def remove_selected(self) -> None:
        rec = self.selected()
        if rec is not None and self.batch_id is not None and not self.busy and not rec["removed"]:
            self._change("remove", rec, None, f"row {rec['row_no']} ({rec['account']}) removed")

    def restore_selected(self) -> None:
        rec = self.selected()
        if rec is not None and self.batch_id is not None and not self.busy and rec["removed"]:
            self._change("restore", rec, None, f"row {rec['row_no']} ({rec['account']}) restored")

    def submit(self) -> None:
        """Submit the rows left in the batch as change requests (worker); `batch_submitted` follows."""
        reason = self.reason.text().strip()
        if self.batch_id is None or self.busy or self.submitted_ids:
            return
        if not reason:
            set_tone(self.message, "Give a reason for the batch: the checker decides on it.")
            self.reason.setFocus()
            return
        self._run(lb.submit_batch, self.store, self.user, self.batch_id, reason, done=self._submitted,
                  what=f"Submitting batch #{self.batch_id}…")

    def discard(self) -> None:
        if self.batch_id is None or self.busy or self.submitted_ids:
            return
        bid = self.batch_id
        self._run(lb.discard_batch, self.store, self.user, bid, done=lambda _r: self._discarded(bid),
                  what=f"Discarding batch #{bid}…")

    def problem_rows(self) -> list[tuple[str, ...]]:
        def cell(r: int, c: int) -> str:
            item = self.problems.item(r, c)
            return item.text() if item is not None else ""

        return [tuple(cell(r, c) for c in range(self.problems.columnCount())) for r in range(self.problems.rowCount())]

    # ------------------------------------------------------------------ Qt overrides
    def done(self, code: int) -> None:
        for task in (self._task, self._list_task):
            if task is not None:
                task.cancel()
        self._task = self._list_task = None
        super().done(code)

    # ------------------------------------------------------------------ pickers
    def _pick_upload(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Upload financing limits", "", "Excel or CSV (*.xlsx *.xlsm *.csv)")
        if path:
            self.load_file(path)

    def _pick_template(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save template", "financing-limits-template.xlsx",
                                              "Excel workbook (*.xlsx)")
        if path:
            self.download_template(path)

    def _batch_picked(self, index: int) -> None:
        bid = self.batch_combo.itemData(index)
        if isinstance(bid, int) and bid != self.batch_id:
            self.open_batch(bid)

    # ------------------------------------------------------------------ worker plumbing
    def _run(self, fn: Any, *args: Any, done: Any, what: str) -> None:
        if self._task is not None:
            return
        if what:
            set_tone(self.message, what, "info")
        self._task = self.tasks.run(fn, *args, on_done=lambda r: self._finished(done, r), on_error=self._failed,
                                    name="limit batch")
        self._update()

    def _finished(self, done: Any, result: Any) -> None:
        self._task = None
        done(result)
        self._update()

    def _failed(self, e: BaseException) -> None:
        self._task = None
        text = str(e) if isinstance(e, ImportFileError) else error_text(e)
        set_tone(self.message, text)
        self._update()
        self.failed.emit(text)

    def _list_failed(self, e: BaseException) -> None:
        self._list_task = None
        set_tone(self.message, f"Could not list the open batches: {error_text(e)}")

    def _change(self, action: str, rec: dict[str, Any], amount: float | None, what: str) -> None:
        assert self.batch_id is not None
        bid = self.batch_id

        def stored(rows: list[dict[str, Any]]) -> None:
            self._set_rows(rows)
            set_tone(self.message, what.capitalize(), "ok")
            self.rows_changed.emit()

        self._run(change_row, self.store, self.user, action, int(rec["id"]), bid, amount, done=stored, what="")

    # ------------------------------------------------------------------ results
    def _batches_loaded(self, batches: list[dict[str, Any]]) -> None:
        self._list_task = None
        self.batch_combo.clear()
        self.batch_combo.addItem("— choose an open batch, or upload a file —", None)
        for b in batches:
            self.batch_combo.addItem(f"#{b['id']} {b['file_name']} · {b['n_kept']}/{b['n_rows']} rows · "
                                     f"{b['created_by']}", int(b["id"]))
        idx = self.batch_combo.findData(self.batch_id) if self.batch_id is not None else 0
        self.batch_combo.setCurrentIndex(max(0, idx))

    def _uploaded(self, result: tuple[lb.BatchResult, list[dict[str, Any]]]) -> None:
        res, rows = result
        self._show_problems(res.problems)
        if res.batch_id is None:
            self.batch_id = None
            self._set_rows([])
            set_tone(self.message, f"{res.file_name}: no valid row in {res.rows} — nothing to review "
                                   f"({len(res.problems)} problems listed).")
            self.failed.emit(self.message.text())
            return
        self._show_batch(res.batch_id, rows, res)

    def _show_batch(self, batch_id: int, rows: list[dict[str, Any]], res: lb.BatchResult | None) -> None:
        self.batch_id = batch_id
        self.submitted_ids = [r["request_id"] for r in rows if r["request_id"] is not None]
        if res is None:
            self._show_problems([])
            set_tone(self.message, f"Batch #{batch_id}: {len(rows)} rows", "info")
        else:
            n_bad = len(res.problems)
            set_tone(self.message, f"Batch #{batch_id} from {res.file_name}: {res.valid} of {res.rows} rows "
                                   f"to review" + (f"; {n_bad} problem{'s' if n_bad != 1 else ''} listed above"
                                                  if n_bad else ""), "ok" if not n_bad else "warn")
        self._set_rows(rows)
        self._update()
        self.loaded.emit(batch_id)
        self.refresh_batches()

    def _show_problems(self, problems: list[dict[str, Any]]) -> None:
        self.problems.setRowCount(len(problems))
        for r, p in enumerate(problems):
            cells = (str(p["row"]), str(p["column"]), "" if p["value"] is None else str(p["value"]), str(p["message"]))
            for c, v in enumerate(cells):
                item = QTableWidgetItem(v)
                if c == 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.problems.setItem(r, c, item)
        for c in range(len(PROBLEM_HEADERS) - 1):
            self.problems.resizeColumnToContents(c)
        self.problems_box.setVisible(bool(problems))

    def _set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.model.set_records([{**r, "status": _status(r)} for r in rows])
        if rows:
            fit_and_stretch(self.view, 3, 200)
        self._fill_editor()

    def _submitted(self, ids: list[int]) -> None:
        self.submitted_ids = list(ids)
        n = len(ids)
        set_tone(self.message, f"Batch #{self.batch_id} submitted: {n} change request{'s' if n != 1 else ''} "
                               f"#{ids[0]}–#{ids[-1]} awaiting approval", "ok")
        bid = self.batch_id

        def reread(rows: list[dict[str, Any]]) -> None:
            self._set_rows(rows)
            self.refresh_batches()

        if bid is not None:
            self._run(read_batch, self.store, bid, done=reread, what="")
        self.batch_submitted.emit(list(ids))

    def _discarded(self, batch_id: int) -> None:
        self.batch_id = None
        self._set_rows([])
        self._show_problems([])
        set_tone(self.message, f"Batch #{batch_id} discarded: no request was made.", "info")
        self.refresh_batches()
        self.discarded.emit(batch_id)

    # ------------------------------------------------------------------ state
    def _current_changed(self, _current: QModelIndex, _previous: QModelIndex) -> None:
        self._fill_editor()

    def _fill_editor(self) -> None:
        rec = self.selected()
        self.amount_edit.blockSignals(True)
        self.amount_edit.setText("" if rec is None else f"{rec['amount']:,.2f}")
        self.amount_edit.blockSignals(False)
        self._update()

    def _update(self) -> None:
        idle = self._task is None
        open_batch = self.batch_id is not None and not self.submitted_ids
        rec = self.selected()
        amount, why = parse_amount(self.amount_edit.text())
        typed = bool(self.amount_edit.text().strip())
        self.row_validation.setText(why if rec is not None and typed else "")
        self.amount_edit.setEnabled(open_batch and rec is not None and not rec["removed"])
        self.edit_button.setEnabled(idle and open_batch and rec is not None and not rec["removed"]
                                    and amount is not None and amount != rec["amount"])
        self.remove_button.setEnabled(idle and open_batch and rec is not None and not rec["removed"])
        self.restore_button.setEnabled(idle and open_batch and rec is not None and bool(rec["removed"]))
        kept = sum(1 for r in self.rows if not r["removed"])
        removed = len(self.rows) - kept
        self.summary.setText(f"{kept} row{'s' if kept != 1 else ''} in the batch"
                             + (f" · {removed} removed" if removed else "") if self.rows else "")
        self.reason.setEnabled(open_batch)
        self.submit_button.setText(f"Submit batch ({kept} request{'s' if kept != 1 else ''})" if open_batch
                                   else "Submit batch")
        self.submit_button.setEnabled(idle and open_batch and kept > 0 and bool(self.reason.text().strip()))
        self.discard_button.setEnabled(idle and open_batch)
        self.upload_button.setEnabled(idle)
        self.template_button.setEnabled(idle)
        self.batch_combo.setEnabled(idle)
