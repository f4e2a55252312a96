"""Reconciliation from files as the desk runs it (RISK_METHODS §7 "Breaks"): sources, column mappings,
an import in the background, and the breaks to work.

A *source* is who sent a file (our own books, a custodian, the clearing house, a broker). Each
source's files have their own column names; the mapping from them to RiskDesk's columns
(``{"Stock Code": "code", ...}``) is saved per source and kind in `recon_sources` once it has read a
file successfully, and is used again for that source's next file. Our own file's mapping is kept
under the source `OURS`.

`run_import` reads both files, matches them (`services.recon`), records the breaks
(`services.breaks.record_breaks`: the same two files for the same day again change nothing) and
saves the mappings — progress reported and cancellable between the steps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select

from models import schema as S
from services import audit, breaks, recon
from services.auth import User
from services.recon import COLUMNS, KINDS, ReconError, ReconResult
from services.store import Store

OURS = "Our books"
KIND_LABELS = {"position": "Positions", "transaction": "Transactions", "cash": "Cash"}
SYNONYMS = {  # normalised header → our column (what custodian / clearing files usually call them)
    "account": "account", "accountno": "account", "accountnumber": "account", "acct": "account",
    "acctno": "account", "clientaccount": "account", "participantaccount": "account",
    "code": "code", "stockcode": "code", "security": "code", "securitycode": "code", "symbol": "code",
    "ticker": "code", "instrument": "code", "isin": "code",
    "qty": "qty", "quantity": "qty", "holding": "qty", "holdings": "qty", "position": "qty", "shares": "qty",
    "units": "qty", "balanceqty": "qty",
    "tradeid": "trade_id", "tradeno": "trade_id", "tradereference": "trade_id", "tradestdref": "trade_id",
    "ref": "trade_id", "reference": "trade_id", "contractno": "trade_id",
    "side": "side", "buysell": "side", "bs": "side", "direction": "side",
    "price": "price", "tradeprice": "price", "executionprice": "price", "avgprice": "price",
    "tradedate": "trade_date", "date": "trade_date", "asof": "trade_date", "valuedate": "trade_date",
    "currency": "currency", "ccy": "currency", "cur": "currency",
    "amount": "amount", "balance": "amount", "cashbalance": "amount", "ledgerbalance": "amount",
    "clientac": "account", "ac": "account", "acno": "account", "accountcode": "account", "stock": "code",
    "stockno": "code", "px": "price", "dealprice": "price", "tradedt": "trade_date", "dealdate": "trade_date",
    "dealref": "trade_id", "dealno": "trade_id", "dealid": "trade_id", "volume": "qty",
}


@dataclass
class ReconRun:
    kind: str
    source: str
    import_id: int
    new: bool
    result: ReconResult
    ours: str
    theirs: str
    as_of: date

    @property
    def summary(self) -> str:
        r = self.result
        if not self.new:
            return (f"Already reconciled: these two files for {self.as_of.isoformat()} are import #{self.import_id}; "
                    "nothing changed")
        return (f"Import #{self.import_id}: {r.matched:,} matched ({r.auto_resolved:,} auto-resolved within "
                f"tolerance), {len(r.breaks):,} break{'s' if len(r.breaks) != 1 else ''}")


def needed(kind: str) -> tuple[str, ...]:
    """Our columns a file of ``kind`` must provide (trade_date is optional on position and cash)."""
    return tuple(c for c in COLUMNS[kind] if c != "trade_date" or kind == "transaction")


def optional(kind: str) -> tuple[str, ...]:
    return () if kind == "transaction" else ("trade_date",)


def _norm(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def file_columns(path: str | Path) -> list[str]:
    """The header row of a CSV or xlsx file (nothing else is read)."""
    import pandas as pd

    p = Path(path)
    try:
        if p.suffix.lower() in (".xlsx", ".xlsm"):
            df = pd.read_excel(p, nrows=0)
        else:
            df = pd.read_csv(p, nrows=0, skipinitialspace=True)
    except FileNotFoundError:
        raise ReconError(f"{p}: no such file") from None
    except Exception as e:
        raise ReconError(f"{p.name}: cannot be read ({type(e).__name__}: {e})") from None
    return [str(c).strip() for c in df.columns]


def guess_mapping(columns: list[str], kind: str, saved: dict[str, str] | None = None) -> dict[str, str]:
    """file column → our column: the saved mapping where the file has its columns, then same names,
    then the usual synonyms. Each of our columns is taken once."""
    wanted = set(needed(kind)) | set(optional(kind))
    out: dict[str, str] = {}
    taken: set[str] = set()
    candidates = [(col, ours) for col, ours in (saved or {}).items() if col in columns]
    candidates += [(col, col if col in wanted else SYNONYMS.get(_norm(col), "")) for col in columns]
    for col, ours in candidates:
        if col not in out and ours in wanted and ours not in taken:
            out[col] = ours
            taken.add(ours)
    return out


def missing(kind: str, mapping: dict[str, str]) -> list[str]:
    """Our required columns the mapping does not provide."""
    have = set(mapping.values())
    return [c for c in needed(kind) if c not in have]


def mapping_of(store: Store, source: str, kind: str) -> dict[str, str]:
    t = S.recon_sources
    with store.begin() as conn:
        raw = conn.execute(select(t.c.mapping).where(t.c.name == source, t.c.kind == kind)).scalar()
    return dict(json.loads(raw)) if raw else {}


def sources(store: Store, kind: str) -> list[str]:
    """Counterparty sources with a saved mapping for ``kind`` (ours excluded), by name."""
    t = S.recon_sources
    with store.begin() as conn:
        return [str(n) for n in conn.execute(select(t.c.name).where(t.c.kind == kind, t.c.name != OURS)
                                             .order_by(t.c.name)).scalars()]


def save_mapping(conn: Any, store: Store, user: str, source: str, kind: str, mapping: dict[str, str]) -> bool:
    """Store ``mapping`` for the source (inside the caller's transaction); True when it changed."""
    t = S.recon_sources
    old = conn.execute(select(t.c.mapping).where(t.c.name == source, t.c.kind == kind)).scalar()
    new = json.dumps(mapping, sort_keys=True)
    if old is not None and json.loads(old) == mapping:
        return False
    conn.execute(delete(t).where(t.c.name == source, t.c.kind == kind))
    conn.execute(insert(t).values(name=source, kind=kind, mapping=new))
    audit.append(conn, store.kind, user, "update" if old is not None else "create", "recon_sources",
                 f"{source} {kind}", before=old or "", after=new)
    return True


def inspect_files(store: Store, kind: str, source: str, ours: str, theirs: str) -> dict[str, Any]:
    """Both files' headers with the mapping each would use (saved or guessed) and what is missing."""
    out: dict[str, Any] = {}
    for side, path, name in (("ours", ours, OURS), ("theirs", theirs, source)):
        cols = file_columns(path)
        saved = mapping_of(store, name, kind)
        m = guess_mapping(cols, kind, saved)
        out[side] = {"path": path, "columns": cols, "mapping": m, "missing": missing(kind, m), "saved": bool(saved),
                     "source": name}
    return out


def run_import(store: Store, user: User | str, kind: str, source: str, ours: str, theirs: str, as_of: date,
               mapping_ours: dict[str, str], mapping_theirs: dict[str, str],
               progress: Callable[[float, str], None] | None = None) -> ReconRun:
    """Read, match and record one pair of files; save both mappings once they have read a file.
    Refused (`breaks.BreakError` naming the role) before any file is read for a role that may not."""
    user = breaks.actor(user, "import reconciliation files")
    if kind not in KINDS:
        raise ReconError(f"unknown reconciliation kind {kind!r}: one of {', '.join(KINDS)}")
    source = source.strip()
    if not source:
        raise ReconError("Source: name who sent their file (custodian, clearing house, broker)")
    if source == OURS:
        raise ReconError(f"Source: {OURS!r} is our own side; name the counterparty")
    step = progress or (lambda _f, _t: None)
    for side, m in (("our file", mapping_ours), ("their file", mapping_theirs)):
        gone = missing(kind, m)
        if gone:
            raise ReconError(f"{side}: no column mapped to {', '.join(gone)}")
    step(0.05, f"Reading {Path(ours).name}…")
    a = recon.read_records(ours, kind, _renames(mapping_ours))
    step(0.3, f"Reading {Path(theirs).name}…")
    b = recon.read_records(theirs, kind, _renames(mapping_theirs))
    step(0.55, f"Matching {len(a):,} against {len(b):,} records…")
    result = recon.reconcile(kind, a, b, as_of)
    step(0.8, f"Recording {len(result.breaks):,} breaks…")
    imp, new = breaks.record_breaks(store, result, ours, theirs, as_of, user)
    with store.begin() as conn:
        save_mapping(conn, store, user, OURS, kind, mapping_ours)
        save_mapping(conn, store, user, source, kind, mapping_theirs)
    step(1.0, "Done")
    return ReconRun(kind, source, imp, new, result, ours, theirs, as_of)


def _renames(mapping: dict[str, str]) -> dict[str, str]:
    """Only real renames (a column already called as ours needs none)."""
    return {k: v for k, v in mapping.items() if k != v}


# ---------------------------------------------------------------------- what the dock shows
RESOLVED_DAYS = 30  # the dock shows every unresolved break and the breaks resolved in the last 30 days…
RESOLVED_LIMIT = 2000  # …at most this many of them (the most recently resolved)


@dataclass
class BreaksView:
    breaks: list[dict[str, Any]]
    imports: list[dict[str, Any]]
    users: list[str]
    sources: dict[str, list[str]]  # kind → saved counterparty sources
    as_of: date
    resolved_days: int = RESOLVED_DAYS
    resolved_shown: int = 0
    resolved_total: int = 0

    @property
    def resolved_text(self) -> str:
        """What the view leaves out, in the desk's words."""
        text = f"showing resolved breaks of the last {self.resolved_days} days"
        if self.resolved_shown < self.resolved_total:
            text += f" ({self.resolved_shown:,} of {self.resolved_total:,} resolved in all)"
        return text


def load_view(store: Store, as_of: date | None = None, resolved_days: int = RESOLVED_DAYS,
              resolved_limit: int = RESOLVED_LIMIT) -> BreaksView:
    """Every unresolved break and the recently resolved ones (aged to ``as_of``), the last imports, who
    can be assigned, the saved sources. Years of resolved breaks are not read into the dock."""
    as_of = as_of or date.today()
    since = datetime.combine(as_of - timedelta(days=resolved_days), time(), UTC)
    rows = breaks.breaks(store, None, as_of, resolved_since=since, resolved_limit=resolved_limit)
    with store.begin() as conn:
        total = int(conn.execute(select(func.count()).select_from(S.recon_breaks)
                                 .where(S.recon_breaks.c.status == "resolved")).scalar_one())
        imps = [dict(r._mapping) for r in conn.execute(
            select(S.recon_imports).order_by(S.recon_imports.c.id.desc()).limit(50))]
        users = [str(u) for u in conn.execute(select(S.users.c.login).where(
            S.users.c.active.is_(True), S.users.c.role.in_(("operations", "risk_officer", "supervisor")))
            .order_by(S.users.c.login)).scalars()]
        srcs: dict[str, list[str]] = {k: [] for k in KINDS}
        for name, kind in conn.execute(select(S.recon_sources.c.name, S.recon_sources.c.kind)
                                       .where(S.recon_sources.c.name != OURS).order_by(S.recon_sources.c.name)):
            srcs.setdefault(str(kind), []).append(str(name))
    shown = sum(1 for r in rows if r["status"] == "resolved")
    return BreaksView(rows, imps, users, srcs, as_of, resolved_days, shown, total)


# ---------------------------------------------------------------------- demo
def seed_demo_recon(store: Store, as_of: date | None = None, seed: int = 7) -> int:
    """A position reconciliation against the clearing house and a cash one against the custodian, over
    the demo book with breaks of every age and type; a few assigned and in investigation. The
    number of breaks recorded."""
    import tempfile

    import numpy as np
    import pandas as pd

    from services.kri import _holidays

    as_of = as_of or date.today()
    hol = _holidays()
    end = np.busday_offset(np.datetime64(as_of, "D"), 0, roll="backward", holidays=hol)
    rng = np.random.default_rng(seed)
    with store.begin() as conn:
        pos = conn.execute(select(S.accounts.c.code, S.securities.c.code, S.positions.c.qty)
                           .join(S.accounts, S.accounts.c.id == S.positions.c.account_id)
                           .join(S.securities, S.securities.c.id == S.positions.c.security_id)
                           .order_by(S.accounts.c.code, S.securities.c.code).limit(4000)).all()
    if not pos:
        return 0
    ours = pd.DataFrame(pos, columns=["account", "code", "qty"])
    n = len(ours)
    ages = rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 11], size=n)
    ours["trade_date"] = np.busday_offset(end, -ages, roll="backward", holidays=hol).astype(str)
    theirs = ours.rename(columns={"account": "Participant Account", "code": "Stock Code", "qty": "Holding",
                                  "trade_date": "Trade Date"}).copy()
    k = max(6, n // 200)
    idx = rng.choice(n, 3 * k, replace=False)
    held = theirs.loc[idx[:k], "Holding"].to_numpy()
    moved = rng.choice([-500, -100, 100, 200], k)
    theirs.loc[idx[:k], "Holding"] = np.where(held + moved < 0, held - moved, held + moved)
    theirs.loc[idx[k:2 * k], "Holding"] = theirs.loc[idx[k:2 * k], "Holding"].to_numpy() + 0.5  # within ±1
    theirs = theirs.drop(index=idx[2 * k:])
    extra = pd.DataFrame({"Participant Account": ["M999901", "M999902"], "Stock Code": ["700.HK", "5.HK"],
                          "Holding": [2000.0, 400.0],
                          "Trade Date": np.busday_offset(end, [-1, -7], roll="backward", holidays=hol).astype(str)})
    theirs = pd.concat([theirs, extra], ignore_index=True)
    with store.begin() as conn:
        accts = conn.execute(select(S.accounts.c.code).order_by(S.accounts.c.code).limit(300)).scalars().all()
    cash_ours = pd.DataFrame({"account": accts, "currency": "HKD",
                              "amount": np.round(rng.normal(0, 200_000, len(accts)), 2)})
    cash_ours["trade_date"] = np.busday_offset(end, -rng.choice([0, 1, 3, 6], len(accts)), roll="backward",
                                               holidays=hol).astype(str)
    cash_theirs = cash_ours.rename(columns={"account": "Account No", "currency": "Ccy", "amount": "Ledger Balance",
                                            "trade_date": "Value Date"}).copy()
    j = rng.choice(len(accts), 6, replace=False)
    cash_theirs.loc[j[:3], "Ledger Balance"] += np.array([1250.0, -80.5, 0.4])
    cash_theirs = cash_theirs.drop(index=j[3:])
    made = 0
    with tempfile.TemporaryDirectory() as tmp:
        runs = (("position", "HKSCC CCASS", ours, theirs), ("cash", "Custodian HSBC", cash_ours, cash_theirs))
        for kind, source, a, b in runs:
            pa, pb = Path(tmp) / f"ours-{kind}.csv", Path(tmp) / f"theirs-{kind}.csv"
            a.to_csv(pa, index=False)
            b.to_csv(pb, index=False)
            ma = guess_mapping(list(a.columns), kind)
            mb = guess_mapping(list(b.columns), kind)
            made += len(run_import(store, "olga", kind, source, str(pa), str(pb), end.astype(date), ma, mb)
                        .result.breaks)
    rows = breaks.breaks(store, "open", end.astype(date))
    oldest = sorted(rows, key=lambda r: -r["age_days"])
    for r in oldest[:3]:
        breaks.assign(store, int(r["id"]), "olga", "rita")
    for r in oldest[3:5]:
        breaks.investigate(store, int(r["id"]), "olga")
    if len(oldest) > 6:
        breaks.resolve(store, int(oldest[6]["id"]), "olga", "late booking in the back office",
                       "booked on T+1; matches in the next file")
    return made


__all__ = ["KIND_LABELS", "OURS", "RESOLVED_DAYS", "RESOLVED_LIMIT", "BreaksView", "ReconRun", "file_columns", "guess_mapping", "inspect_files",
           "load_view", "mapping_of", "missing", "needed", "run_import", "save_mapping", "seed_demo_recon",
           "sources"]
