"""The SFC liquid-capital-shortfall test (RISK_METHODS §4), with the top-10 stocks in one pass.

Per margin account with a loan, over its long positions: recognised value ``RV = Σ r·MV`` with the
FRR ratio ``r = 1 − h`` (a security suspended for 3 business days or more: ``h = 1``), the shares of
level-1 and level-1+2 market value, the decline bracket ``x`` (a, b, c, d from the company
parameters), ``shortfall = max(0, loan − RV·(1 − x))`` and the 30% / 50% screens. ``LCS = Σ
shortfall``, ``buffer = 0.5·ELC − LCS``, pass when ``buffer ≥ 0``.

Top 10: making one security non-pledgeable changes only the accounts that hold it, by
``max(0, loan − (RV − r·MV)(1 − x)) − shortfall`` each; that term is computed for every long
position at once and summed per security with one `bincount` — no recomputation of the book per
security (the naive way, kept in the benchmark for comparison).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.book import ACCT_CASH
from services.margin import MarginEngine

DEFAULT_DECLINES = {"a": 0.15, "b": 0.25, "c": 0.30, "d": 0.50}


class LcsError(ValueError):
    """Inputs the test cannot run on; the message says which."""


@dataclass
class LcsResult:
    lc: float
    rlc: float
    elc: float
    lcs: float
    buffer: float
    passed: bool
    accounts: np.ndarray  # account indices in the test (margin accounts with a loan)
    loan: np.ndarray  # per tested account (aligned with `accounts`)
    rv: np.ndarray
    decline: np.ndarray
    p1: np.ndarray
    p12: np.ndarray
    shortfall: np.ndarray
    shortfall_30: np.ndarray
    shortfall_50: np.ndarray
    impact: np.ndarray  # per security (0 where not held long by a tested account)
    held: np.ndarray  # bool per security: held long by a tested account
    acct_codes: list[str]
    sec_codes: list[str]

    def top10(self, n: int = 10) -> list[dict[str, Any]]:
        idx = np.flatnonzero(self.held)
        order = idx[np.lexsort((np.array(self.sec_codes, dtype=object)[idx], -self.impact[idx]))][:n]
        out = []
        for j in order:
            stressed = self.lcs + float(self.impact[j])
            buf = 0.5 * self.elc - stressed
            out.append({"code": self.sec_codes[j], "impact": round(float(self.impact[j]), 2),
                        "lcs_stressed": round(stressed, 2), "buffer": round(buf, 2), "pass": bool(buf >= 0)})
        return out

    def accounts_json(self) -> list[dict[str, Any]]:
        cols = {k: np.round(getattr(self, k), 6 if k == "decline" else 2).tolist()
                for k in ("loan", "rv", "decline", "shortfall", "shortfall_30", "shortfall_50")}
        return [{"account": self.acct_codes[a], **{k: cols[k][i] for k in cols}}
                for i, a in enumerate(self.accounts.tolist())]

    def as_json(self) -> dict[str, Any]:
        return {"lc": self.lc, "rlc": self.rlc, "elc": round(self.elc, 2), "lcs": round(self.lcs, 2),
                "buffer": round(self.buffer, 2), "pass": self.passed,
                "total_shortfall_30": round(float(self.shortfall_30.sum()), 2),
                "total_shortfall_50": round(float(self.shortfall_50.sum()), 2),
                "accounts": self.accounts_json(), "top10": self.top10()}


def check_inputs(lc: Any, rlc: Any) -> tuple[float, float]:
    out = []
    for name, v in (("LC", lc), ("RLC", rlc)):
        if isinstance(v, str):
            try:
                v = float(v.replace(",", ""))
            except ValueError:
                raise LcsError(f"{name} must be a number, got {v!r}") from None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
            raise LcsError(f"{name} must be a number, got {v!r}")
        out.append(float(v))
    return out[0], out[1]


def run(engine: MarginEngine, lc: Any, rlc: Any, suspended_long: np.ndarray | None = None,
        declines: dict[str, float] | None = None) -> LcsResult:
    """The LCS test on the engine's book at its current prices.

    ``suspended_long``: per security, suspended for 3 business days or more (haircut 1.0); default
    the book's suspended flag (a conservative reading when the suspension date is unknown)."""
    lc_f, rlc_f = check_inputs(lc, rlc)
    b = engine.book
    if b.n_acct == 0:
        raise LcsError("the book has no accounts: nothing to test")
    p = b.parameters
    dec = dict(DEFAULT_DECLINES)
    for k in dec:
        dec[k] = float(p.get(f"lcs_decline_{k}", dec[k]))
    dec.update(declines or {})
    susp = b.suspended if suspended_long is None else suspended_long
    h = np.where(susp, 1.0, np.clip(b.haircut, 0.0, 1.0))
    r_sec = 1.0 - h
    loan_all = np.maximum(0.0, -(b.cash @ b.fx))
    tested = (b.acct_type != ACCT_CASH) & (loan_all > 0)
    # long positions of tested accounts
    q = b.pos_qty
    pa = b.pos_acct
    ps = b.pos_sec
    sel = (q > 0) & tested[pa]
    a_sel, s_sel = pa[sel], ps[sel]
    mv = q[sel] * engine.pxb[s_sel]
    rmv = r_sec[s_sel] * mv
    n_acct, n_sec = b.n_acct, b.n_sec
    lvl = b.level[s_sel]
    mv_tot = np.bincount(a_sel, mv, n_acct)
    mv_1 = np.bincount(a_sel, np.where(lvl == 1, mv, 0.0), n_acct)
    mv_2 = np.bincount(a_sel, np.where(lvl == 2, mv, 0.0), n_acct)
    rv = np.bincount(a_sel, rmv, n_acct)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(mv_tot > 0, mv_1 / mv_tot, 0.0)
        p12 = np.where(mv_tot > 0, (mv_1 + mv_2) / mv_tot, 0.0)
    x = np.select([p1 > 0.75, p12 > 0.75, p12 >= 0.25], [dec["a"], dec["b"], dec["c"]], dec["d"])
    x = np.where(mv_tot > 0, x, dec["d"])
    sf = np.maximum(0.0, loan_all - rv * (1.0 - x))
    sf30 = np.maximum(0.0, loan_all - 0.7 * rv)
    sf50 = np.maximum(0.0, loan_all - 0.5 * rv)
    acc = np.flatnonzero(tested)
    lcs_total = float(sf[acc].sum())
    # one pass: each long position's effect of making its security non-pledgeable
    term = np.maximum(0.0, loan_all[a_sel] - (rv[a_sel] - rmv) * (1.0 - x[a_sel])) - sf[a_sel]
    impact = np.bincount(s_sel, term, n_sec)
    held = np.bincount(s_sel, minlength=n_sec) > 0
    elc = lc_f - rlc_f
    buffer = 0.5 * elc - lcs_total
    return LcsResult(lc_f, rlc_f, elc, lcs_total, buffer, bool(buffer >= 0), acc, loan_all[acc], rv[acc], x[acc],
                     p1[acc], p12[acc], sf[acc], sf30[acc], sf50[acc], impact, held, b.acct_codes, b.sec_codes)


def naive_impact(engine: MarginEngine, lc: float, rlc: float, j: int) -> float:
    """The naive top-10 step for one security: rerun the whole test with its haircut at 1.0."""
    b = engine.book
    base = run(engine, lc, rlc).lcs
    saved = b.haircut[j]
    susp = b.suspended.copy()
    susp[j] = True
    try:
        return run(engine, lc, rlc, suspended_long=susp).lcs - base
    finally:
        b.haircut[j] = saved
