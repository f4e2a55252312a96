"""Reconciliation (RISK_METHODS §7 "Breaks"): our records against the counterparty's, vectorised.

Kinds and keys (DESIGN.md): position ``account, code, qty`` keyed by (account, code); transaction
``trade_id, account, code, side, qty, price, trade_date`` keyed by trade_id; cash ``account,
currency, amount`` keyed by (account, currency). An optional ``trade_date`` on position and cash rows
dates the item, else ``as_of``.

Both sides are outer-joined on the key (pandas, hashed) and every compared field is checked with
numpy over whole columns: quantities within ±1, prices within ±0.01 per unit, cash within ±1.00 are
matched (``auto_resolved`` when not exactly equal); text fields (account, code, side of a trade)
must be equal. Each unmatched item is a break: ``missing_ours``, ``missing_theirs`` or ``mismatch``
(one per differing field), aged in business days from its date to ``as_of`` (HK trading calendar):
0–1 normal, 2–3 attention, 4–5 warning, 6+ critical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from services.calendar import TradingCalendar, shipped_holidays

KINDS = ("position", "transaction", "cash")
KEYS = {"position": ("account", "code"), "transaction": ("trade_id",), "cash": ("account", "currency")}
COLUMNS = {"position": ("account", "code", "qty"),
           "transaction": ("trade_id", "account", "code", "side", "qty", "price", "trade_date"),
           "cash": ("account", "currency", "amount")}
NUMERIC = {"qty": 1.0, "price": 0.01, "amount": 1.0}  # field → tolerance
TEXT_FIELDS = {"transaction": ("account", "code", "side"), "position": (), "cash": ()}
STATUS_BANDS = ((1, "normal"), (3, "attention"), (5, "warning"))


class ReconError(ValueError):
    """A file that cannot be reconciled; the message names the file, row and column."""


def age_status(age: int) -> str:
    for top, name in STATUS_BANDS:
        if age <= top:
            return name
    return "critical"


@dataclass
class ReconResult:
    kind: str
    matched: int
    auto_resolved: int
    breaks: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "matched": self.matched, "auto_resolved": self.auto_resolved,
                "breaks": self.breaks}


def read_records(path: str | Path, kind: str, mapping: dict[str, str] | None = None) -> Any:
    """A DataFrame with the kind's columns from a CSV or xlsx file (``mapping``: file column → ours)."""
    import pandas as pd

    p = Path(path)
    if kind not in KINDS:
        raise ReconError(f"unknown reconciliation kind {kind!r}: one of {', '.join(KINDS)}")
    try:
        if p.suffix.lower() in (".xlsx", ".xlsm"):
            df = pd.read_excel(p, dtype=object)
        else:
            df = pd.read_csv(p, dtype=object, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise ReconError(f"{p}: no such file") from None
    except Exception as e:
        raise ReconError(f"{p.name}: cannot be read ({type(e).__name__}: {e})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if mapping:
        df = df.rename(columns=mapping)
    need = [c for c in COLUMNS[kind] if c != "trade_date"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ReconError(f"{p.name}: missing column(s) {', '.join(missing)} (have {', '.join(map(str, df.columns))})")
    for c in KEYS[kind] + TEXT_FIELDS[kind]:
        df[c] = df[c].astype(str).str.strip()
    for c in COLUMNS[kind]:
        if c in NUMERIC:
            vals = pd.to_numeric(df[c], errors="coerce")
            bad = vals.isna() | ~np.isfinite(vals.to_numpy(dtype=float, na_value=np.nan))
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise ReconError(f"{p.name} row {i + 2}, column {c}: {df[c].iloc[i]!r} is not a number")
            df[c] = vals.astype(float)
    if "trade_date" in df.columns:
        dates = pd.to_datetime(df["trade_date"].replace("", None), errors="coerce")
        bad = dates.isna() & df["trade_date"].astype(str).str.strip().ne("") & df["trade_date"].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReconError(f"{p.name} row {i + 2}, column trade_date: {df['trade_date'].iloc[i]!r} is not a date")
        df["trade_date"] = dates.dt.date
    dup = df.duplicated(list(KEYS[kind]), keep="first")  # the repeat is the row to fix
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        key = "/".join(str(df[k].iloc[i]) for k in KEYS[kind])
        raise ReconError(f"{p.name} row {i + 2}: key {key} appears more than once")
    return df


def reconcile(kind: str, ours: Any, theirs: Any, as_of: date | None = None,
              calendar: TradingCalendar | None = None) -> ReconResult:
    """Match two DataFrames of ``kind`` (see `read_records`)."""
    import pandas as pd

    as_of = as_of or date.today()
    cal = calendar or TradingCalendar(d for d, _ in shipped_holidays())
    keys = list(KEYS[kind])
    cols = [c for c in COLUMNS[kind] if c not in keys]
    if "trade_date" not in cols and ("trade_date" in ours.columns or "trade_date" in theirs.columns):
        cols.append("trade_date")  # an optional date on position and cash rows ages the item
    a = ours[[*keys, *[c for c in cols if c in ours.columns]]]
    b = theirs[[*keys, *[c for c in cols if c in theirs.columns]]]
    m = pd.merge(a, b, on=keys, how="outer", suffixes=("_o", "_t"), indicator=True, sort=False)
    side = m["_merge"].to_numpy()
    both = side == "both"
    n = len(m)
    key_text = m[keys[0]].astype(str).to_numpy(dtype=object)
    for k in keys[1:]:
        key_text = key_text + "/" + m[k].astype(str).to_numpy(dtype=object)
    # the item's date: ours, else theirs, else as_of
    dates = np.full(n, np.datetime64(as_of, "D"))
    for col in ("trade_date_t", "trade_date", "trade_date_o"):  # one side only: no suffix
        if col in m.columns:
            d = pd.to_datetime(m[col], errors="coerce").to_numpy(dtype="datetime64[D]")
            ok = ~np.isnat(d)
            dates[ok] = d[ok]
    ages = np.maximum(0, cal.business_days_between(dates, np.datetime64(as_of, "D")))
    bad_any = np.zeros(n, bool)
    inexact = np.zeros(n, bool)
    out_rows: list[tuple[int, str, str, Any, Any, Any]] = []  # (row, type, field, ours, theirs, diff)
    for c in cols:
        if c == "trade_date" or f"{c}_o" not in m.columns or f"{c}_t" not in m.columns:
            continue
        if c in NUMERIC:
            o = m[f"{c}_o"].to_numpy(dtype=float)
            t = m[f"{c}_t"].to_numpy(dtype=float)
            diff = o - t
            tol = NUMERIC[c] + 1e-9
            off = both & (np.abs(diff) > tol)
            inexact |= both & (diff != 0) & ~off
            for i in np.flatnonzero(off):
                out_rows.append((int(i), "mismatch", c, float(o[i]), float(t[i]), round(float(diff[i]), 6)))
        else:
            o = m[f"{c}_o"].astype(str).to_numpy(dtype=object)
            t = m[f"{c}_t"].astype(str).to_numpy(dtype=object)
            off = both & (o != t)
            for i in np.flatnonzero(off):
                out_rows.append((int(i), "mismatch", c, o[i], t[i], None))
        bad_any |= off
    value_col = "qty" if "qty" in cols else "amount"
    for flag, typ in ((side == "right_only", "missing_ours"), (side == "left_only", "missing_theirs")):
        vo = m[f"{value_col}_o"].to_numpy(dtype=float)
        vt = m[f"{value_col}_t"].to_numpy(dtype=float)
        for i in np.flatnonzero(flag):
            o_v = None if math.isnan(vo[i]) else float(vo[i])
            t_v = None if math.isnan(vt[i]) else float(vt[i])
            out_rows.append((int(i), typ, value_col, o_v, t_v, (o_v or 0.0) - (t_v or 0.0)))
    out_rows.sort(key=lambda r: (-int(ages[r[0]]), str(key_text[r[0]]), r[2]))
    breaks = [{"key": str(key_text[i]), "type": typ, "field": f, "ours": o, "theirs": t, "difference": d,
               "age_days": int(ages[i]), "status": age_status(int(ages[i]))} for i, typ, f, o, t, d in out_rows]
    matched = int((both & ~bad_any).sum())
    return ReconResult(kind, matched, int((both & ~bad_any & inexact).sum()), breaks)


def reconcile_files(kind: str, ours: str | Path, theirs: str | Path, as_of: date | None = None,
                    mapping_ours: dict[str, str] | None = None,
                    mapping_theirs: dict[str, str] | None = None) -> ReconResult:
    return reconcile(kind, read_records(ours, kind, mapping_ours), read_records(theirs, kind, mapping_theirs),
                     as_of)
