"""Two pages of the indices dock: the members of one index (add / remove as four-eyes requests of kind
``index_member``, bulk import through the File ▸ Import kind ``index-members``), and every security
with the stock level its index membership gives it (RISK_METHODS §4).

The pages show what the dock's background read delivered (`services.indices.IndicesSnapshot`) and
submit through the dock; they never read the database themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from widgets.formatting import CENTER
from widgets.records import ERROR_COLOUR, MUTED_TEXT, OVERDUE_TEXT, Field, RecordTableModel
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from services.indices import IndicesSnapshot
    from widgets.index_dock import IndexDock


def _level(v: Any) -> str:
    return "" if v != v else str(int(v))


def caption(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "caption")
    return label


def member_fields() -> list[Field]:
    return [Field("Security", "code"), Field("Name", "name"), Field("Market", "market"),
            Field("Level", "level", "number", fmt=_level, align=CENTER,
                  tooltip="the security's stock level: the lowest level of any index holding it"),
            Field("Request", "request", foreground=lambda v: OVERDUE_TEXT if v else None,
                  tooltip="a change request waiting for approval in the Approvals dock")]


class MembersPage(QWidget):
    """Members of the index chosen above; a form to add or remove one, and the bulk import."""

    import_requested = Signal()

    def __init__(self, dock: IndexDock) -> None:
        super().__init__()
        self.dock = dock
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(4)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Index"))
        self.index_combo = QComboBox()
        self.index_combo.setMinimumWidth(280)
        self.index_combo.currentIndexChanged.connect(lambda _i: self.show_members())
        bar.addWidget(self.index_combo)
        self.count = caption("")
        bar.addWidget(self.count)
        bar.addStretch(1)
        self.import_button = QPushButton("Bulk import…")
        self.import_button.setToolTip("File ▸ Import, kind index-members: one row per (index, security)")
        self.import_button.clicked.connect(self.import_requested.emit)
        bar.addWidget(self.import_button)
        lay.addLayout(bar)
        self.model = RecordTableModel(member_fields(), self,
                                      row_foreground=lambda r: None if r.get("member") else MUTED_TEXT)
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(lambda *_: self.update_form())
        lay.addWidget(self.view, 1)

        card = QFrame()
        card.setProperty("role", "card")
        grid = QGridLayout(card)
        grid.setContentsMargins(10, 6, 10, 6)
        grid.setHorizontalSpacing(8)
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText("security code, e.g. 700.HK")
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        for e in (self.code_edit, self.reason_edit):
            e.textChanged.connect(lambda _t: self.update_form())
        grid.addWidget(QLabel("Security"), 0, 0)
        grid.addWidget(self.code_edit, 0, 1)
        grid.addWidget(QLabel("Reason"), 0, 2)
        grid.addWidget(self.reason_edit, 0, 3)
        self.add_button = QPushButton("&Add to index")
        self.add_button.clicked.connect(self.add_member)
        self.remove_button = QPushButton("Remove &selected")
        self.remove_button.clicked.connect(self.remove_member)
        for b in (self.add_button, self.remove_button):
            b.setAutoDefault(False)
        grid.addWidget(self.add_button, 0, 4)
        grid.addWidget(self.remove_button, 0, 5)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 2)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        grid.addWidget(self.validation, 1, 1, 1, 5)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 2, 0, 1, 6)
        lay.addWidget(card)
        self._fitted = False

    # ------------------------------------------------------------------ data
    def loaded(self, snap: IndicesSnapshot) -> None:
        current = self.index_id()
        self.index_combo.blockSignals(True)
        self.index_combo.clear()
        for r in sorted((r for r in snap.indices if not r["new"]), key=lambda r: (r["level"], r["code"])):
            self.index_combo.addItem(f"{r['code']} · {r['name']} (level {r['level']})", int(r["id"]))
        at = self.index_combo.findData(current) if current is not None else -1
        self.index_combo.setCurrentIndex(at if at >= 0 else (0 if self.index_combo.count() else -1))
        self.index_combo.blockSignals(False)
        self.import_button.setEnabled(snap.may_request_member)
        self.show_members()

    def select_index(self, index_id: int) -> None:
        at = self.index_combo.findData(index_id)
        if at >= 0:
            self.index_combo.setCurrentIndex(at)

    def index_id(self) -> int | None:
        v = self.index_combo.currentData()
        return None if v is None else int(v)

    def index_code(self) -> str:
        snap, iid = self.dock.snapshot, self.index_id()
        rec = next((r for r in snap.indices if int(r["id"]) == iid), None) if snap else None
        return str(rec["code"]) if rec else ""

    def rows(self) -> list[dict[str, Any]]:
        snap, iid = self.dock.snapshot, self.index_id()
        return snap.members.get(iid, []) if snap is not None and iid is not None else []

    def show_members(self) -> None:
        rows = self.rows()
        self.model.set_records(rows)
        n = sum(1 for r in rows if r["member"])
        self.count.setText(f"{n} member{'s' if n != 1 else ''}" if self.index_id() is not None else "no index yet")
        if rows and not self._fitted:
            fit_columns(self.view, 240)
            self._fitted = True
        self.update_form()

    def selected(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    # ------------------------------------------------------------------ form
    def problem(self) -> str:
        snap = self.dock.snapshot
        code = self.code_edit.text().strip().upper()
        if snap is None:
            return "Loading…"
        if not snap.may_request_member:
            return "You may view membership but not request changes."
        if self.index_id() is None:
            return "Choose an index."
        if not code:
            return ""
        if code not in snap.security_ids:
            return f"Unknown security “{code}”."
        sid = snap.security_ids[code]
        for r in self.rows():
            if r["id"] == sid:
                return f"{code}: {r['request']}." if r["request"] else f"{code} is already in {self.index_code()}."
        if not self.reason_edit.text().strip():
            return "Give a reason: the checker decides on it."
        return ""

    def update_form(self) -> None:
        why = self.problem()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        typed = bool(self.code_edit.text().strip())
        self.code_edit.setStyleSheet(f"border: 1px solid {ERROR_COLOUR}" if why and typed
                                     and "reason" not in why.lower() else "")
        idle = self.dock.busy is None
        self.add_button.setEnabled(idle and typed and not why)
        m, snap = self.selected(), self.dock.snapshot
        self.remove_button.setEnabled(idle and m is not None and m["member"] and not m["request"]
                                      and snap is not None and snap.may_request_member
                                      and bool(self.reason_edit.text().strip()))

    def add_member(self) -> None:
        why, iid = self.problem(), self.index_id()
        code = self.code_edit.text().strip().upper()
        if why or not code or iid is None:
            self.validation.setText(why or "Enter the security code.")
            self.validation.show()
            return
        self.dock.submit_member(iid, code, self.reason_edit.text().strip(), False, f"{code} → {self.index_code()}")

    def remove_member(self) -> None:
        m, iid, reason = self.selected(), self.index_id(), self.reason_edit.text().strip()
        if m is None or iid is None:
            why = "Select the security to remove."
        elif not m["member"] or m["request"]:
            why = f"{m['request'] or m['code'] + ' is not a member'}: decide or cancel it first."
        elif not reason:
            why = "Give a reason: the checker decides on it."
        else:
            self.dock.submit_member(iid, m["code"], reason, True, f"{m['code']} out of {self.index_code()}")
            return
        self.validation.setText(why)
        self.validation.show()

    def clear_form(self) -> None:
        for e in (self.code_edit, self.reason_edit):
            e.blockSignals(True)
            e.clear()
            e.blockSignals(False)
        self.update_form()


class SecuritiesPage(QWidget):
    """Every security with its derived stock level and the indices that hold it."""

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(4)
        self.model = RecordTableModel([
            Field("Code", "code"), Field("Name", "name"), Field("Market", "market"),
            Field("Level", "level", "number", fmt=_level, align=CENTER,
                  tooltip="derived: the lowest level of any index holding it; in no index: 3"),
            Field("Indices", "indices", tooltip="the indices that hold it"),
            Field("Pending", "request", foreground=lambda v: OVERDUE_TEXT if v else None)], self)
        bar = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("search code / name / index")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(220)
        self.search.setMaximumWidth(260)
        self.search.textChanged.connect(self.model.refilter)
        bar.addWidget(self.search)
        self.level_combo = QComboBox()
        for text, lv in (("All levels", 0), ("Level 1", 1), ("Level 2", 2), ("Level 3", 3)):
            self.level_combo.addItem(text, lv)
        self.level_combo.currentIndexChanged.connect(self.model.refilter)
        bar.addWidget(self.level_combo)
        bar.addStretch(1)
        self.count = caption("")
        bar.addWidget(self.count)
        lay.addLayout(bar)
        self._text = np.zeros(0, "<U160")
        self._level = np.zeros(0, np.int64)
        self.model.set_filter(self._visible)
        self.model.rowsInserted.connect(lambda *_: self._count())
        self.model.rowsRemoved.connect(lambda *_: self._count())
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        lay.addWidget(self.view, 1)
        self._fitted = False
        self._n = 0

    def loaded(self, snap: IndicesSnapshot) -> None:
        rows = snap.securities
        top = max((r["id"] for r in rows), default=-1) + 1
        self._text = np.full(top, "", "<U160")
        self._level = np.zeros(top, np.int64)
        for r in rows:
            self._text[r["id"]] = f"{r['code']} {r['name']} {r['indices']}".lower()[:160]
            self._level[r["id"]] = r["level"]
        self._n = len(rows)
        self.model.set_records(rows)
        self.model.refilter()
        if rows and not self._fitted:
            fit_columns(self.view, 260)
            self._fitted = True
        self._count()

    def _visible(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        mask = np.zeros(keys.shape, bool)
        ok = (keys >= 0) & (keys < self._text.shape[0])
        k = keys[ok]
        m = np.ones(k.shape, bool)
        needle = self.search.text().strip().lower()
        if needle:
            m &= np.char.find(self._text[k], needle) >= 0
        lv = int(self.level_combo.currentData() or 0)
        if lv:
            m &= self._level[k] == lv
        mask[ok] = m
        return mask

    def _count(self) -> None:
        lv = np.bincount(self._level[self._level > 0], minlength=4)[1:] if self._n else np.zeros(3, np.int64)
        self.count.setText(f"{self.model.rowCount():,} of {self._n:,} securities · level 1: {lv[0]:,} · "
                           f"level 2: {lv[1]:,} · level 3: {lv[2]:,}")
