"""The Monthly report tab of the trade-errors dock: choose a month (and optionally the trade count), run
the §7 report in the background, read the summary and the splits by type, severity, desk and root
cause with the twelve-month trend, and export it to xlsx in the background (`services.trade_error_report`).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from PySide6.QtCore import QDate, Signal
from PySide6.QtWidgets import (
    QDateEdit,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services import trade_error_report as rep
from widgets.records import Field, RecordTableModel, error_text, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store

HEADERS = {"type": "Type", "level": "Severity", "desk": "Desk", "root_cause": "Root cause", "month": "Month"}


def _count(v: Any) -> str:
    return "" if v != v else f"{v:,.0f}"


def _frame_fields(key: str) -> list[Field]:
    return [Field(HEADERS[key], key), Field("Errors", "errors", "number", fmt=_count),
            Field("Gross loss", "gross_loss", "number"), Field("Recovery", "recovery", "number"),
            Field("Net", "net_loss", "number"), Field("Gains", "gains", "number")] + (
        [Field("Share %", "share_pct", "number", fmt=lambda v: f"{v:.1f}")] if key != "month" else
        [Field("Trades", "trades", "number", fmt=_count),
         Field("Per 1,000 trades", "errors_per_1000_trades", "number", fmt=lambda v: "" if v != v else f"{v:.2f}")])


def run_and_export(store: Store, month: date, trades: int | None, path: str) -> str:
    """Task function: the report and its workbook in one go (off the GUI thread)."""
    return str(rep.export_monthly_report(rep.monthly_report(store, month, trades), path))


class MonthlyReportView(QWidget):
    exported = Signal(str)
    shown = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.report: rep.MonthlyReport | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        bar = QHBoxLayout()
        self.month = QDateEdit(QDate.currentDate().addMonths(-1))
        self.month.setDisplayFormat("yyyy-MM")
        self.month.setCalendarPopup(True)
        self.trades = QLineEdit()
        self.trades.setPlaceholderText("stored count")
        self.trades.setToolTip("trades done in the month (the rate's denominator); blank uses the stored count")
        self.trades.setMaximumWidth(120)
        self.run_button = QPushButton("Run report")
        self.export_button = QPushButton("Export xlsx…")
        self.export_button.setEnabled(False)
        for w in (QLabel("Month"), self.month, QLabel("Trades"), self.trades, self.run_button, self.export_button):
            bar.addWidget(w)
        bar.addStretch(1)
        lay.addLayout(bar)
        self.summary = QLabel("Choose a month and run the report.")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        grid = QGridLayout()
        self.models: dict[str, RecordTableModel] = {}
        self.views: dict[str, Any] = {}
        for i, (key, title) in enumerate((("type", "By type"), ("level", "By severity"), ("desk", "By desk"),
                                          ("root_cause", "By root cause"), ("month", "Trend (12 months)"))):
            box = QVBoxLayout()
            cap = QLabel(title)
            cap.setProperty("role", "caption")
            box.addWidget(cap)
            m = RecordTableModel(_frame_fields(key), key="row")
            v = make_table(m)
            v.setObjectName(f"trade_error_report_{key}")
            v.setSortingEnabled(False)  # rows in the report's own order (types, L1–L3, largest desk first, months)
            m.sort(-1)
            self.models[key], self.views[key] = m, v
            box.addWidget(v)
            grid.addLayout(box, i // 3, i % 3, 1, 2 if key == "month" else 1)
        lay.addLayout(grid, 1)
        self.message = QLabel()
        self.message.setVisible(False)
        lay.addWidget(self.message)
        self.run_button.clicked.connect(self.run)
        self.export_button.clicked.connect(self.ask_export)

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def chosen(self) -> tuple[date, int | None]:
        d = self.month.date()
        t = self.trades.text().strip().replace(",", "")
        if t and (not t.isdigit()):
            raise ValueError(f"Trades: {t!r} is not a whole number")
        return date(d.year(), d.month(), 1), int(t) if t else None

    def run(self) -> None:
        if self.tasks is None or self.store is None:
            return
        try:
            month, trades = self.chosen()
        except ValueError as e:
            set_tone(self.message, str(e), "error")
            return
        self.run_button.setEnabled(False)
        self.tasks.run(rep.monthly_report, self.store, month, trades, on_done=self._show, on_error=self._failed,
                       name="trade error report")

    def _show(self, r: rep.MonthlyReport) -> None:
        self.report = r
        self.run_button.setEnabled(True)
        self.export_button.setEnabled(True)
        s = r.summary
        rate = s["errors_per_1000_trades"]
        self.summary.setText(
            f"<b>{s['month']}</b>: {s['errors']} errors"
            + (f" in {s['trades']:,} trades = <b>{rate:.2f}</b> per 1,000" if s["trades"] and not math.isnan(rate)
               else " (no trade count for the month: no rate)")
            + f" · gross loss {s['gross_loss']:,.2f} − recovery {s['recovery']:,.2f} = net <b>{s['net_loss']:,.2f}</b>"
            f" HKD · gains {s['gains']:,.2f} · {s['open']} open, {s['closed']} closed")
        for key, df in (("type", r.by_type), ("level", r.by_severity), ("desk", r.by_desk),
                        ("root_cause", r.by_root_cause), ("month", r.trend)):
            self.models[key].set_records(_records(df))
            fit_columns(self.views[key], 180)
        set_tone(self.message, "", "ok")
        self.shown.emit()

    def _failed(self, e: BaseException) -> None:
        self.run_button.setEnabled(True)
        set_tone(self.message, error_text(e), "error")

    def ask_export(self) -> None:
        from app.dialogs import DialogRequest, dialogs

        month, _ = self.chosen()
        default = f"trade-errors-{month:%Y-%m}.xlsx"
        service = dialogs()
        if not service.interactive:
            service.ask(DialogRequest("save_file", "Export the monthly error report", "Save the report to",
                                      data={"default": default, "filter": "Excel (*.xlsx)"},
                                      on_answer=lambda p: self.export_to(str(p)) if p else None))
            return
        dlg = QFileDialog(self, "Export the monthly error report", default, "Excel (*.xlsx)")
        dlg.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dlg.setDefaultSuffix("xlsx")
        dlg.fileSelected.connect(self.export_to)
        dlg.finished.connect(dlg.deleteLater)
        dlg.open()

    def export_to(self, path: str) -> None:
        """Write the chosen month's report to ``path`` in the background."""
        if self.tasks is None or self.store is None or not path:
            return
        try:
            month, trades = self.chosen()
        except ValueError as e:
            set_tone(self.message, str(e), "error")
            return
        self.export_button.setEnabled(False)
        set_tone(self.message, f"exporting to {Path(path).name}…", "info")

        def done(p: str) -> None:
            self.export_button.setEnabled(True)
            set_tone(self.message, f"Report exported to {p}", "ok")
            self.exported.emit(p)

        def failed(e: BaseException) -> None:
            self.export_button.setEnabled(True)
            set_tone(self.message, f"Export failed: {error_text(e)}", "error")

        self.tasks.run(run_and_export, self.store, month, trades, path, on_done=done, on_error=failed,
                       name="trade error report export")


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for i, rec in enumerate(df.to_dict("records")):
        rec["row"] = i
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()})
    return out
