"""The "Why" pane of the Pre-trade dock: one decision's order, its reasons (rule, action, threshold,
observed, message, in the engine's order) and, for the selected reason, the rule that fired — the
limit code and specific rule behind a ``CODE · rule name`` reason, or what a built-in check does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from services.pretrade_view import describe_rule, number_text
from widgets.formatting import CENTER, RIGHT
from widgets.records import MUTED_TEXT, Field, RecordTableModel, hk_time
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from services.pretrade_limits import LimitCode, LimitRule
    from services.pretrade_store import DecisionRow

DECISION_ACCENT = {"reject": "#f85149", "approval": "#e3b341", "prompt": "#58a6ff", "accept": "#c9d1d9"}
ACTION_TEXT = {"reject": QColor(248, 81, 73), "approval": QColor(227, 179, 65), "prompt": QColor(88, 166, 255)}
BOX = "color: #c9d1d9; background: #161b22; border: 1px solid #2f3845; border-radius: 3px; padding: 5px 8px;"


class DecisionDetails(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setProperty("role", "card")
        self.decision: DecisionRow | None = None
        self.codes: dict[str, LimitCode] = {}
        self.rules: list[LimitRule] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(5)
        self.head = QLabel("Select a decision to see why.")
        self.head.setWordWrap(True)
        self.head.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.head)
        self.model = RecordTableModel([
            Field("Rule", "rule"),
            Field("Action", "action", align=CENTER, foreground=lambda v: ACTION_TEXT.get(str(v))),
            Field("Threshold", "threshold_text", align=RIGHT), Field("Observed", "observed_text", align=RIGHT),
            Field("Message", "message")], self, key="key")
        self.view = make_table(self.model)
        self.view.setObjectName("pretrade_reasons")
        self.view.setSortingEnabled(False)  # the engine's order
        self.view.horizontalHeader().setSortIndicatorShown(False)
        self.model.sort(-1)
        self.view.selectionModel().currentRowChanged.connect(lambda *_: self._show_definition())
        lay.addWidget(self.view, 1)
        self.definition = QLabel("")
        self.definition.setWordWrap(True)
        self.definition.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.definition.hide()
        lay.addWidget(self.definition)

    def set_definitions(self, codes: dict[str, LimitCode], rules: list[LimitRule]) -> None:
        self.codes, self.rules = codes, rules
        self._show_definition()

    def show_decision(self, d: DecisionRow | None, release: str = "") -> None:
        self.decision = d
        if d is None:
            self.head.setText("Select a decision to see why.")
            self.model.set_records([])
            self.definition.hide()
            return
        self.head.setText(
            f"<b style='color:{DECISION_ACCENT[d.decision]}'>{d.decision.upper()}</b> · decision #{d.id} · "
            f"{d.side} {d.qty:,.0f} {d.code} @ {d.price:,.3f} · {d.account} · trader {d.trader or '—'} · notional "
            f"{d.notional:,.0f} HKD<br><span style='color:#8b949e'>{hk_time(d.ts, seconds=True)} · order "
            f"{d.client_order_id or '—'}" + (f" · release: {release}" if release else "") + "</span>")
        recs = []
        for i, r in enumerate(d.reasons):
            c = self.codes.get(str(r.get("rule", "")).partition(" · ")[0])
            metric = c.metric if c is not None else ""
            recs.append({"key": i, "rule": r.get("rule", ""), "action": r.get("action", ""),
                         "threshold_text": number_text(r.get("threshold"), metric),
                         "observed_text": number_text(r.get("observed"), metric), "message": r.get("message", "")})
        self.model.set_records(recs)
        if recs:
            self.view.selectRow(0)
            fit_columns(self.view, 240)
        self._show_definition()

    def _show_definition(self) -> None:
        d = self.decision
        if d is None:
            self.definition.hide()
            return
        if not d.reasons:
            self.definition.setText("Accepted: no check fired.")
            self.definition.setStyleSheet(f"color: {MUTED_TEXT.name()}; padding: 5px 8px;")
            self.definition.show()
            return
        idx = self.view.currentIndex()
        rec = self.model.record_at(idx.row() if idx.isValid() else 0)
        if rec is None:
            return
        self.definition.setStyleSheet(BOX)
        self.definition.setText("\n".join([f"{rec['action'].capitalize()}: {rec['message']}",
                                           *describe_rule(str(rec["rule"]), self.codes, self.rules)]))
        self.definition.show()

    def definition_text(self) -> str:
        return self.definition.text() if self.definition.isVisibleTo(self) else ""

    def records(self) -> list[dict[str, object]]:
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]


__all__ = ["ACTION_TEXT", "DECISION_ACCENT", "DecisionDetails"]
