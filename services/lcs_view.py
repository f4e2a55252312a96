"""What the LCS test dock shows of a stored LCS run (issue 6): its summary, client shortfalls, top 10
stocks, and each tested account's long positions with the test's FRR ratio and recognised value.

Everything comes from the run as stored (`risk_runs.load_run`): the positions are recomputed from
the run's own book and its recorded long-suspended securities — exactly as `lcs.run` saw them
(haircut 1.0 for a long-suspended security, ``r = 1 − h``, MV at the book's price × FX) — so the
detail of an old run stays true whatever the store has done since, and an account's positions add
up to the recognised value in its shortfall row.

Plain Python (no Qt): the dock calls these in its task runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from models.book import ACCT_CASH, Book
from services.lazy import lazy_module

if TYPE_CHECKING:
    from services import risk_runs
    from services.auth import User
    from services.store import Store
else:  # imported on first use: the LCS dock is built before the store opens (app.cold_start)
    risk_runs = lazy_module("services.risk_runs")


@dataclass
class LcsPositions:
    """Long positions of tested accounts, grouped by account (CSR: ``start[a]:start[a+1]``)."""

    book: Book
    sec: np.ndarray
    qty: np.ndarray
    mv: np.ndarray
    haircut: np.ndarray  # per position: the haircut the test used (1.0 when long-suspended)
    start: np.ndarray

    @classmethod
    def from_book(cls, book: Book, suspended_long: list[str]) -> LcsPositions:
        susp = np.zeros(book.n_sec, bool)
        for code in suspended_long:
            j = book.sec_index.get(code)
            if j is not None:
                susp[j] = True
        h_sec = np.where(susp, 1.0, np.clip(book.haircut, 0.0, 1.0))
        pxb = book.price * book.fx[book.sec_currency]
        q = book.pos_qty
        sel = np.flatnonzero((q > 0) & (book.acct_type[book.pos_acct] != ACCT_CASH))
        sel = sel[np.lexsort((book.pos_sec[sel], book.pos_acct[sel]))]
        acct, sec = book.pos_acct[sel], book.pos_sec[sel]
        start = np.searchsorted(acct, np.arange(book.n_acct + 1))
        qty = q[sel]
        return cls(book, sec, qty, qty * pxb[sec], h_sec[sec], start)

    def of(self, account: str) -> list[dict[str, Any]]:
        """The account's long positions: code, name, level, qty, MV, haircut, r, recognised value."""
        a = self.book.acct_index.get(account)
        if a is None:
            return []
        lo, hi = int(self.start[a]), int(self.start[a + 1])
        b = self.book
        out = []
        for k in range(lo, hi):
            j = int(self.sec[k])
            r = 1.0 - float(self.haircut[k])
            out.append({"id": k - lo, "code": b.sec_codes[j], "name": b.sec_names[j], "level": int(b.level[j]),
                        "qty": float(self.qty[k]), "mv": float(self.mv[k]), "haircut": float(self.haircut[k]),
                        "r": r, "rv": r * float(self.mv[k])})
        return out


@dataclass
class LcsRunView:
    id: int
    name: str
    status: str
    lc: float
    rlc: float
    summary: dict[str, Any]
    accounts: list[dict[str, Any]] = field(default_factory=list)  # id = row number
    top10: list[dict[str, Any]] = field(default_factory=list)  # id = rank
    positions: LcsPositions | None = None
    as_of: str = ""
    error: str = ""


def open_run(store: Store, run_id: int, task: Any = None) -> LcsRunView:
    """A stored LCS run as the dock shows it (task function)."""
    if task is not None:
        task.progress(0.6, f"reading run {run_id}")
    r = risk_runs.load_run(store, run_id)
    if r["kind"] != "lcs":
        raise risk_runs.RunError(f"run {run_id} is a {r['kind']} run, not an LCS test")
    inputs, res = r["inputs"], r["results"] or {}
    book = r["book"]
    view = LcsRunView(r["id"], r["name"], r["status"], float(inputs.get("lc", 0.0)), float(inputs.get("rlc", 0.0)),
                      r["summary"], error=r.get("error") or "", as_of=book.as_of if book is not None else "")
    view.accounts = [{"id": i, **a, "screen_30": a["shortfall_30"], "screen_50": a["shortfall_50"]}
                     for i, a in enumerate(res.get("accounts", []))]
    view.top10 = [{"id": k, "rank": k, **t, "result": "PASS" if t["pass"] else "FAIL"}
                  for k, t in enumerate(res.get("top10", []), start=1)]
    if book is not None:
        view.positions = LcsPositions.from_book(book, list(inputs.get("suspended_long", [])))
    if task is not None:
        task.progress(1.0, "done")
    return view


def run_and_open(store: Store, user: User, lc: Any, rlc: Any, task: Any = None) -> LcsRunView:
    """Run the LCS test on the store's book now, store it (`risk_runs.run_lcs`) and open it."""
    if task is not None:
        task.progress(0.05, "loading the book")
    book = store.load_book()
    if task is not None:
        task.check()
        task.progress(0.15, "LCS test")
    run_id = risk_runs.run_lcs(store, user, lc, rlc, book=book, task=task)
    return open_run(store, run_id, task)


def rerun_and_open(store: Store, user: User, run_id: int, task: Any = None) -> LcsRunView:
    """Re-run a stored LCS run on its own inputs and book (a new run) and open it."""
    if task is not None:
        task.progress(0.1, f"re-running run {run_id}")
    return open_run(store, risk_runs.rerun(store, user, run_id, task), task)


def history(store: Store, limit: int = 500) -> list[dict[str, Any]]:
    """Past LCS runs, newest first, as the history table lists them."""
    out = []
    for r in risk_runs.runs(store, "lcs", limit):
        s = r.summary
        passed = s.get("pass")
        out.append({"id": r.id, "run": f"#{r.id}", "name": r.name, "status": r.status, "started_by": r.started_by,
                    "started_at": r.started_at, "as_of": r.as_of, "lcs": s.get("lcs"), "buffer": s.get("buffer"),
                    "result": "" if passed is None else ("PASS" if passed else "FAIL"), "error": r.error or ""})
    return out
