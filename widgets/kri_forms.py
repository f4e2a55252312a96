"""The KRI dashboard's forms: commentary, entering / importing readings, and threshold requests.

Each form checks as you type and names the field that is wrong; what it writes runs on the task
runner and, once stored, emits ``changed`` so the dashboard reloads. Commentary is required for an
amber or red reading: the entry form will not store an amber/red value without it, and the
commentary form only accepts text for an amber/red latest reading. Thresholds are never written here:
a new pair is a change request (kind ``kri``) for a checker.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services import kri
from services.kri import COMPUTED, KriError, KriStatus
from services.kri_dashboard import reading_colour
from widgets.kri_tiles import RAG
from widgets.records import error_text, set_tone

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store


def parse_number(text: str, name: str) -> tuple[float | None, str]:
    """(value, '') or (None, message naming the field)."""
    t = text.strip().replace(",", "")
    if not t:
        return None, f"{name}: enter a number"
    try:
        v = float(t)
    except ValueError:
        return None, f"{name}: {text.strip()!r} is not a number"
    if not math.isfinite(v):
        return None, f"{name}: {text.strip()!r} is not a number"
    return v, ""


def kri_error_text(e: BaseException) -> str:
    return str(e) if isinstance(e, KriError) else error_text(e)


class KriForm(QWidget):
    """Shared plumbing: context, the inline message, and one write at a time on the task runner."""

    changed = Signal()
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.status: KriStatus | None = None
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        self.busy = False

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def _write(self, fn: Callable[..., Any], *args: Any, ok: Callable[[Any], str]) -> None:
        if self.tasks is None or self.busy:
            return
        self.busy = True
        self._update()

        def done(result: Any) -> None:
            self.busy = False
            set_tone(self.message, ok(result), "ok")
            self._update()
            self.changed.emit()

        def failed(e: BaseException) -> None:
            self.busy = False
            set_tone(self.message, kri_error_text(e), "error")
            self._update()
            self.failed.emit(kri_error_text(e))

        self.tasks.run(fn, *args, on_done=done, on_error=failed, name=getattr(fn, "__name__", "kri"))

    def _update(self) -> None:  # subclasses: enable buttons, show what is wrong
        pass


class CommentaryForm(KriForm):
    """Commentary on the selected KRI's latest reading (required when it is amber or red)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        self.reading = QLabel("Select a KRI")
        self.reading.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setPlaceholderText("Why it is amber / red and what is being done")
        self.text.setMaximumHeight(110)
        self.save_button = QPushButton("Save commentary")
        self.save_button.clicked.connect(self.save)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        lay.addWidget(self.reading)
        lay.addWidget(self.text)
        row = QHBoxLayout()
        row.addWidget(self.hint, 1)
        row.addWidget(self.save_button)
        lay.addLayout(row)
        lay.addWidget(self.message)
        lay.addStretch(1)
        self.text.textChanged.connect(self._update)
        self._update()

    def show_status(self, st: KriStatus) -> None:
        same = self.status is not None and (self.status.code, self.status.day) == (st.code, st.day)
        self.status = st
        if st.day is None:
            self.reading.setText(f"{st.name}: no reading yet")
        else:
            self.reading.setText(f"{st.name} on {st.day.isoformat()}: {st.value:g} "
                                 f"<b style='color:{RAG[st.colour]}'>{st.colour.upper()}</b>"
                                 + (" (amber for more than 5 business days)" if st.escalated else ""))
        if not same:
            self.text.setPlainText(st.comment)
            set_tone(self.message, "", "ok")
        self._update()

    def required(self) -> bool:
        return self.status is not None and self.status.raw in ("amber", "red")

    def _update(self) -> None:
        st = self.status
        empty = not self.text.toPlainText().strip()
        if st is None or st.day is None:
            hint, ok = "", False
        elif not self.required():
            hint, ok = "Green: commentary is for amber and red readings.", False
        elif empty:
            hint, ok = "Commentary is required for an amber or red reading.", False
        else:
            hint, ok = ("Saved." if self.text.toPlainText().strip() == st.comment else ""), True
        self.hint.setText(hint)
        self.hint.setStyleSheet(f"color: {RAG['amber'] if empty and self.required() else '#8b949e'};")
        self.text.setEnabled(self.required())
        self.save_button.setEnabled(ok and not self.busy and self.user is not None)

    def save(self) -> None:
        st = self.status
        if st is None or st.day is None or self.store is None or self.user is None:
            return
        text = self.text.toPlainText().strip()
        if not text and self.required():
            set_tone(self.message, "Commentary: required for an amber or red reading", "error")
            return
        self._write(kri.set_comment, self.store, self.user, st.code, st.day, text,
                    ok=lambda _r: f"Commentary on {st.code} {st.day} saved")


class ReadingForm(KriForm):
    """Enter one reading (colour previewed, commentary required for amber / red) or import a file."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.statuses: dict[str, KriStatus] = {}
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.kri_box = QComboBox()
        self.day_edit = QDateEdit()
        self.day_edit.setCalendarPopup(True)
        self.day_edit.setDisplayFormat("yyyy-MM-dd")
        self.day_edit.setDate(QDate.currentDate())
        self.value_edit = QLineEdit()
        self.value_edit.setPlaceholderText("value")
        self.preview = QLabel()
        self.comment_edit = QLineEdit()
        self.comment_edit.setPlaceholderText("required when the value is amber or red")
        form.addRow("KRI", self.kri_box)
        form.addRow("Day", self.day_edit)
        form.addRow("Value", self.value_edit)
        form.addRow("", self.preview)
        form.addRow("Commentary", self.comment_edit)
        lay.addLayout(form)
        self.validation = QLabel()
        self.validation.setStyleSheet(f"color: {RAG['red']};")
        lay.addWidget(self.validation)
        row = QHBoxLayout()
        self.save_button = QPushButton("Store reading")
        self.import_button = QPushButton("Import readings…")
        self.import_button.setToolTip("CSV or xlsx with columns kri_code, day, value; all or nothing, bad rows named")
        self.compute_button = QPushButton("Compute from records")
        self.compute_button.setToolTip("Compute today's value of every computed KRI from RiskDesk's own records")
        for b in (self.save_button, self.import_button, self.compute_button):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(self.message)
        lay.addStretch(1)
        self.save_button.clicked.connect(self.save)
        self.import_button.clicked.connect(self.ask_import)
        self.compute_button.clicked.connect(self.compute)
        for w in (self.value_edit, self.comment_edit):
            w.textChanged.connect(self._update)
        self.kri_box.currentIndexChanged.connect(self._update)
        self.may_enter = False
        self._update()

    def show_statuses(self, statuses: list[KriStatus], may_enter: bool) -> None:
        self.may_enter = may_enter
        self.statuses = {s.code: s for s in statuses if s.code not in COMPUTED}
        current = self.kri_box.currentData()
        self.kri_box.blockSignals(True)
        self.kri_box.clear()
        for s in self.statuses.values():
            self.kri_box.addItem(f"{s.code} — {s.name}", s.code)
        if current in self.statuses:
            self.kri_box.setCurrentIndex(list(self.statuses).index(current))
        self.kri_box.blockSignals(False)
        self._update()

    def select(self, code: str) -> None:
        if code in self.statuses:
            self.kri_box.setCurrentIndex(list(self.statuses).index(code))

    def check(self) -> tuple[dict[str, Any] | None, str]:
        """The reading to store, or the first thing wrong with the form (naming the field)."""
        code = self.kri_box.currentData()
        if code is None:
            return None, "KRI: choose one"
        value, msg = parse_number(self.value_edit.text(), "Value")
        if value is None:
            return None, msg
        col = reading_colour(self.statuses[code], value)
        if col in ("amber", "red") and not self.comment_edit.text().strip():
            return None, f"Commentary: required for an {col} reading ({value:g})"
        qd = self.day_edit.date()
        return {"code": code, "day": date(qd.year(), qd.month(), qd.day()), "value": value, "colour": col,
                "comment": self.comment_edit.text().strip()}, ""

    def _update(self) -> None:
        reading, msg = self.check()
        code = self.kri_box.currentData()
        value, _ = parse_number(self.value_edit.text(), "Value")
        if code in self.statuses and value is not None:
            col = reading_colour(self.statuses[code], value)
            self.preview.setText(f"<b style='color:{RAG[col]}'>{col.upper()}</b>")
        else:
            self.preview.setText("")
        self.validation.setText(msg if self.value_edit.text().strip() or self.comment_edit.text().strip() else "")
        can = self.may_enter and not self.busy and self.store is not None
        self.save_button.setEnabled(can and reading is not None)
        self.import_button.setEnabled(can)
        self.compute_button.setEnabled(can)
        if not self.may_enter and self.user is not None:
            self.save_button.setToolTip(f"{self.user.role} may not enter KRI readings")

    def save(self) -> None:
        reading, msg = self.check()
        if reading is None or self.store is None or self.user is None:
            set_tone(self.message, msg, "error")
            return
        self._write(kri.enter_reading, self.store, self.user, reading["code"], reading["day"], reading["value"],
                    reading["comment"],
                    ok=lambda made: f"{reading['code']} {reading['day']}: {reading['value']:g} stored "
                    f"({reading['colour']})" + (f"; {len(made)} task(s) opened" if made else ""))

    def import_file(self, path: str) -> None:
        if not path or self.store is None or self.user is None:
            return
        name = path.replace("\\", "/").rsplit("/", 1)[-1]
        self._write(kri.import_readings, self.store, self.user, path,
                    ok=lambda n: f"{name}: {n:,} readings imported")

    def compute(self) -> None:
        if self.store is None or self.user is None:
            return
        self._write(kri.compute_all, self.store, self.user.login,
                    ok=lambda vals: "Computed " + ", ".join(f"{c} {v:g}" for c, v in vals.items()))

    def ask_import(self) -> None:
        from app.dialogs import DialogRequest, dialogs

        service = dialogs()
        filt = "Readings (*.csv *.xlsx)"
        if not service.interactive:
            service.ask(DialogRequest("open_file", "Import KRI readings", "Readings file",
                                      data={"filter": filt}, on_answer=lambda p: self.import_file(p or "")))
            return
        dlg = QFileDialog(self, "Import KRI readings", "", filt)
        dlg.setFileMode(QFileDialog.FileMode.ExistingFile)
        dlg.fileSelected.connect(self.import_file)
        dlg.finished.connect(dlg.deleteLater)
        dlg.open()


class ThresholdForm(KriForm):
    """New amber / red thresholds for the selected KRI, submitted as a four-eyes change request."""

    submitted = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        self.current = QLabel("Select a KRI")
        self.current.setWordWrap(True)
        form = QFormLayout()
        self.amber_edit = QLineEdit()
        self.red_edit = QLineEdit()
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("why (the checker decides on it)")
        form.addRow("Amber from", self.amber_edit)
        form.addRow("Red from", self.red_edit)
        form.addRow("Reason", self.reason_edit)
        self.validation = QLabel()
        self.validation.setStyleSheet(f"color: {RAG['red']};")
        self.submit_button = QPushButton("Request the change")
        self.submit_button.clicked.connect(self.submit)
        lay.addWidget(self.current)
        lay.addLayout(form)
        lay.addWidget(self.validation)
        lay.addWidget(self.submit_button)
        lay.addWidget(self.message)
        lay.addStretch(1)
        for w in (self.amber_edit, self.red_edit, self.reason_edit):
            w.textChanged.connect(self._update)
        self.may_request = False
        self.pending: dict[str, Any] | None = None
        self._update()

    def show_status(self, st: KriStatus, pending: dict[str, Any] | None, may_request: bool) -> None:
        same = self.status is not None and self.status.code == st.code
        self.status, self.pending, self.may_request = st, pending, may_request
        text = (f"{st.name}: {st.direction.replace('_', ' ')}, amber from {st.amber:g}, red from {st.red:g}")
        if pending:
            text += (f"<br><span style='color:{RAG['amber']}'>request #{pending['id']} pending → amber "
                     f"{pending['amber']:g}, red {pending['red']:g} (by {pending['maker']})</span>")
        self.current.setText(text)
        if not same:
            self.amber_edit.setText(f"{st.amber:g}")
            self.red_edit.setText(f"{st.red:g}")
            self.reason_edit.clear()
        self._update()

    def check(self) -> tuple[tuple[float, float] | None, str]:
        st = self.status
        if st is None:
            return None, ""
        amber, msg = parse_number(self.amber_edit.text(), "Amber from")
        if amber is None:
            return None, msg
        red, msg = parse_number(self.red_edit.text(), "Red from")
        if red is None:
            return None, msg
        try:
            kri.check_thresholds(st.direction, amber, red)
        except KriError as e:
            return None, f"Thresholds: {e}"
        if (amber, red) == (st.amber, st.red):
            return None, "Thresholds: unchanged"
        if not self.reason_edit.text().strip():
            return None, "Reason: give one (the checker decides on it)"
        return (amber, red), ""

    def _update(self) -> None:
        got, msg = self.check()
        self.validation.setText(msg)
        can = self.may_request and not self.busy and self.pending is None
        self.submit_button.setEnabled(can and got is not None)
        self.submit_button.setToolTip("a request is already pending for this KRI" if self.pending else "")

    def submit(self) -> None:
        got, msg = self.check()
        st = self.status
        if got is None or st is None or self.store is None or self.user is None:
            set_tone(self.message, msg, "error")
            return

        def ok(req_id: int) -> str:
            self.submitted.emit(int(req_id))
            return f"Request #{req_id} submitted: {st.code} amber {got[0]:g}, red {got[1]:g} (waits for a checker)"

        self._write(kri.propose_thresholds, self.store, self.user, st.code, got[0], got[1],
                    self.reason_edit.text(), ok=ok)


__all__ = ["CommentaryForm", "KriForm", "ReadingForm", "ThresholdForm", "parse_number"]
