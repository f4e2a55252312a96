"""Export ▸ Risk pack…: choose the sheets (the choice is remembered), the file, build it in the background.

The workbook is the same as `python main.py export pack` (services.pack), built from a copy of the
live engine taken under its lock, so the figures are those on the screen at the moment of the click.
Progress and Cancel; the file is written to a temporary name and renamed at the end, so a cancelled
or failed pack leaves nothing behind.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services.pack import SHEETS, TITLES, build_pack
from widgets.table_tools import table_settings

SETTINGS_KEY = "pack/sheets"


def saved_sheets(settings: QSettings | None = None) -> list[str]:
    """The sheets chosen last time (all of them the first time); unknown names are dropped."""
    s = settings or table_settings()
    raw = s.value(SETTINGS_KEY)
    try:
        names = json.loads(str(raw)) if raw is not None else list(SHEETS)
    except ValueError:
        names = list(SHEETS)
    chosen = [n for n in names if n in SHEETS]
    return chosen if chosen else list(SHEETS)


def _build(store: Any, monitor: Any, path: str, user: str, sheets: list[str], task: Any) -> dict[str, int]:
    engine = None
    if monitor is not None:
        with monitor.lock:  # a consistent copy of the live numbers; the feed waits only for the copy
            engine = copy.deepcopy(monitor.engine)

    def progress(f: float, text: str) -> None:
        task.check()
        task.progress(f, text)

    return build_pack(store, path, user=user, sheets=sheets, engine=engine, progress=progress)


class PackDialog(QDialog):
    def __init__(self, store: Any, user: Any, tasks: Any, monitor: Any = None, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export risk pack")
        self.setObjectName("pack_dialog")
        self.store, self.user, self.tasks, self.monitor = store, user, tasks, monitor
        self.settings = settings or table_settings()
        self.task: Any = None
        self.counts: dict[str, int] | None = None
        lay = QVBoxLayout(self)
        box = QGroupBox("Sheets")
        grid = QGridLayout(box)
        chosen = set(saved_sheets(self.settings))
        self.checks: dict[str, QCheckBox] = {}
        for i, name in enumerate(SHEETS):
            cb = QCheckBox(TITLES[name])
            cb.setChecked(name in chosen)
            cb.toggled.connect(self._validate)
            grid.addWidget(cb, i // 3, i % 3)
            self.checks[name] = cb
        row = QHBoxLayout()
        all_btn, none_btn = QPushButton("Select all"), QPushButton("Clear")
        all_btn.clicked.connect(lambda: self._set_all(True))
        none_btn.clicked.connect(lambda: self._set_all(False))
        row.addWidget(all_btn)
        row.addWidget(none_btn)
        row.addStretch(1)
        grid.addLayout(row, len(SHEETS) // 3 + 1, 0, 1, 3)
        lay.addWidget(box)
        file_row = QHBoxLayout()
        file_row.addWidget(QLabel("File"))
        default_dir = self.settings.value("pack/folder") or str(Path.home())
        self.path = QLineEdit(str(Path(str(default_dir)) / f"risk-pack-{date.today().isoformat()}.xlsx"))
        self.path.textChanged.connect(self._validate)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        file_row.addWidget(self.path, 1)
        file_row.addWidget(browse)
        lay.addLayout(file_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress.setTextVisible(True)
        lay.addWidget(self.progress)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.message)
        buttons = QHBoxLayout()
        self.open_folder = QPushButton("Open folder")
        self.open_folder.setEnabled(False)
        self.open_folder.clicked.connect(self._open_folder)
        self.build_btn = QPushButton("Build pack")
        self.build_btn.setDefault(True)
        self.build_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Close")
        self.cancel_btn.clicked.connect(self._cancel_or_close)
        buttons.addWidget(self.open_folder)
        buttons.addStretch(1)
        buttons.addWidget(self.build_btn)
        buttons.addWidget(self.cancel_btn)
        lay.addLayout(buttons)
        self.resize(620, 360)
        self._validate()

    # ------------------------------------------------------------------ form
    def chosen(self) -> list[str]:
        return [n for n, cb in self.checks.items() if cb.isChecked()]

    def _set_all(self, on: bool) -> None:
        for cb in self.checks.values():
            cb.setChecked(on)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save risk pack", self.path.text(), "Excel workbook (*.xlsx)")
        if path:
            self.path.setText(path if path.lower().endswith(".xlsx") else path + ".xlsx")

    def problem(self) -> str:
        """What stops the build, in words; empty when it can start."""
        if not self.chosen():
            return "Choose at least one sheet."
        p = self.path.text().strip()
        if not p:
            return "Enter the file to write."
        if not p.lower().endswith(".xlsx"):
            return "The file name must end in .xlsx."
        folder = Path(p).expanduser().parent
        if not folder.is_dir():
            return f"No such folder: {folder}"
        if not os.access(folder, os.W_OK):
            return f"Cannot write to {folder}"
        return ""

    def _validate(self) -> None:
        if self.task is not None:
            return
        why = self.problem()
        self.build_btn.setEnabled(not why)
        self.build_btn.setToolTip(why)
        self.message.setText(why)

    # ------------------------------------------------------------------ build
    def start(self) -> None:
        why = self.problem()
        if why or self.task is not None:
            self.message.setText(why)
            return
        sheets = self.chosen()
        path = str(Path(self.path.text().strip()).expanduser())
        self.settings.setValue(SETTINGS_KEY, json.dumps(sheets))
        self.settings.setValue("pack/folder", str(Path(path).parent))
        self.settings.sync()
        self.counts = None
        self.open_folder.setEnabled(False)
        self.build_btn.setEnabled(False)
        self.cancel_btn.setText("Cancel")
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.message.setText(f"Building {len(sheets)} sheet(s)…")
        login = getattr(self.user, "login", "") or ""
        self.task = self.tasks.run(_build, self.store, self.monitor, path, login, sheets,
                                   on_done=self._done, on_error=self._failed, on_progress=self._progress,
                                   name="risk pack")
        self._target = path

    def _progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(f"{fraction * 100:.0f}%  {text}")

    def _finish(self) -> None:
        self.task = None
        self.cancel_btn.setText("Close")
        self._validate()

    def _done(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self._finish()
        self.progress.setValue(1000)
        self.progress.setFormat("done")
        rows = sum(counts.values())
        self.message.setText(f"Wrote {self._target}: {len(counts)} sheet(s), {rows:,} rows.")
        self.open_folder.setEnabled(True)

    def _failed(self, error: BaseException) -> None:
        self._finish()
        self.progress.setValue(0)
        self.progress.setFormat("failed")
        self.message.setText(f"The pack was not written: {error}")

    def _cancel_or_close(self) -> None:
        if self.task is None:
            self.close()
            return
        self.task.cancel()
        self.message.setText("Cancelled: nothing was written.")
        self.progress.setFormat("cancelled")
        self._finish()

    def _open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self._target).parent)))

    def closeEvent(self, event: Any) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        super().closeEvent(event)
