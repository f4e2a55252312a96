"""The Pre-trade dock (issue 5, "The desk's view"): the live stream of the order-check service's
decisions, filtered by decision, trader and account, the counts per reason of what is shown, and a
click-through from a decision to its reasons and to the limit (or built-in check) that fired.

Every second a background read (`pretrade_view.poll_decisions`, through `CoalescedLoad`) fetches the
decisions newer than the last one shown, with the release state of the ``approval`` decisions still
waiting for their four-eyes release; the new rows are appended as numpy columns (at most
`MAX_ROWS` kept, the oldest dropped) and the table is told with row inserts, never a reset. Rows are
keyed by a dense running number, re-based now and then so the model's key space stays small.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.calendar import HK_TZ
from services.pretrade import DECISIONS
from services.pretrade_view import MAX_ROWS, decision_counts, decision_mask
from widgets.array_model import ArrayTableModel, Column, number_column
from widgets.formatting import CENTER, money, price, quantity
from widgets.pretrade_details import DECISION_ACCENT, DecisionDetails
from widgets.records import (
    BADGE_TEXT,
    ERROR_COLOUR,
    OK_COLOUR,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    hk_time,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.pretrade_limits import LimitCode, LimitRule
    from services.pretrade_store import DecisionRow
    from services.store import Store

DECISION_BADGE = {"reject": QColor(178, 30, 38), "approval": QColor(176, 128, 10), "prompt": QColor(31, 98, 190)}
POLL_MS = 1000
REBASE_AT = 4 * MAX_ROWS  # keys above this are renumbered from 0


def _stream_time(v: Any) -> str:
    """``16:08:33`` today (Hong Kong), ``11-21 16:08:33`` on another day."""
    text = hk_time(v, seconds=True)
    if not text:
        return ""
    today = datetime.now(HK_TZ).strftime("%Y-%m-%d")
    return text[11:] if text.startswith(today) else text[5:]


def _load_definitions(store: Store) -> tuple[list[LimitCode], list[LimitRule]]:
    from services.pretrade_store import limit_codes, limit_rules

    return limit_codes(store), limit_rules(store)


class PretradeDock(QWidget):
    """Decisions as they are made, counts per reason, and the selected decision's reasons."""

    refreshed = Signal()  # after each applied poll
    decision_shown = Signal(int)  # the decision id whose reasons are now shown

    def __init__(self, parent: QWidget | None = None, max_rows: int = MAX_ROWS) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.max_rows = max_rows
        self.rows: list[DecisionRow] = []
        self.cols: dict[str, np.ndarray] = {}
        self.last_id = 0
        self._first = 0  # key of rows[0]
        self._mask = np.zeros(0, bool)
        self.codes: dict[str, LimitCode] = {}
        self.rules: list[LimitRule] = []
        self._rule_keys: dict[str, int] = {}
        self._poll = CoalescedLoad(self._start_poll, self._polled, self._poll_failed)
        self._defs = CoalescedLoad(self._start_defs, self._defs_loaded, self._poll_failed)
        self._fitted = self._counts_fitted = False
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._tick)
        self._reset_columns()
        self._build_ui()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        title = QLabel("Pre-trade decisions — live")
        title.setProperty("role", "caption")
        bar.addWidget(title)
        self.decision_combo = QComboBox()
        self.decision_combo.addItem("All decisions", "")
        for d in DECISIONS:
            self.decision_combo.addItem(d.capitalize(), d)
        self.trader_edit = QLineEdit()
        self.trader_edit.setPlaceholderText("trader")
        self.account_edit = QLineEdit()
        self.account_edit.setPlaceholderText("account")
        for w in (self.trader_edit, self.account_edit):
            w.setClearButtonEnabled(True)
            w.setMaximumWidth(170)
            w.textChanged.connect(self._filter_changed)
        self.decision_combo.currentIndexChanged.connect(self._filter_changed)
        for widget in (self.decision_combo, self.trader_edit, self.account_edit):
            bar.addWidget(widget)
        self.summary = QLabel("")
        bar.addWidget(self.summary)
        bar.addStretch(1)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        self.model = ArrayTableModel(self._columns(), self)
        self.model.set_filter(lambda keys: self._mask[np.asarray(keys, np.int64) - self._first])
        self.view = make_table(self.model)
        self.view.setObjectName("pretrade_decisions")
        self.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)  # newest first
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

        self.details = DecisionDetails()

        self.counts_model = RecordTableModel([
            Field("Reason (rule)", "rule"),
            Field("Total", "total", "number", fmt=lambda v: f"{int(v):,}"),
            Field("Reject", "reject", "number", fmt=lambda v: f"{int(v):,}" if v else ""),
            Field("Approval", "approval", "number", fmt=lambda v: f"{int(v):,}" if v else ""),
            Field("Prompt", "prompt", "number", fmt=lambda v: f"{int(v):,}" if v else "")], self, key="key")
        self.counts_view = make_table(self.counts_model)
        self.counts_view.setObjectName("pretrade_counts")
        self.counts_view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        counts = QWidget()
        cl = QVBoxLayout(counts)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(3)
        cap = QLabel("Reasons of the orders shown, by the action each asked for")
        cap.setProperty("role", "caption")
        cl.addWidget(cap)
        cl.addWidget(self.counts_view, 1)

        self.side_tabs = QTabWidget()
        self.side_tabs.setDocumentMode(True)
        self.side_tabs.addTab(counts, "Counts per reason")
        self.side_tabs.addTab(self.details, "Why (selected order)")
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        split.addWidget(self.side_tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([600, 400])
        lay.addWidget(split, 1)

    def _columns(self) -> list[Column]:
        def col(name: str) -> Any:
            return lambda keys: self.cols[name][self._pos(keys)]

        def badge(key: int) -> QColor | None:
            return DECISION_BADGE.get(str(self.cols["decision"][self._pos(np.array([key]))[0]]))

        def badge_text(key: int) -> QColor | None:
            return BADGE_TEXT if badge(key) is not None else None

        def release_fg(key: int) -> QColor | None:
            v = str(self.cols["release"][self._pos(np.array([key]))[0]])
            return QColor(OK_COLOUR) if v == "released" else QColor(227, 179, 65) if v else None

        return [
            Column("Time", col("ts"), _stream_time, tooltip="Hong Kong time (the date when not today)"),
            Column("Decision", col("decision"), str, CENTER, background=badge, foreground=badge_text),
            Column("Account", col("account")),
            Column("Trader", col("trader")),
            Column("Security", col("code")),
            Column("Side", col("side"), str, CENTER),
            number_column("Quantity", col("qty"), quantity),
            number_column("Price", col("price"), price),
            number_column("Notional (HKD)", col("notional"), money),
            Column("Reasons", col("rules"), tooltip="the rule of every reason, most severe decides"),
            Column("Release", col("release"), foreground=release_fg,
                   tooltip="an approval decision's four-eyes order release"),
            Column("Order id", col("client_order_id")),
            number_column("Decision #", col("id"), lambda v: f"{int(v)}"),
        ]

    def _pos(self, keys: Any) -> np.ndarray:
        pos = np.asarray(keys, np.int64) - self._first
        if pos.size and (pos.min() < 0 or pos.max() >= len(self.rows)):
            raise IndexError("a decision row no longer kept")
        return pos

    def _reset_columns(self) -> None:
        from services.pretrade_view import decision_columns

        self.cols = decision_columns([])
        self._mask = np.zeros(0, bool)

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self._defs.request()
        self._poll.request()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._poll.cancel()
        self._defs.cancel()

    def refresh(self) -> None:
        """Read new decisions and release states now, and the limit definitions again (connected to
        `ApprovalsDock.requests_changed`: a release or a limit change was decided)."""
        if self.store is None or self.tasks is None:
            return
        self._defs.request()
        self._poll.request()

    def _tick(self) -> None:
        if self.isVisible():  # a hidden dock catches up when shown
            self._poll.request()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.store is not None:
            self._poll.request()

    def _start_poll(self, on_done: Any, on_error: Any) -> Any:
        from services.pretrade_view import poll_decisions

        assert self.tasks is not None
        waiting = np.flatnonzero((self.cols["decision"] == "approval") & (self.cols["release"] != "released"))
        watch = self.cols["id"][waiting[-500:]].tolist()
        return self.tasks.run(poll_decisions, self.store, self.last_id, watch, self.max_rows, on_done=on_done,
                              on_error=on_error, name="pre-trade decisions")

    def _start_defs(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(_load_definitions, self.store, on_done=on_done, on_error=on_error,
                              name="limit definitions")

    def _defs_loaded(self, result: tuple[list[LimitCode], list[LimitRule]]) -> None:
        codes, self.rules = result
        self.codes = {c.code: c for c in codes}
        self.details.set_definitions(self.codes, self.rules)

    def _poll_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    def _polled(self, poll: Any) -> None:
        changed = self._apply_releases(poll.releases)
        if poll.rows:
            self._append(poll.rows, poll.columns)
        elif changed.size:
            self.model.update_rows(changed)
        if changed.size or poll.rows:
            self._update_counts()
        if poll.rows and not self._fitted:
            fit_columns(self.view, 200)
            self._fitted = True
        self.status.setStyleSheet("")
        self.status.setText(f"{len(self.rows):,} decisions kept" if self.rows else "no decisions yet")
        self.refreshed.emit()

    def _apply_releases(self, releases: dict[int, str]) -> np.ndarray:
        if not releases or not self.rows:
            return np.zeros(0, np.int64)
        ids = self.cols["id"]
        want = np.array(list(releases), np.int64)
        pos = np.searchsorted(ids, want)  # ids are ascending
        ok = (pos < ids.shape[0]) & (ids[np.minimum(pos, ids.shape[0] - 1)] == want)
        changed = []
        for p, i in zip(pos[ok].tolist(), want[ok].tolist(), strict=True):
            if self.cols["release"][p] != releases[i]:
                self.cols["release"][p] = releases[i]
                changed.append(p + self._first)
        return np.array(changed, np.int64)

    def _append(self, rows: list[DecisionRow], cols: dict[str, np.ndarray]) -> None:
        current = self.selected_decision()
        self.rows.extend(rows)
        self.cols = {k: np.concatenate([self.cols[k], cols[k]]) for k in self.cols}
        self.last_id = max(self.last_id, rows[-1].id)
        drop = len(self.rows) - self.max_rows
        if drop > 0:
            del self.rows[:drop]
            self.cols = {k: v[drop:] for k, v in self.cols.items()}
            self._first += drop
        self._compute_mask()
        keys = np.arange(self._first, self._first + len(self.rows), dtype=np.int64)
        if self._first > REBASE_AT:  # keep the model's key space small: renumber from 0 (one reset)
            self._first = 0
            self.model.reset(keys - keys[0] if keys.size else keys)
            if current is not None:
                self.select_decision(current.id)
        else:
            self.model.set_keys(keys)

    # ------------------------------------------------------------------ filters and counts
    def _compute_mask(self) -> None:
        self._mask = decision_mask(self.cols, str(self.decision_combo.currentData() or ""),
                                   self.trader_edit.text(), self.account_edit.text())

    def _filter_changed(self) -> None:
        self._compute_mask()
        self.model.refilter()
        self._update_counts()

    def _update_counts(self) -> None:
        from services.pretrade_store import reason_counts

        shown = np.flatnonzero(self._mask)
        counts = reason_counts([self.rows[i] for i in shown.tolist()])
        recs = []
        for rule, by in counts.items():
            key = self._rule_keys.setdefault(rule, len(self._rule_keys))
            recs.append({"key": key, "rule": rule, "prompt": by.get("prompt", 0), "approval": by.get("approval", 0),
                         "reject": by.get("reject", 0), "total": sum(by.values())})
        self.counts_model.set_records(recs)
        if recs and not self._counts_fitted:
            fit_columns(self.counts_view, 170)
            self._counts_fitted = True
        per = decision_counts(self.cols, self._mask)
        parts = [f"<span style='color:{DECISION_ACCENT[d]}'>{per[d]:,} {d}</span>" for d in DECISIONS]
        self.summary.setText(f"{int(shown.size):,} shown · " + " · ".join(parts))

    def counts(self) -> dict[str, dict[str, int]]:
        """The counts table as shown: rule → {prompt, approval, reject, total}."""
        out = {}
        for r in range(self.counts_model.rowCount()):
            rec = self.counts_model.record_at(r)
            if rec is not None:
                out[rec["rule"]] = {k: int(rec[k]) for k in ("prompt", "approval", "reject", "total")}
        return out

    def visible_decisions(self) -> list[DecisionRow]:
        """The decisions the table shows, in view order."""
        return [self.rows[self.model.key_at(r) - self._first] for r in range(self.model.rowCount())]

    # ------------------------------------------------------------------ click-through
    def select_decision(self, decision_id: int) -> bool:
        ids = self.cols["id"]
        p = int(np.searchsorted(ids, decision_id))
        if p >= ids.shape[0] or ids[p] != decision_id:
            return False
        row = self.model.row_of(p + self._first)
        if row < 0:
            return False
        self.view.selectRow(row)
        return True

    def selected_decision(self) -> DecisionRow | None:
        idx = self.view.currentIndex()
        if not idx.isValid():
            return None
        p = self.model.key_at(idx.row()) - self._first
        return self.rows[p] if 0 <= p < len(self.rows) else None

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        d = self.selected_decision()
        release = str(self.cols["release"][int(np.searchsorted(self.cols["id"], d.id))]) if d else ""
        self.details.show_decision(d, release)
        if d is not None:
            self.side_tabs.setCurrentIndex(1)
            self.decision_shown.emit(d.id)

    def definition_text(self) -> str:
        return self.details.definition_text()


__all__ = ["PretradeDock"]
