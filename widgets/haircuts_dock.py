"""The haircuts dock (issue 4, "Haircuts"): collateral haircuts (0..1) per security and per index (the
SFC test's haircut for an index's members), with the modification records of each.

Nothing here writes the `haircuts` or `index_haircuts` tables: a new haircut is a change request
(an update of the security's row; for an index without one yet, an insert), applied once a checker
approves. A target with a request waiting on it says so ("request #12 pending → 0.35"). One
background read fills both pages; every database call runs on the task runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from services.change_kinds import INDEX_KIND, SECURITY_KIND
from services.lazy import lazy_module
from widgets.haircut_panel import HaircutPanel, HaircutTarget, pending_field, ratio_text
from widgets.records import CoalescedLoad, Field, error_text

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services import haircuts as _haircuts
    from services.auth import User
    from services.haircuts import HaircutsSnapshot
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    _haircuts = lazy_module("services.haircuts")

SUSPENDED = QColor(248, 81, 73)
NO_HAIRCUT = QColor(139, 148, 158)


def _level(v: Any) -> str:
    return "" if v != v else str(int(v))


def _security_target() -> HaircutTarget:
    fields = [Field("Code", "code"),
              Field("Name", "name"),
              Field("Level", "level", "number", fmt=_level),
              Field("Haircut", "haircut", "number", fmt=ratio_text,
                    tooltip="share of the market value not lent against (0..1)"),
              Field("Effective from", "effective_from", "time", tooltip="Hong Kong time"),
              Field("Suspended", "suspended", foreground=lambda v: SUSPENDED if v else None),
              pending_field()]

    def describe(rec: dict[str, Any]) -> str:
        hc = "none" if rec["haircut"] is None else f"{rec['haircut']:g}"
        return (f"{rec['code']} · {rec['name']} · level {rec['level']} · haircut {hc}"
                + (f" · {rec['request']}" if rec["request"] else ""))

    return HaircutTarget(SECURITY_KIND, "security", "Haircuts — collateral value discount per security", fields,
                         lambda st, u, i, v, why, rec: _haircuts.submit_haircut(st, u, i, v, why, rec["code"]), describe)


def _index_target() -> HaircutTarget:
    fields = [Field("Code", "code"),
              Field("Name", "name"),
              Field("Market", "market"),
              Field("Level", "level", "number", fmt=_level),
              Field("Members", "members", "number", fmt=_level, tooltip="securities in the index"),
              Field("Haircut", "haircut", "number", fmt=lambda v: "none" if v != v else f"{v:g}",
                    foreground=lambda v: NO_HAIRCUT if v != v else None,
                    tooltip="the SFC liquid-capital test's haircut for the index's members (0..1)"),
              Field("Effective from", "effective_from", "time", tooltip="Hong Kong time"),
              pending_field()]

    def describe(rec: dict[str, Any]) -> str:
        hc = "none yet (a request creates it)" if rec["haircut"] is None else f"{rec['haircut']:g}"
        return (f"{rec['code']} · {rec['name']} · level {rec['level']} · {rec['members']} members · haircut {hc}"
                + (f" · {rec['request']}" if rec["request"] else ""))

    return HaircutTarget(INDEX_KIND, "index", "Index haircuts — used by the SFC liquid-capital test", fields,
                         lambda st, u, i, v, why, _rec: _haircuts.submit_index_haircut(st, u, i, v, why), describe)


class HaircutsDock(QWidget):
    """Two pages — security haircuts and index haircuts — filled by one background read."""

    submitted = Signal(int)
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: HaircutsSnapshot | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.securities = HaircutPanel(_security_target())
        self.indices = HaircutPanel(_index_target())
        self.tabs.addTab(self.securities, "Securities")
        self.tabs.addTab(self.indices, "Index haircuts")
        lay.addWidget(self.tabs)
        for page in (self.securities, self.indices):
            page.submitted.connect(self._submitted)
            page.refresh_requested.connect(self.refresh)

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        for page in (self.securities, self.indices):
            page.set_context(store, user, tasks)
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()
        for page in (self.securities, self.indices):
            page.stop()

    def refresh(self) -> None:
        """Read both tables again (connected to `ApprovalsDock.requests_changed`)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(_haircuts.load_haircuts, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="haircuts")

    def _loaded(self, snap: HaircutsSnapshot) -> None:
        self.snapshot = snap
        self.securities.show_rows(snap.securities, snap.security_records, snap.may_request)
        self.indices.show_rows(snap.indices, snap.index_records, snap.may_request_index)
        n = sum(1 for r in snap.indices if r["haircut"] is None)
        self.tabs.setTabToolTip(1, f"{n} of {len(snap.indices)} indices without a haircut" if n else "")
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        for page in (self.securities, self.indices):
            page.show_error(f"refresh failed: {error_text(e)}")

    def _submitted(self, req_id: int) -> None:
        self.submitted.emit(req_id)
        self.refresh()


__all__ = ["HaircutsDock"]
