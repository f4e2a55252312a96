"""Client financing (issue 4): what the firm lends in each currency — the debit balances of margin
accounts in that currency and in HKD, how many accounts, the currency's share — and the clients
whose loan exceeds their financing limit, from the stored balances (`services.credit.client_financing`,
read in the task runner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QTableView, QVBoxLayout, QWidget

from services.lazy import lazy_module
from widgets.credit_parts import OVER_TEXT, USAGE_OVER, short_money, usage_text
from widgets.formatting import money
from widgets.records import CoalescedLoad, Field, RecordTableModel, error_text
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.store import Store
    pass
    from services import credit as _credit
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    _credit = lazy_module("services.credit")


def load_financing(store: Store) -> dict[str, Any]:
    """Task function: `client_financing` with integer keys for the two tables."""
    f = _credit.client_financing(store)
    f["currencies"] = [{**c, "key": i, "currency_fx": f"{c['currency']} @ {c['fx_rate']:g}"}
                       for i, c in enumerate(f["currencies"])]
    f["over_limit"] = [{**o, "key": i, "usage": float("inf") if o["usage"] is None else o["usage"]}
                       for i, o in enumerate(f["over_limit"])]
    return f


def _natural_width(view: QTableView) -> int:
    """Width that shows every column as fitted (the stretched last one at ~70 px) and a scroll bar."""
    header = view.horizontalHeader()
    return sum(header.sectionSize(c) for c in range(header.count() - 1)) + 70 + view.frameWidth() * 2 + 36


def _caption(text: str) -> QLabel:
    label = QLabel(text)
    label.setStyleSheet("font-weight: 600")
    return label


class ClientFinancingPanel(QWidget):
    """Loans by currency and the over-limit list."""

    loaded = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.tasks: TaskRunner | None = None
        self.data: dict[str, Any] | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._failed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        self.summary = QLabel("")
        bar.addWidget(self.summary, 1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        self.currency_model = RecordTableModel([
            Field("Currency @ FX", "currency_fx", tooltip="the currency and its stored rate (HKD per unit)"),
            Field("Debit", "debit", "number", tooltip="debit balances in the currency"),
            Field("Debit HKD", "debit_hkd", "number", tooltip="debit balances at the stored rate"),
            Field("Accts", "accounts", "number", fmt=lambda v: f"{int(v)}", tooltip="accounts in debit"),
            Field("Share", "share", "number", fmt=lambda v: f"{v * 100:.1f}%", tooltip="share of all debits (HKD)"),
        ], self, key="key")
        self.currency_view = make_table(self.currency_model)
        self.currency_view.sortByColumn(2, Qt.SortOrder.DescendingOrder)
        self.over_model = RecordTableModel([
            Field("Account", "account"),
            Field("Client", "client_name"),
            Field("Limit", "limit", "number"),
            Field("Loan", "loan", "number"),
            Field("Over limit", "over", "number", foreground=lambda v: OVER_TEXT),
            Field("Usage", "usage", "number", fmt=usage_text, background=lambda v: USAGE_OVER),
        ], self, key="key")
        self.over_view = make_table(self.over_model)
        self.over_view.sortByColumn(4, Qt.SortOrder.DescendingOrder)

        split = QSplitter(Qt.Orientation.Horizontal)
        left, right = QWidget(), QWidget()
        for box, caption, view in ((left, "Loans by currency (debit balances of margin accounts)", self.currency_view),
                                   (right, "Clients over their financing limit", self.over_view)):
            v = QVBoxLayout(box)
            v.setContentsMargins(0, 0, 0, 0)
            v.addWidget(_caption(caption))
            v.addWidget(view, 1)
            split.addWidget(box)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        self.split = split
        lay.addWidget(split, 1)

    def set_context(self, store: Store, tasks: TaskRunner) -> None:
        self.store, self.tasks = store, tasks

    def refresh(self) -> None:
        if self.store is not None and self.tasks is not None:
            self._load.request()

    def stop(self) -> None:
        self._load.cancel()

    @property
    def busy(self) -> bool:
        return self._load.busy

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_financing, self.store, on_done=on_done, on_error=on_error,
                              name="client financing")

    def _loaded(self, data: dict[str, Any]) -> None:
        first = self.data is None
        self.data = data
        self.currency_model.set_records(data["currencies"])
        self.over_model.set_records(data["over_limit"])
        if first:
            fit_columns(self.currency_view, 160)
            self._size_split()
            fit_columns(self.over_view, 160)
        n = len(data["over_limit"])
        excess = sum(o["over"] for o in data["over_limit"])
        self.summary.setText(
            f"Debit balances {short_money(data['total_debit_hkd'])} HKD · loans (net of credits in other "
            f"currencies) {short_money(data['total_loan_hkd'])} HKD · {n} account{'s' if n != 1 else ''} over "
            f"limit by {money(excess)} HKD")
        self.summary.setToolTip(f"debit balances {money(data['total_debit_hkd'])} HKD; "
                                f"loans {money(data['total_loan_hkd'])} HKD")
        self.loaded.emit()

    def _size_split(self) -> None:
        """The currency table as wide as its columns, the over-limit list the rest."""
        total = sum(self.split.sizes())
        if total <= 0:
            return
        want, right = _natural_width(self.currency_view), _natural_width(self.over_view)
        left = want if want + right <= total else min(want, total * 45 // 100)
        self.split.setSizes([left, total - left])

    def _failed(self, e: BaseException) -> None:
        self.summary.setText(f"load failed: {error_text(e)}")
