"""One row to open a corrective action on the selected record: what, owner (login), due date, button.

Shared by the loss-events register and the trade-error ticket (services/actions.py keeps the register).
"""

from __future__ import annotations

from datetime import date

from PySide6.QtCore import QDate
from PySide6.QtWidgets import QDateEdit, QHBoxLayout, QLineEdit, QPushButton


class ActionEntry(QHBoxLayout):
    def __init__(self, placeholder: str, button_text: str, due_in_days: int, owner_width: int = 140) -> None:
        super().__init__()
        self.title, self.owner = QLineEdit(), QLineEdit()
        self.title.setPlaceholderText(placeholder)
        self.owner.setPlaceholderText("owner (login)")
        self.owner.setMaximumWidth(owner_width)
        self.due = QDateEdit(QDate.currentDate().addDays(due_in_days))
        self.due.setDisplayFormat("yyyy-MM-dd")
        self.due.setCalendarPopup(True)
        self.button = QPushButton(button_text)
        for part in (self.title, self.owner, self.due, self.button):
            self.addWidget(part)
        self.setStretch(0, 1)

    def values(self) -> tuple[str, str, date]:
        """What, who and when, as the services take them."""
        d = self.due.date()
        return self.title.text(), self.owner.text(), date(d.year(), d.month(), d.day())
