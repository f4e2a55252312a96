"""The column-mapping dialog of a reconciliation file: which of the file's columns is each of ours.

Prefilled from the source's saved mapping, else from the same names and the usual synonyms
("Stock Code" → code, "Ccy" → currency). It checks as you choose: every required column mapped, no
file column used twice — and names what is wrong. The mapping is saved for the source once the
reconciliation has read the file with it (`services.recon_sources.run_import`), so the source's next
file opens without asking.

Shown with `open()` (window-modal, no nested event loop); tests set the combo boxes and call
`accept()`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from services.recon_sources import needed, optional

NONE = "— not in the file —"
RED = "#f85149"


class MappingDialog(QDialog):
    def __init__(self, kind: str, source: str, path: str, columns: list[str], mapping: dict[str, str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind, self.source, self.path, self.columns = kind, source, path, columns
        self.setWindowTitle(f"Columns of {Path(path).name}")
        self.setMinimumWidth(460)
        lay = QVBoxLayout(self)
        intro = QLabel(f"<b>{source}</b> · {kind} file <i>{Path(path).name}</i>: choose the file's column for each "
                       "of ours. The mapping is saved for this source and used for its next file.")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QFormLayout()
        inverse = {ours: col for col, ours in mapping.items()}
        self.boxes: dict[str, QComboBox] = {}
        for ours in (*needed(kind), *optional(kind)):
            box = QComboBox()
            box.addItem(NONE, "")
            for col in columns:
                box.addItem(col, col)
            if ours in inverse and inverse[ours] in columns:
                box.setCurrentIndex(columns.index(inverse[ours]) + 1)
            box.currentIndexChanged.connect(self._check)
            label = ours if ours in needed(kind) else f"{ours} (optional: dates the item)"
            form.addRow(label, box)
            self.boxes[ours] = box
        lay.addLayout(form)
        self.problem = QLabel()
        self.problem.setStyleSheet(f"color: {RED};")
        self.problem.setWordWrap(True)
        lay.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self._check()

    def set_choice(self, ours: str, column: str) -> None:
        """Map our column ``ours`` to the file's ``column`` ('' for none)."""
        box = self.boxes[ours]
        box.setCurrentIndex(box.findData(column))

    def mapping(self) -> dict[str, str]:
        """file column → our column, for the columns chosen."""
        return {str(b.currentData()): ours for ours, b in self.boxes.items() if b.currentData()}

    def problems(self) -> str:
        chosen = [(ours, str(b.currentData())) for ours, b in self.boxes.items() if b.currentData()]
        unmapped = [ours for ours in needed(self.kind) if not self.boxes[ours].currentData()]
        if unmapped:
            return f"{', '.join(unmapped)}: choose the file's column"
        used: dict[str, str] = {}
        for ours, col in chosen:
            if col in used:
                return f"{col!r} is chosen for both {used[col]} and {ours}"
            used[col] = ours
        return ""

    def _check(self) -> None:
        msg = self.problems()
        self.problem.setText(msg)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not msg)

    def accept(self) -> None:
        if self.problems():
            return
        super().accept()


__all__ = ["MappingDialog"]
