"""Bulk import from an Excel template (issue 4, "Excel templates and imports").

Pick a kind, download its template, upload a filled file: it is validated in a worker (progress bar,
Cancel), then the dialog shows "N rows, V valid, P problems", a warning when the same file was
already imported, and the problems (spreadsheet row, column, value, reason), exportable to xlsx.
Nothing is applied until the user gives a reason and submits the valid rows — and then only as
four-eyes change requests (`services.imports.apply_rows`).

The dialog never runs a nested event loop: show it with `show()` / `open()`. Tests drive it through
`download_template`, `load_file`, `export_problems` and `submit` instead of the file pickers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.tasks import Task, TaskRunner
from services import excel, imports
from services.imports import ImportFileError, ImportReport
from widgets.records import error_text, set_tone

PROBLEM_HEADERS = ("Row", "Column", "Value", "Reason")


def _validate(store: Any, kind: str, path: str, task: Task) -> ImportReport:
    def progress(fraction: float) -> None:
        task.check()  # Cancel stops the row loop at the next report
        task.progress(fraction, "Checking rows…")

    return imports.validate_file(store, kind, path, progress=progress)


def _apply(store: Any, user: Any, report: ImportReport, reason: str) -> ImportReport:
    return imports.apply_rows(store, user, report, reason)


class ImportDialog(QDialog):
    """Template download, upload + validation, problem list and submission as change requests."""

    validated = Signal(object)   # ImportReport after a successful check
    failed = Signal(str)         # an inline error (unreadable file, refused submission, …)
    submitted = Signal(list)     # the change-request ids created

    def __init__(self, store: Any, user: Any, tasks: TaskRunner, kind: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import from Excel")
        self.resize(720, 520)
        self._store, self._user, self._tasks = store, user, tasks
        self._task: Task | None = None
        self._busy = ""  # "validate" | "apply" | ""
        self.report: ImportReport | None = None

        self.kind_combo = QComboBox()
        for name, k in imports.KINDS.items():
            self.kind_combo.addItem(f"{k.title} ({name})", name)
        if kind is not None:
            idx = self.kind_combo.findData(kind)
            if idx < 0:
                raise ValueError(f"unknown import kind {kind!r}")
            self.kind_combo.setCurrentIndex(idx)
        self.kind_combo.currentIndexChanged.connect(lambda _i: self._reset())
        self.template_button = QPushButton("Download template…")
        self.template_button.clicked.connect(self._pick_template)
        self.upload_button = QPushButton("Upload…")
        self.upload_button.clicked.connect(self._pick_upload)

        self.file_label = QLabel("")
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        self.summary = QLabel("")
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setVisible(False)

        self.problems = QTableWidget(0, len(PROBLEM_HEADERS))
        self.problems.setHorizontalHeaderLabels(list(PROBLEM_HEADERS))
        self.problems.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.problems.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.problems.verticalHeader().setVisible(False)
        self.problems.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.export_button = QPushButton("Export problems…")
        self.export_button.clicked.connect(self._pick_export)

        self.reason = QLineEdit()
        self.reason.setPlaceholderText("Reason for the change requests (required)")
        self.reason.textChanged.connect(lambda _t: self._update_buttons())
        self.submit_button = QPushButton("Submit 0 valid rows as change requests")
        self.submit_button.clicked.connect(self.submit)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)

        top = QHBoxLayout()
        top.addWidget(QLabel("Kind:"))
        top.addWidget(self.kind_combo, 1)
        top.addWidget(self.template_button)
        top.addWidget(self.upload_button)
        busy = QHBoxLayout()
        busy.addWidget(self.progress, 1)
        busy.addWidget(self.cancel_button)
        probs = QHBoxLayout()
        probs.addWidget(QLabel("Problems"))
        probs.addStretch(1)
        probs.addWidget(self.export_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.reason, 1)
        bottom.addWidget(self.submit_button)
        bottom.addWidget(self.close_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.file_label)
        lay.addLayout(busy)
        lay.addWidget(self.message)
        lay.addWidget(self.summary)
        lay.addWidget(self.warning)
        lay.addLayout(probs)
        lay.addWidget(self.problems, 1)
        lay.addLayout(bottom)
        self._reset()

    # ------------------------------------------------------------------ public API
    @property
    def kind(self) -> str:
        return str(self.kind_combo.currentData())

    @property
    def busy(self) -> bool:
        return bool(self._busy)

    def download_template(self, path: str | Path) -> None:
        """Write the current kind's template to ``path`` (errors shown inline)."""
        try:
            imports.write_template(self.kind, path)
        except (OSError, ImportFileError) as e:
            self._error(f"Could not write the template: {e}")
            return
        self._info(f"Template saved to {path}")

    def load_file(self, path: str | Path) -> None:
        """Validate ``path`` in the worker; `validated` or `failed` follows."""
        self.cancel()
        self._reset()
        self.file_label.setText(str(path))
        self._busy = "validate"
        self.progress.setValue(0)
        self._task = self._tasks.run(_validate, self._store, self.kind, str(path), on_done=self._validated,
                                     on_error=self._failed, on_progress=self._progressed, name="import.validate")
        self._update_buttons()

    def export_problems(self, path: str | Path) -> None:
        """Write the problem list (row, column, value, reason) to an xlsx file."""
        if self.report is None:
            return
        rows = [(e["row"], e["column"], "" if e["value"] is None else e["value"], e["message"])
                for e in self.report.errors]
        try:
            excel.write_table(path, "Problems", PROBLEM_HEADERS, rows)
        except OSError as e:
            self._error(f"Could not export the problems: {e}")
            return
        self._info(f"{len(rows)} problems exported to {path}")

    def submit(self) -> None:
        """Submit the valid rows as change requests in the worker; `submitted` follows."""
        rep = self.report
        reason = self.reason.text().strip()
        if rep is None or not rep.valid_rows or not reason or self._busy or rep.applied:
            return
        self._busy = "apply"
        self.progress.setRange(0, 0)  # indeterminate while submitting
        self._task = self._tasks.run(_apply, self._store, self._user, rep, reason, on_done=self._applied,
                                     on_error=self._failed, name="import.apply")
        self._update_buttons()

    def cancel(self) -> None:
        """Stop a running check (its late result is dropped by the runner)."""
        if self._task is not None and not self._task.done:
            self._task.cancel()
        self._task = None
        if self._busy:
            self._busy = ""
            self._info("Cancelled.")
        self.progress.setRange(0, 100)
        self._update_buttons()

    def problem_rows(self) -> list[tuple[str, ...]]:
        """The problems table as shown (row, column, value, reason)."""
        def cell(r: int, c: int) -> str:
            item = self.problems.item(r, c)
            return item.text() if item is not None else ""

        return [tuple(cell(r, c) for c in range(self.problems.columnCount())) for r in range(self.problems.rowCount())]

    # ------------------------------------------------------------------ Qt overrides
    def done(self, code: int) -> None:
        self.cancel()
        super().done(code)

    # ------------------------------------------------------------------ file pickers
    def _pick_template(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save template", f"{self.kind}-template.xlsx",
                                              "Excel workbook (*.xlsx)")
        if path:
            self.download_template(path)

    def _pick_upload(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Upload import file", "",
                                              "Excel or CSV (*.xlsx *.xlsm *.csv)")
        if path:
            self.load_file(path)

    def _pick_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export problems", f"{self.kind}-problems.xlsx",
                                              "Excel workbook (*.xlsx)")
        if path:
            self.export_problems(path)

    # ------------------------------------------------------------------ worker callbacks
    def _progressed(self, fraction: float, _text: str) -> None:
        self.progress.setValue(int(round(fraction * 100)))

    def _validated(self, rep: ImportReport) -> None:
        self._task, self._busy = None, ""
        self.report = rep
        self.progress.setValue(100)
        self.summary.setText(f"{rep.rows} rows, {len(rep.valid_rows)} valid, {len(rep.errors)} problems")
        if rep.already_imported:
            set_tone(self.warning, f"Warning: {rep.already_imported}.", "warn")
        self.problems.setRowCount(len(rep.errors))
        for r, e in enumerate(rep.errors):
            cells = (str(e["row"]), e["column"], "" if e["value"] is None else str(e["value"]), e["message"])
            for c, v in enumerate(cells):
                item = QTableWidgetItem(v)
                if c == 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.problems.setItem(r, c, item)
        for c in range(len(PROBLEM_HEADERS) - 1):
            self.problems.resizeColumnToContents(c)
        self._update_buttons()
        self.validated.emit(rep)

    def _applied(self, rep: ImportReport) -> None:
        self._task, self._busy = None, ""
        self.progress.setRange(0, 100)
        self.progress.setValue(100)
        n = len(rep.request_ids)
        set_tone(self.message, f"{n} change request{'s' if n != 1 else ''} submitted — awaiting approval", "ok")
        self._update_buttons()
        self.submitted.emit(list(rep.request_ids))

    def _failed(self, e: BaseException) -> None:
        self._task, self._busy = None, ""
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self._error(str(e) if isinstance(e, ImportFileError) else error_text(e))
        self._update_buttons()

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self.report = None
        self.summary.setText("Download the template, fill it in, then upload it.")
        self.warning.setVisible(False)
        self.problems.setRowCount(0)
        self.progress.setValue(0)
        set_tone(self.message, "")
        self._update_buttons()

    def _error(self, text: str) -> None:
        set_tone(self.message, text, "error")
        self.failed.emit(text)

    def _info(self, text: str) -> None:
        set_tone(self.message, text, "info")

    def _update_buttons(self) -> None:
        rep = self.report
        valid = len(rep.valid_rows) if rep is not None else 0
        busy = bool(self._busy)
        self.progress.setVisible(busy or rep is not None)
        self.cancel_button.setVisible(busy)
        self.cancel_button.setEnabled(self._busy == "validate")
        self.kind_combo.setEnabled(not busy)
        self.upload_button.setEnabled(not busy)
        self.export_button.setEnabled(rep is not None and bool(rep.errors) and not busy)
        self.reason.setEnabled(rep is not None and not rep.applied and not busy)
        self.submit_button.setText(f"Submit {valid} valid row{'s' if valid != 1 else ''} as change requests")
        self.submit_button.setEnabled(valid > 0 and bool(self.reason.text().strip()) and not busy
                                      and rep is not None and not rep.applied)
