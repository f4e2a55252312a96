"""The root-cause editor of an incident: 5 whys or a fishbone over the six branches of RISK_METHODS §7.

The editor only edits and checks: `value()` gives (method, data) and `problem()` what
`services.incidents.check_root_cause` would refuse (checked as you type, so Save is enabled only when
the analysis can be stored). The detail panel saves it through the task runner.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QRadioButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from services.incidents import FISHBONE_BRANCHES, IncidentError, check_root_cause

BRANCH_HINTS = {"people": "skills, staffing, fatigue", "process": "procedures, controls, hand-offs",
                "technology": "systems, software, network", "data": "static data, files, feeds",
                "environment": "market conditions, workplace", "external": "vendors, exchanges, clients"}


class RootCauseEditor(QWidget):
    """5 whys (five answers and the root cause) or a fishbone (one cause per line on six branches)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        top = QHBoxLayout()
        self.whys_radio = QRadioButton("&5 whys")
        self.fishbone_radio = QRadioButton("&Fishbone")
        self.whys_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.whys_radio)
        group.addButton(self.fishbone_radio)
        top.addWidget(QLabel("Method"))
        top.addWidget(self.whys_radio)
        top.addWidget(self.fishbone_radio)
        top.addStretch(1)
        lay.addLayout(top)
        self.problem_edit = QLineEdit()
        self.problem_edit.setPlaceholderText("problem statement: what went wrong, where, how much")
        lay.addWidget(self.problem_edit)
        self.pages = QStackedWidget()
        whys = QWidget()
        wg = QGridLayout(whys)
        wg.setContentsMargins(0, 0, 0, 0)
        wg.setVerticalSpacing(3)
        self.why_edits: list[QLineEdit] = []
        for i in range(5):
            line = QLineEdit()
            line.setPlaceholderText("why did that happen?" if i else "why did the problem happen?")
            wg.addWidget(QLabel(f"Why {i + 1}"), i, 0)
            wg.addWidget(line, i, 1)
            self.why_edits.append(line)
        self.pages.addWidget(whys)
        fish = QWidget()
        fg = QGridLayout(fish)
        fg.setContentsMargins(0, 0, 0, 0)
        fg.setSpacing(4)
        self.branch_edits: dict[str, QPlainTextEdit] = {}
        for k, b in enumerate(FISHBONE_BRANCHES):
            box = QVBoxLayout()
            box.setSpacing(1)
            cap = QLabel(b.capitalize())
            cap.setToolTip(BRANCH_HINTS[b])
            box.addWidget(cap)
            e = QPlainTextEdit()
            e.setPlaceholderText(f"one cause per line ({BRANCH_HINTS[b]})")
            e.setMaximumHeight(64)
            box.addWidget(e)
            fg.addLayout(box, k // 3, k % 3)
            self.branch_edits[b] = e
        self.pages.addWidget(fish)
        lay.addWidget(self.pages)
        self.root_edit = QLineEdit()
        self.root_edit.setPlaceholderText("root cause the analysis arrived at")
        row = QHBoxLayout()
        row.addWidget(QLabel("Root cause"))
        row.addWidget(self.root_edit, 1)
        lay.addLayout(row)
        self.whys_radio.toggled.connect(self._method_changed)
        for w in (self.problem_edit, self.root_edit, *self.why_edits):
            w.textChanged.connect(self.changed.emit)
        for pe in self.branch_edits.values():
            pe.textChanged.connect(self.changed.emit)

    def _method_changed(self, _checked: bool) -> None:
        self.pages.setCurrentIndex(0 if self.whys_radio.isChecked() else 1)
        self.changed.emit()

    @property
    def method(self) -> str:
        return "five_whys" if self.whys_radio.isChecked() else "fishbone"

    def value(self) -> tuple[str, dict[str, Any]]:
        data: dict[str, Any] = {"problem": self.problem_edit.text(), "root_cause": self.root_edit.text()}
        if self.method == "five_whys":
            data["whys"] = [e.text() for e in self.why_edits]
        else:
            data["branches"] = {b: e.toPlainText().splitlines() for b, e in self.branch_edits.items()}
        return self.method, data

    def problem(self) -> str:
        """What stops the analysis being saved ('' when it can be)."""
        try:
            check_root_cause(*self.value())
        except IncidentError as e:
            return str(e)
        return ""

    def is_blank(self) -> bool:
        _m, d = self.value()
        texts = [d["problem"], d["root_cause"], *d.get("whys", []), *sum(d.get("branches", {}).values(), [])]
        return not any(str(t).strip() for t in texts)

    def load(self, method: str | None, data: dict[str, Any]) -> None:
        """Show a stored analysis (blank for none)."""
        widgets: list[Any] = [self.problem_edit, self.root_edit, *self.why_edits, *self.branch_edits.values()]
        for w in widgets:
            w.blockSignals(True)
        (self.fishbone_radio if method == "fishbone" else self.whys_radio).setChecked(True)
        self.pages.setCurrentIndex(1 if method == "fishbone" else 0)
        self.problem_edit.setText(str(data.get("problem", "")))
        self.root_edit.setText(str(data.get("root_cause", "")))
        whys = list(data.get("whys", []))
        for i, e in enumerate(self.why_edits):
            e.setText(whys[i] if i < len(whys) else "")
        branches = data.get("branches", {})
        for b, pe in self.branch_edits.items():
            pe.setPlainText("\n".join(branches.get(b, [])))
        for w in widgets:
            w.blockSignals(False)
