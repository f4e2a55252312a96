"""The client trading limits dock (issue 4, "Client trading limits"): one limit of each type per
account, with an optional expiry and "expire when a margin call opens".

Nothing here writes `client_trading_limits`: the form calls `trading_limits.propose` (an insert
request, or an update when the account already has a limit of that type) and "Set invalid" calls
`trading_limits.set_invalid`; both take effect once a checker approves. The state column is derived
by the service (in force / expired / expired (margin call) / invalid). Every database call runs on
the task runner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QDateTime, QModelIndex, Qt, QTimeZone, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from models.book import TRADING_LIMIT_TYPES
from widgets.records import (
    ERROR_COLOUR,
    OVERDUE_TEXT,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    set_tone,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.store import Store

KIND = "client_trading_limit"
STATE_COLOURS = {"in force": QColor(63, 185, 80), "expired": QColor(139, 148, 158),
                 "expired (margin call)": QColor(227, 179, 65), "invalid": QColor(248, 81, 73),
                 "pending": QColor(227, 179, 65)}
PENDING_ROW = QColor(92, 68, 8)
HK = QTimeZone(b"Asia/Hong_Kong")


# ---------------------------------------------------------------------- pure parts (no Qt)
def validate_limit(account: str, limit_type: str, amount_text: str, accounts: set[str] | None,
                   expires_at: datetime | None = None, now: datetime | None = None
                   ) -> tuple[dict[str, Any] | None, str]:
    """({account, limit_type, amount, expires_at}, "") when acceptable, else (None, why not).

    Without ``accounts`` (not loaded yet) the account code is not checked.
    """
    account = account.strip()
    if not account:
        return None, "Enter the account code."
    if accounts is not None and account.upper() not in accounts:
        return None, f"Unknown account “{account}”."
    if limit_type not in TRADING_LIMIT_TYPES:
        return None, f"Unknown limit type “{limit_type}”."
    t = amount_text.strip().replace(",", "")
    if not t:
        return None, "Enter the amount."
    try:
        amount = float(t)
    except ValueError:
        return None, f"Amount “{amount_text.strip()}” is not a number."
    if not math.isfinite(amount) or amount < 0:
        return None, "The amount must be a number ≥ 0."
    if expires_at is not None and expires_at <= (now or datetime.now(UTC)):
        return None, "The expiry must lie in the future."
    return {"account": account, "limit_type": limit_type, "amount": amount, "expires_at": expires_at}, ""


@dataclass
class TradingLimitsSnapshot:
    rows: list[dict[str, Any]]
    accounts: dict[str, str] = field(default_factory=dict)  # upper-cased code → code as stored
    may_request: bool = True


def load_trading_limits(store: Store, user: User) -> TradingLimitsSnapshot:
    """Every trading limit with its derived state and pending request, plus pending inserts (task)."""
    from sqlalchemy import text

    from services import changes, trading_limits
    from services.auth import permitted

    with store.begin() as conn:
        codes = {int(i): str(c) for i, c in conn.execute(text("select id, code from accounts"))}
    pending_upd: dict[int, int] = {}
    inserts: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    for req in changes.listing(store, status="pending"):  # newest first
        if req.kind != KIND or "id" not in req.target_key:
            continue
        if req.op == "insert":
            inserts.append((req.id, {**req.after, "id": int(req.target_key["id"])}, req.context or {}))
        else:
            pending_upd.setdefault(int(req.target_key["id"]), req.id)
    rows: list[dict[str, Any]] = []
    for t in trading_limits.limits(store):
        rid = pending_upd.get(t.id)
        rows.append({"id": t.id, "account": t.account, "limit_type": t.limit_type, "amount": t.amount,
                     "expires_at": t.expires_at, "expire_on_call": "yes" if t.expire_on_call else "",
                     "status": t.status, "state": t.state, "request_id": rid,
                     "request": "" if rid is None else f"request #{rid} pending"})
    for rid, after, ctx in reversed(inserts):
        rows.append({"id": after["id"], "account": ctx.get("account") or codes.get(int(after.get("account_id") or 0),
                                                                                      "?"),
                     "limit_type": after.get("limit_type", ""), "amount": float(after.get("amount") or 0),
                     "expires_at": after.get("expires_at"),
                     "expire_on_call": "yes" if after.get("expire_on_call") else "",
                     "status": "pending", "state": "pending", "request_id": rid,
                     "request": f"request #{rid} pending (new)"})
    return TradingLimitsSnapshot(rows, {c.upper(): c for c in codes.values()},
                                 permitted(store, user, "request", KIND))


def _fields() -> list[Field]:
    return [Field("Account", "account"),
            Field("Type", "limit_type"),
            Field("Amount", "amount", "number"),
            Field("Expires", "expires_at", "time", tooltip="Hong Kong time; blank: no expiry"),
            Field("Expire on call", "expire_on_call", tooltip="expires when a margin call opens on the account"),
            Field("State", "state", foreground=lambda v: STATE_COLOURS.get(str(v))),
            Field("Record", "id", "number", fmt=lambda v: "" if v != v else f"#{int(v)}"),
            Field("Pending request", "request", foreground=lambda v: OVERDUE_TEXT if v else None)]


# ---------------------------------------------------------------------- the dock
class TradingLimitsDock(QWidget):
    """Client trading limits, the proposal form and "Set invalid" for the selected limit."""

    submitted = Signal(int)  # the new change request's id
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: TradingLimitsSnapshot | None = None
        self._text_of = np.zeros(0, "<U64")
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._submit_task: Task | None = None
        self._fitted = False
        self._build_ui()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        title = QLabel("Client trading limits — one of each type per account")
        title.setProperty("role", "caption")
        bar.addWidget(title)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search account / type")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(220)
        self.search.setMaximumWidth(260)
        self.search.textChanged.connect(lambda _t: self.model.refilter())
        bar.addWidget(self.search)
        bar.addStretch(1)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        self.model: RecordTableModel = RecordTableModel(_fields(), self)
        self.model.row_background = self._row_background
        self.model.set_filter(self._visible)
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        split.addWidget(self._build_form())
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        lay.addWidget(split, 1)
        self._update_form()

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(340)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(5)
        head = QLabel("New or changed limit")
        head.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(head, 0, 0, 1, 3)
        self.account_edit = QLineEdit()
        self.account_edit.setPlaceholderText("account code")
        self.type_combo = QComboBox()
        self.type_combo.addItems(list(TRADING_LIMIT_TYPES))
        self.amount_edit = QLineEdit()
        self.amount_edit.setPlaceholderText("amount (HKD, ≥ 0)")
        self.expiry_check = QCheckBox("expires")
        self.expiry_edit = QDateTimeEdit()
        self.expiry_edit.setTimeZone(HK)
        self.expiry_edit.setDateTime(QDateTime.currentDateTime().addDays(30))
        self.expiry_edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.expiry_edit.setCalendarPopup(True)
        self.on_call_check = QCheckBox("expire when a margin call opens")
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        rows: list[tuple[str, QWidget, QWidget | None]] = [
            ("Acc&ount", self.account_edit, None), ("T&ype", self.type_combo, None),
            ("&Amount", self.amount_edit, None), ("E&xpiry", self.expiry_edit, self.expiry_check),
            ("", self.on_call_check, None), ("&Reason", self.reason_edit, None)]
        for i, (caption, w, extra) in enumerate(rows, start=1):
            lab = QLabel(caption)
            lab.setBuddy(w)
            grid.addWidget(lab, i, 0)
            grid.addWidget(w, i, 1, 1, 1 if extra else 2)
            if extra is not None:
                grid.addWidget(extra, i, 2)
        grid.setColumnStretch(1, 1)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 7, 0, 1, 3)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 8, 0, 1, 3)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit)
        grid.addWidget(self.submit_button, 9, 2)
        sep = QFrame()
        sep.setFrameShape(QFrame.Shape.HLine)
        grid.addWidget(sep, 10, 0, 1, 3)
        self.record_label = QLabel("Selected limit: none")
        self.record_label.setProperty("role", "caption")
        self.record_label.setWordWrap(True)
        grid.addWidget(self.record_label, 11, 0, 1, 3)
        self.invalid_button = QPushButton("Set &invalid")
        self.invalid_button.setToolTip("Request that the selected limit stop applying (reason from the form)")
        self.invalid_button.clicked.connect(self.invalidate_selected)
        grid.addWidget(self.invalid_button, 12, 0, 1, 2)
        grid.setRowStretch(13, 1)
        for w in (self.account_edit, self.amount_edit, self.reason_edit):
            w.textChanged.connect(self._edited)
        self.type_combo.currentIndexChanged.connect(self._edited)
        self.expiry_check.toggled.connect(self._edited)
        self.on_call_check.toggled.connect(self._edited)
        self.expiry_edit.dateTimeChanged.connect(self._edited)
        self.reason_edit.returnPressed.connect(self.submit)
        return form

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()
        if self._submit_task is not None:
            self._submit_task.cancel()
        self._submit_task = None

    def refresh(self) -> None:
        """Read the limits again (connect `ApprovalsDock.requests_changed` here)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_trading_limits, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="client trading limits")

    def _loaded(self, snap: TradingLimitsSnapshot) -> None:
        self.snapshot = snap
        top = max((r["id"] for r in snap.rows), default=-1) + 1
        self._text_of = np.full(top, "", "<U64")
        for r in snap.rows:
            self._text_of[r["id"]] = f"{r['account']} {r['limit_type']} {r['state']}".lower()[:64]
        self.model.set_records(snap.rows)
        if not self._fitted and snap.rows:
            fit_columns(self.view, 220)
            self._fitted = True
        self.status.setStyleSheet("")
        self.status.setText(f"{len(snap.rows)} limits" + ("" if snap.may_request
                                                           else " · view only: you may not request changes"))
        self._update_form()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    # ------------------------------------------------------------------ table
    def _visible(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        mask = np.zeros(keys.shape, bool)
        inside = (keys >= 0) & (keys < self._text_of.shape[0])
        needle = self.search.text().strip().lower()
        mask[inside] = (np.char.find(self._text_of[keys[inside]], needle) >= 0) if needle else True
        return mask

    def visible_records(self) -> list[dict[str, Any]]:
        """The records the table shows, in view order."""
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    def record_for(self, account: str, limit_type: str) -> dict[str, Any] | None:
        """The stored (not pending-insert) limit of this type for this account, if any."""
        if self.snapshot is None:
            return None
        return next((r for r in self.snapshot.rows if r["account"].upper() == account.upper()
                     and r["limit_type"] == limit_type and r["status"] != "pending"), None)

    def select_record(self, record_id: int) -> bool:
        row = self.model.row_of(record_id)
        if row < 0:
            return False
        self.view.selectRow(row)
        return True

    def selected_record(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    def _row_background(self, key: int) -> QColor | None:
        rec = self.model.record(key)
        return PENDING_ROW if rec is not None and rec["request_id"] else None

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._update_form()

    # ------------------------------------------------------------------ the form
    def _expiry(self) -> datetime | None:
        if not self.expiry_check.isChecked():
            return None
        return datetime.fromtimestamp(self.expiry_edit.dateTime().toSecsSinceEpoch(), UTC)

    def _problem(self) -> tuple[dict[str, Any] | None, str]:
        if self.snapshot is not None and not self.snapshot.may_request:
            return None, "You may view trading limits but not request changes."
        if not (self.account_edit.text().strip() or self.amount_edit.text().strip()):
            return None, ""  # an empty form says nothing yet
        values, why = validate_limit(self.account_edit.text(), self.type_combo.currentText(),
                                     self.amount_edit.text(),
                                     set(self.snapshot.accounts) if self.snapshot else None, self._expiry())
        if values is not None and self.snapshot is not None:
            values["account"] = self.snapshot.accounts[values["account"].upper()]
        return values, why

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _update_form(self) -> None:
        self.expiry_edit.setEnabled(self.expiry_check.isChecked())
        values, why = self._problem()
        if values is not None:
            existing = self.record_for(values["account"], values["limit_type"])
            self.submit_button.setText("&Submit change request" + (" (replaces the current limit)"
                                                                    if existing else ""))
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        busy = self._submit_task is not None
        self.submit_button.setEnabled(values is not None and bool(self.reason_edit.text().strip()) and not busy
                                      and self.snapshot is not None)
        rec = self.selected_record()
        if rec is None:
            self.record_label.setText("Selected limit: none")
        else:
            self.record_label.setText(f"Selected limit #{rec['id']} · {rec['account']} · {rec['limit_type']} · "
                                      f"{rec['state']}" + (f" · {rec['request']}" if rec["request"] else ""))
        self.invalid_button.setEnabled(rec is not None and rec["status"] == "active" and not rec["request_id"]
                                       and not busy and (self.snapshot is None or self.snapshot.may_request))

    def _reason(self) -> str | None:
        reason = self.reason_edit.text().strip()
        if not reason:
            set_tone(self.message, "Give a reason in the Reason box: the checker decides on it.", "error")
            self.reason_edit.setFocus()
            return None
        return reason

    def submit(self) -> None:
        """Propose the form's limit; refused inline (nothing submitted) when the form is not valid."""
        if self.store is None or self.user is None or self.tasks is None or self._submit_task is not None:
            return
        if self.snapshot is None:
            return
        values, why = self._problem()
        if values is None:
            self.validation.setText(why or "Enter the account and the amount.")
            self.validation.show()
            return
        reason = self._reason()
        if reason is None:
            return
        from services import trading_limits

        self._run(trading_limits.propose,
                  (self.store, self.user, values["account"], values["limit_type"], values["amount"], reason,
                   values["expires_at"], self.on_call_check.isChecked()),
                  f"{values['limit_type']} limit for {values['account']}")

    def invalidate_selected(self) -> None:
        """Request that the selected active limit be set invalid (reason from the form)."""
        rec = self.selected_record()
        if rec is None or self.store is None or self.user is None or self._submit_task is not None:
            return
        if rec["status"] != "active" or rec["request_id"]:
            set_tone(self.message, "Only an active limit with no pending request can be set invalid.")
            return
        reason = self._reason()
        if reason is None:
            return
        from services import trading_limits

        self._run(trading_limits.set_invalid, (self.store, self.user, int(rec["id"]), reason),
                  f"set limit #{rec['id']} invalid")

    def _run(self, fn: Any, args: tuple[Any, ...], what: str) -> None:
        assert self.tasks is not None
        set_tone(self.message, "Submitting…", "info")
        self._submit_task = self.tasks.run(fn, *args, on_done=lambda rid: self._submitted(int(rid), what),
                                           on_error=self._submit_failed, name=f"submit {what}")
        self._update_form()

    def _submitted(self, req_id: int, what: str) -> None:
        self._submit_task = None
        self.reason_edit.blockSignals(True)
        self.reason_edit.clear()
        self.reason_edit.blockSignals(False)
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval ({what})", "ok")
        self._update_form()
        self.submitted.emit(req_id)
        self.refresh()

    def _submit_failed(self, e: BaseException) -> None:
        self._submit_task = None
        set_tone(self.message, error_text(e))
        self._update_form()
        self.refresh()


__all__ = ["TradingLimitsDock", "TradingLimitsSnapshot", "load_trading_limits", "validate_limit"]
