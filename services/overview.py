"""The risk overview (issue 8): the firm's risk at a glance, each figure pointing at its panel.

Two halves, so that the live half costs nothing on the GUI timer and the stored half runs in a worker:

- `live_figures(engine, stale)`: credit and technology from the live margin engine's arrays (loans,
  accounts in call / force, call amount, over their financing limit, stale prices) — vectorised sums.
- `store_figures(store)`: liquidity (the latest LCS test's buffer and result, the latest stress run),
  operational (KRIs shown red, open incidents and the overdue ones, overdue corrective actions, open
  breaks) and compliance (pending approvals, pre-trade rejects and approvals today) — one short
  query each in one transaction; KRI colours come from services.kri (amber for more than five
  business days is red).

A `Figure` carries its value, a display text, a level (ok / warn / bad / none) and the object name
of the dock that explains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from services.store import Store

AREAS = ("Credit", "Liquidity", "Operational", "Technology", "Compliance")


@dataclass(frozen=True)
class Figure:
    key: str
    area: str
    label: str
    value: float | None
    display: str
    level: str  # "ok" | "warn" | "bad" | "none"
    dock: str  # object name of the dock that explains it
    hint: str = ""


def _money(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:,.2f} bn"
    if a >= 1e6:
        return f"{v / 1e6:,.1f} m"
    return f"{v:,.0f}"


def _count(key: str, area: str, label: str, n: int, dock: str, warn_at: int = 1, bad_at: int | None = None,
           hint: str = "") -> Figure:
    level = "ok"
    if bad_at is not None and n >= bad_at:
        level = "bad"
    elif n >= warn_at:
        level = "warn"
    return Figure(key, area, label, float(n), f"{n:,}", level, dock, hint)


def live_figures(engine: Any, stale: np.ndarray | None = None, feed_state: str = "no feed") -> list[Figure]:
    """Credit and technology figures from the live engine (arrays over every account)."""
    status = np.bincount(np.asarray(engine.status, np.int64), minlength=4)
    loan = np.asarray(engine.loan, float)
    limit = np.asarray(engine.book.financing_limit, float)
    over = int(np.count_nonzero(loan > limit + 0.005))
    calls = int(status[2] + status[3])
    call_amount = float(np.asarray(engine.call_amount, float).sum())
    out = [
        Figure("loans", "Credit", "Total loans (HKD)", float(loan.sum()), _money(float(loan.sum())), "none",
               "margin_table", "margin financing outstanding across all accounts"),
        _count("calls", "Credit", "Accounts in call or force", calls, "margin_alerts", warn_at=1,
               bad_at=max(1, int(status[3])) if status[3] else None,
               hint=f"{int(status[2]):,} in call, {int(status[3]):,} in force"),
        Figure("call_amount", "Credit", "Call amount (HKD)", call_amount, _money(call_amount),
               "warn" if call_amount > 0 else "ok", "margin_alerts", "sum of the amounts that restore IM"),
        _count("over_limit", "Credit", "Over financing limit", over, "credit",
               hint="accounts whose loan exceeds their financing limit"),
    ]
    n_stale = int(np.count_nonzero(stale)) if stale is not None else 0
    feed_level = {"live": "ok", "no feed": "none"}.get(feed_state, "bad")
    out.append(Figure("feed", "Technology", "Price feed", None, feed_state, feed_level, "feed",
                      "state of the ZeroMQ price/position feed"))
    out.append(_count("stale", "Technology", "Stale prices", n_stale, "feed", warn_at=1,
                      hint="securities whose last price is older than the stale threshold"))
    return out


def _scalar(conn: Any, sql: str, **args: Any) -> Any:
    from sqlalchemy import text  # here: the overview dock is built before SQLAlchemy is loaded

    return conn.execute(text(sql), args).scalar()


def store_figures(store: Store, now: datetime | None = None) -> list[Figure]:
    """Liquidity, operational and compliance figures from the store (one transaction)."""
    from services import kri
    from services.risk_runs import runs

    now = now or datetime.now(UTC)
    today = now.date()
    out: list[Figure] = []
    lcs_runs = [r for r in runs(store, "lcs", limit=20) if r.status == "done"]
    if lcs_runs:
        s = lcs_runs[0].summary  # the stored summary: no need to unpack the run's book and results
        buffer = float(s.get("buffer", 0.0))
        passed = bool(s.get("pass"))
        out.append(Figure("lcs_buffer", "Liquidity", "LCS buffer (HKD)", buffer, _money(buffer),
                          "ok" if passed else "bad", "lcs", f"latest LCS test #{lcs_runs[0].id}: "
                          + ("PASS" if passed else "FAIL")))
    else:
        out.append(Figure("lcs_buffer", "Liquidity", "LCS buffer (HKD)", None, "no test yet", "none", "lcs",
                          "run the liquid-capital-shortfall test"))
    stress_runs = [r for r in runs(store, "stress", limit=20) if r.status == "done"]
    if stress_runs:
        s = stress_runs[0].summary
        total = float(s.get("total_call_amount", 0.0) or 0.0)
        out.append(Figure("stress_call", "Liquidity", "Stressed call amount (HKD)", total, _money(total),
                          "warn" if total > 0 else "ok", "stress",
                          f"latest stress run #{stress_runs[0].id} ({stress_runs[0].name})"))
    statuses = kri.statuses(store, chart_days=1)
    red = [k.code for k in statuses if k.colour == "red"]
    amber = [k.code for k in statuses if k.colour == "amber"]
    out.append(_count("kri_red", "Operational", "KRIs in red", len(red), "kri_dashboard", warn_at=1, bad_at=1,
                      hint=(", ".join(red) if red else "none") + (f"; amber: {', '.join(amber)}" if amber else "")))
    with store.begin() as conn:
        open_inc = int(_scalar(conn, "select count(*) from incidents where state <> 'closed'") or 0)
        sev12 = int(_scalar(conn, "select count(*) from incidents where state <> 'closed' and severity in (1, 2)")
                    or 0)
        actions_overdue = int(_scalar(conn, "select count(*) from corrective_actions where status not in "
                                            "('completed', 'verified') and due_date < :d", d=today) or 0)
        breaks = int(_scalar(conn, "select count(*) from recon_breaks where status <> 'resolved'") or 0)
        pending = int(_scalar(conn, "select count(*) from change_requests where status = 'pending'") or 0)
        since = datetime.combine(today, datetime.min.time(), UTC) - timedelta(hours=8)  # HK day start in UTC
        rejects = int(_scalar(conn, "select count(*) from pretrade_decisions where decision = 'reject' "
                                    "and trading_day = :d", d=today) or 0)
        waiting = int(_scalar(conn, "select count(*) from pretrade_decisions where decision = 'approval' "
                                    "and released = :f and ts >= :s", f=False, s=since) or 0)
    out.append(_count("incidents", "Operational", "Open incidents", open_inc, "incidents", warn_at=1,
                      bad_at=1 if sev12 else None, hint=f"{sev12} of them SEV-1/2"))
    out.append(_count("actions_overdue", "Operational", "Overdue corrective actions", actions_overdue,
                      "corrective_actions", warn_at=1, bad_at=5))
    out.append(_count("breaks", "Operational", "Open reconciliation breaks", breaks, "reconciliation",
                      warn_at=1, bad_at=50))
    out.append(_count("approvals", "Compliance", "Pending approvals", pending, "approvals", warn_at=1, bad_at=20,
                      hint="four-eyes change requests waiting for a checker"))
    out.append(_count("rejects", "Compliance", "Pre-trade rejects today", rejects, "pretrade", warn_at=1,
                      hint="orders stopped by a limit or a built-in check"))
    out.append(_count("releases", "Compliance", "Orders awaiting release", waiting, "pretrade", warn_at=1,
                      hint="approval decisions whose order-release request is not yet approved"))
    return out
