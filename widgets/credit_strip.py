"""The credit dock's company strip: total loans against the total-financing cap and against five
times capital (the SFC rule), and how many financing limits exceed the per-client maximum — red
when breached. Fed by the dock from its copies of the live arrays and the store's company limits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from widgets.credit_parts import short_money
from widgets.formatting import money
from widgets.records import ERROR_COLOUR

BREACH_STYLE = f"color: {ERROR_COLOUR}; font-weight: 600"


class CompanyLimitsStrip(QFrame):
    """Three company-limit figures and the dock's Refresh button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setProperty("role", "card")
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 10, 6)
        self.total_financing_label = QLabel("")
        self.five_x_label = QLabel("")
        self.per_client_label = QLabel("")
        for w in (self.total_financing_label, self.five_x_label, self.per_client_label):
            row.addWidget(w, 1)
        self.refresh_button = QPushButton("Refresh")
        row.addWidget(self.refresh_button)

    def show_totals(self, loan: np.ndarray, limit: np.ndarray, company: dict[str, Any]) -> None:
        """``loan`` and ``limit`` per account (HKD); ``company`` as `CreditUsage.company` (may be empty)."""
        total = float(loan.sum())
        cap, five_x, per_client = (company.get("total_financing_cap"), company.get("five_x_capital"),
                                   company.get("per_client_max"))

        def show(label: QLabel, title: str, bound: float | None) -> None:
            if bound is None:
                label.setText(f"{title}: {short_money(total)} / —")
                label.setStyleSheet("")
                return
            pct = f" ({total / bound * 100:.1f}%)" if bound > 0 else ""
            label.setText(f"{title}: {short_money(total)} / {short_money(bound)}{pct}")
            label.setToolTip(f"{money(total)} / {money(bound)}")
            label.setStyleSheet(BREACH_STYLE if total > bound else "")

        show(self.total_financing_label, "Loans vs financing cap", cap)
        show(self.five_x_label, "Loans vs 5 × capital", five_x)
        breaches = 0 if per_client is None else int((limit > per_client).sum())
        self.per_client_label.setText("Per-client max: —" if per_client is None else
                                      f"Limits above per-client max ({short_money(per_client)}): {breaches}")
        self.per_client_label.setStyleSheet(BREACH_STYLE if breaches else "")
