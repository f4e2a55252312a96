"""The monthly trade-error report of RISK_METHODS §7: errors by type, severity and desk, errors per 1,000
trades, gross loss, recovery and net, the root-cause split (people, process, system, external) and the
twelve-month trend — as pandas frames, and as an xlsx workbook through `services.excel`.

An error belongs to the month of its trade date. Its P&L is the final P&L once resolved, else the
estimate; a negative P&L is a loss: gross loss = Σ max(0, −P&L), recovery = Σ recoveries, net = gross
loss − recovery; gains (Σ max(0, P&L)) are reported beside them, never netted against losses. The
rate's denominator is the month's trade count (`trade_volumes`, entered by the desk); without one the
rate is blank, never a guess. Severity is the level in force (an override wins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, insert, select

from models import schema as S
from services import audit
from services.auth import AuthError, User
from services.store import Store
from services.trade_errors import ERROR_TYPES, LEVELS, ROOT_CAUSES, WORK_ROLES, effective_severity

FIGURES = ["errors", "gross_loss", "recovery", "net_loss", "gains"]


def month_start(d: date) -> date:
    return date(d.year, d.month, 1)


def set_trade_volume(store: Store, user: User, month: date, trades: int) -> None:
    """The month's trade count (the rate's denominator), replacing an earlier one; audited."""
    if user.role not in WORK_ROLES:
        raise AuthError(f"{user.login} ({user.role_label}) may not enter trade volumes")
    if int(trades) != trades or trades < 0:
        raise ValueError("Trades: a whole number ≥ 0")
    m = month_start(month)
    t = S.trade_volumes
    with store.begin() as conn:
        old = conn.execute(select(t.c.trades).where(t.c.month == m)).scalar()
        conn.execute(delete(t).where(t.c.month == m))
        conn.execute(insert(t).values(month=m, trades=int(trades), entered_by=user.login,
                                      entered_at=datetime.now(UTC)))
        audit.append(conn, store.kind, user.login, "trade_volume", "trade_volumes", m.isoformat(),
                     "" if old is None else str(old), str(int(trades)))


def errors_frame(store: Store) -> pd.DataFrame:
    """Every ticket as one row: month, type, severity in force, desk, root cause and P&L figures."""
    t = S.trade_errors
    with store.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(
            t.c.id, t.c.error_type, t.c.desk, t.c.trade_date, t.c.est_pnl, t.c.final_pnl, t.c.recovery,
            t.c.severity, t.c.severity_override, t.c.root_cause_category, t.c.status))]
    df = pd.DataFrame(rows, columns=["id", "error_type", "desk", "trade_date", "est_pnl", "final_pnl", "recovery",
                                     "severity", "severity_override", "root_cause_category", "status"])
    df["level"] = [effective_severity(r) for r in rows]
    pnl = df["final_pnl"].astype(float).fillna(df["est_pnl"].astype(float)).to_numpy(float)
    df["pnl"] = pnl
    df["gross_loss"] = np.maximum(0.0, -pnl)
    df["gains"] = np.maximum(0.0, pnl)
    df["recovery"] = df["recovery"].astype(float).fillna(0.0)
    df["net_loss"] = df["gross_loss"] - df["recovery"]
    df["errors"] = 1
    df["month"] = pd.to_datetime(df["trade_date"]).dt.to_period("M") if len(df) else pd.Series(dtype="period[M]")
    df["root_cause"] = df["root_cause_category"].fillna("not assessed")
    return df


def _by(df: pd.DataFrame, col: str, order: list[str] | None = None) -> pd.DataFrame:
    g = df.groupby(col, sort=True)[FIGURES].sum()
    if order is not None:
        g = g.reindex(order + [k for k in g.index if k not in order], fill_value=0)
    else:
        g = g.sort_values(["errors", "net_loss"], ascending=False)
    g.index.name = col
    out = g.reset_index().astype({"errors": int})
    total = max(1, int(out["errors"].sum()))
    out["share_pct"] = 100.0 * out["errors"] / total
    return out


@dataclass
class MonthlyReport:
    month: date
    summary: dict[str, Any]
    by_type: pd.DataFrame
    by_severity: pd.DataFrame
    by_desk: pd.DataFrame
    by_root_cause: pd.DataFrame
    trend: pd.DataFrame
    errors: pd.DataFrame


def monthly_report(store: Store, month: date, trades: int | None = None, trend_months: int = 12) -> MonthlyReport:
    """The §7 report for the month of ``month``; ``trades`` overrides the stored trade count."""
    m = month_start(month)
    df = errors_frame(store)
    with store.begin() as conn:
        vols = {r.month if isinstance(r.month, date) else date.fromisoformat(str(r.month)): int(r.trades)
                for r in conn.execute(select(S.trade_volumes))}
    if trades is not None:
        vols[m] = int(trades)
    period = pd.Period(m, "M")
    cur = df[df["month"] == period] if len(df) else df
    n = int(len(cur))
    n_trades = vols.get(m)
    rate = 1000.0 * n / n_trades if n_trades else math.nan
    by_type = _by(cur, "error_type", list(ERROR_TYPES))
    by_type.insert(1, "type", [ERROR_TYPES.get(k, k) for k in by_type["error_type"]])
    summary = {
        "month": m.strftime("%Y-%m"), "errors": n, "trades": n_trades, "errors_per_1000_trades": rate,
        "gross_loss": float(cur["gross_loss"].sum()), "recovery": float(cur["recovery"].sum()),
        "net_loss": float(cur["net_loss"].sum()), "gains": float(cur["gains"].sum()),
        "open": int((cur["status"] == "open").sum()), "closed": int((cur["status"] == "closed").sum())}
    idx = pd.period_range(period - (trend_months - 1), period, freq="M")
    tr = df.groupby("month")[FIGURES].sum().reindex(idx, fill_value=0) if len(df) else pd.DataFrame(
        0, index=idx, columns=FIGURES)
    tr.index.name = "month"
    trend = tr.reset_index().astype({"errors": int})
    trend["trades"] = [vols.get(p.to_timestamp().date()) for p in idx]
    tv = trend["trades"].to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        trend["errors_per_1000_trades"] = np.where(tv > 0, 1000.0 * trend["errors"].to_numpy(float) / tv, np.nan)
    trend["month"] = trend["month"].astype(str)
    errors = cur[["id", "trade_date", "error_type", "level", "desk", "root_cause", "status", "pnl", "gross_loss",
                  "recovery", "net_loss", "gains"]].sort_values("id").reset_index(drop=True)
    return MonthlyReport(m, summary, by_type, _by(cur, "level", list(LEVELS)), _by(cur, "desk"),
                         _by(cur, "root_cause", [*ROOT_CAUSES, "not assessed"]), trend, errors)


def _rows(df: pd.DataFrame) -> list[list[Any]]:
    out = []
    for rec in df.itertuples(index=False):
        out.append([None if isinstance(v, float) and math.isnan(v) else
                    (v.item() if isinstance(v, np.generic) else v) for v in rec])
    return out


SUMMARY_LABELS = {"month": "Month", "errors": "Errors", "trades": "Trades", "errors_per_1000_trades":
                  "Errors per 1,000 trades", "gross_loss": "Gross loss (HKD)", "recovery": "Recovery (HKD)",
                  "net_loss": "Net loss (HKD)", "gains": "Gains (HKD)", "open": "Open", "closed": "Closed"}


def _headers(df: pd.DataFrame) -> list[str]:
    names = {"error_type": "Type code", "type": "Type", "level": "Severity", "desk": "Desk",
             "root_cause": "Root cause", "errors": "Errors", "gross_loss": "Gross loss", "recovery": "Recovery",
             "net_loss": "Net loss", "gains": "Gains", "share_pct": "Share %", "month": "Month", "trades": "Trades",
             "errors_per_1000_trades": "Errors per 1,000 trades", "id": "Ticket", "trade_date": "Trade date",
             "status": "Status", "pnl": "P&L"}
    return [names.get(c, c) for c in df.columns]


def export_monthly_report(report: MonthlyReport, path: str | Path) -> Path:
    """The report as an xlsx workbook: summary, the four splits, the trend and the errors themselves."""
    from services.excel import write_sheets

    summary = [[SUMMARY_LABELS[k], v if not (isinstance(v, float) and math.isnan(v)) else None]
               for k, v in report.summary.items()]
    sheets = [("Summary", ["Figure", "Value"], summary)]
    for name, df in (("By type", report.by_type), ("By severity", report.by_severity), ("By desk", report.by_desk),
                     ("Root cause", report.by_root_cause), ("Trend", report.trend), ("Errors", report.errors)):
        sheets.append((name, _headers(df), _rows(df)))
    write_sheets(path, sheets)
    return Path(path)
