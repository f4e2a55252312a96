"""Docks added to the main window from a catalogue (one line per dock).

A catalogue dock is a QWidget class constructed with no arguments that provides:
    set_context(store, user, tasks)   after login (store: services.store.Store, user: services.auth.User,
                                      tasks: app.tasks.TaskRunner — run DB work there, never on the GUI thread)
    refresh()                         reload (also called after any four-eyes decision when
                                      ``refresh_on_approval``)
    stop()                            stop timers / listeners on shutdown
and optionally:
    set_monitor(monitor)              the running services.live.LiveMonitor (called by MainWindow.attach)
    open_dock = Signal(str)           ask the window to raise the dock with that object name
    account_selected = Signal(int)    engine account index: the drill-down shows it

The dock's object name is its stable identity in saved layouts; the workspace puts it in one of the
View ▸ Workspaces sets. The widget is built (and its module imported) the first time its dock is shown,
unless ``eager``: a dock that runs timers of its own (automatic liquidation) must exist from the start.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DockSpec:
    module: str  # e.g. "widgets.incidents_dock"
    cls: str  # e.g. "IncidentsDock"
    title: str  # dock title shown to the user
    object_name: str  # stable objectName (saveState)
    workspace: str  # one of WORKSPACES' keys
    refresh_on_approval: bool = True
    eager: bool = False  # built when the window opens (it runs timers of its own), not when first shown

    def build(self) -> Any:
        return getattr(importlib.import_module(self.module), self.cls)()


CATALOGUE: tuple[DockSpec, ...] = (
    DockSpec("widgets.call_work_dock", "CallWorkDock", "Margin-call work", "call_work", "Margin desk"),
    DockSpec("widgets.kri_dashboard", "KriDashboard", "KRI dashboard", "kri_dashboard", "Operational risk"),
    DockSpec("widgets.incidents_dock", "IncidentsDock", "Incidents", "incidents", "Operational risk"),
    DockSpec("widgets.actions_dock", "ActionsDock", "Corrective actions", "corrective_actions", "Operational risk"),
    DockSpec("widgets.rcsa_dock", "RcsaDock", "RCSA register", "rcsa", "Operational risk"),
    DockSpec("widgets.nb_review_dock", "NbReviewDock", "New-business review", "nb_review", "Operational risk"),
    DockSpec("widgets.recon_dock", "ReconDock", "Reconciliation", "reconciliation", "Operational risk"),
    DockSpec("widgets.loss_events_dock", "LossEventsDock", "Loss events", "loss_events", "Operational risk"),
    DockSpec("widgets.trade_errors_dock", "TradeErrorsDock", "Trade errors", "trade_errors", "Operational risk"),
    DockSpec("widgets.overview_dock", "OverviewDock", "Risk overview", "risk_overview", "Margin desk",
             eager=True),
    DockSpec("widgets.positions_ops_dock", "PositionsOpsDock", "Positions and collections", "positions_ops",
             "Margin desk"),
    DockSpec("widgets.borrowing_dock", "BorrowingDock", "Currency borrowing", "currency_borrowing", "Margin desk"),
    DockSpec("widgets.liquidation_orders_dock", "LiquidationOrdersDock", "Liquidation orders", "liquidation_orders",
             "Margin desk", eager=True),  # its timer runs automatic liquidation

)

# View ▸ Workspaces: the bottom-area docks each set shows (tabbed, first one raised); alerts and the
# drill-down always stay. Catalogue docks join their workspace automatically.
WORKSPACES: dict[str, tuple[str, ...]] = {
    "Margin desk": ("risk_overview", "margin_table", "feed", "credit", "pretrade"),
    "Parameters": ("approvals", "risk_parameters", "margin_requirements", "client_margin", "haircuts",
                   "short_sell", "trading_limits", "limits", "lists", "indices"),
    "Stress and LCS": ("stress", "lcs", "indices"),
    "Operational risk": (),
    "Oversight": ("approvals", "audit_trail"),
}


def workspace_docks(name: str) -> tuple[str, ...]:
    """The object names a workspace shows: its fixed docks and the catalogue docks that join it."""
    fixed = WORKSPACES.get(name, ())
    extra = tuple(s.object_name for s in CATALOGUE if s.workspace == name and s.object_name not in fixed)
    return fixed + extra
