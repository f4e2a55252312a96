"""The stock level weighting view (issue 6): how the margin book's collateral splits by stock level,
and what the default level declines do to margin calls.

Weighting: long market value held in margin (and intraday-financing) accounts, by the security's
stock level 1, 2, 3 (RISK_METHODS §4), in base currency at the book's prices, with each level's share.

Declines: the SFC level declines of ``resources/scenarios/sfc_level_declines.json`` (level 1 −15%,
level 2 −25%, level 3 −50% together) and each of its shocks alone, run through `stress.run` with the
firm's standing stress exemptions — accounts in call, how many of them are new calls, total call
amount. "Simulate margin call" lists the accounts one of them puts in call (`simulate`).

Plain Python (no Qt): the indices dock runs it in a worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.book import ACCT_CASH
from services import stress
from services.margin import CALL, STATUS_NAMES, MarginEngine

LEVELS = (1, 2, 3)
LEVEL_DECLINES_FILE = stress.SCENARIO_DIR / "sfc_level_declines.json"


def level_decline_scenarios() -> list[stress.Scenario]:
    """The combined SFC level declines first, then one scenario per level with that level's shock."""
    combined = stress.load_scenario(LEVEL_DECLINES_FILE)
    singles = [stress.Scenario(f"Level {t.partition(':')[2]} {c:+.0%}".replace("-", "−"), [(t, c)])
               for t, c in combined.shocks if t.startswith("level:")]
    return [combined, *singles]


def shocks_text(sc: stress.Scenario) -> str:
    return ", ".join(f"{t.replace(':', ' ')} {c:+.0%}".replace("-", "−") for t, c in sc.shocks)


def level_market_value(engine: MarginEngine) -> tuple[np.ndarray, np.ndarray]:
    """(long MV, number of securities held long) per level 1, 2, 3 over margin accounts."""
    b = engine.book
    q = b.pos_qty
    sel = (q > 0) & (b.acct_type[b.pos_acct] != ACCT_CASH)
    sec = b.pos_sec[sel]
    mv = q[sel] * engine.pxb[sec]
    lvl = np.clip(b.level[sec].astype(np.int64), 1, 3)
    by_level = np.bincount(lvl, mv, 4)[1:]
    held = np.zeros(b.n_sec, bool)
    held[sec] = True
    n_sec = np.bincount(np.clip(b.level[held].astype(np.int64), 1, 3), minlength=4)[1:]
    return by_level, n_sec


@dataclass
class LevelWeighting:
    as_of: str
    market_value: np.ndarray  # per level 1, 2, 3
    share: np.ndarray  # per level, sums to 1 when there is any long MV
    securities: np.ndarray  # securities held long per level
    declines: list[dict[str, Any]] = field(default_factory=list)
    scenarios: list[stress.Scenario] = field(default_factory=list)  # aligned with declines
    engine: MarginEngine | None = None  # the book the numbers came from (for `simulate`)

    def rows(self) -> list[dict[str, Any]]:
        """One row per level (id = level) for the weighting table."""
        return [{"id": lv, "level": f"Level {lv}", "market_value": float(self.market_value[i]),
                 "share": float(self.share[i]), "securities": int(self.securities[i])}
                for i, lv in enumerate(LEVELS)]


def _summary(res: stress.StressResult) -> dict[str, Any]:
    idx = res.accounts
    in_call = res.status[idx] >= CALL
    return {"accounts_in_call": int(in_call.sum()),
            "new_calls": int((in_call & (res.base_status[idx] < CALL)).sum()),
            "total_call_amount": round(float(res.call_amount[idx].sum()), 2),
            "total_shortfall": round(float(res.shortfall[idx].sum()), 2)}


def compute_weighting(engine: MarginEngine, scenarios: list[stress.Scenario] | None = None,
                      task: Any = None) -> LevelWeighting:
    """Weighting and the level declines over ``engine``'s book (scenarios: exemptions already added)."""
    mv, n_sec = level_market_value(engine)
    total = float(mv.sum())
    share = mv / total if total > 0 else np.zeros(3)
    scs = scenarios if scenarios is not None else level_decline_scenarios()
    out = LevelWeighting(engine.book.as_of, mv, share, n_sec, engine=engine)
    for k, sc in enumerate(scs):
        if task is not None:
            task.check()
            task.progress(0.3 + 0.65 * k / max(1, len(scs)), f"stressing {sc.name}")
        out.declines.append({"id": k + 1, "scenario": sc.name, "shocks": shocks_text(sc),
                             **_summary(stress.run(engine, sc))})
        out.scenarios.append(sc)
    return out


def load_weighting(store: Any, task: Any = None) -> LevelWeighting:
    """The store's book now, with the firm's standing stress exemptions on every decline (task fn)."""
    from services.risk_runs import with_exemptions

    if task is not None:
        task.progress(0.05, "loading the book")
    book = store.load_book()
    if task is not None:
        task.check()
        task.progress(0.2, "margin engine")
    engine = MarginEngine(book)
    scs = [with_exemptions(store, sc) for sc in level_decline_scenarios()]
    out = compute_weighting(engine, scs, task)
    if task is not None:
        task.progress(1.0, "done")
    return out


def simulate(engine: MarginEngine, sc: stress.Scenario, task: Any = None) -> list[dict[str, Any]]:
    """The accounts ``sc`` puts in call (status call or force), largest call first (task fn)."""
    if task is not None:
        task.progress(0.1, f"stressing {sc.name}")
    res = stress.run(engine, sc)
    b = engine.book
    idx = res.accounts[res.status[res.accounts] >= CALL]
    idx = idx[np.lexsort((np.array(b.acct_codes, dtype=object)[idx], -res.call_amount[idx]))] if idx.size else idx
    if task is not None:
        task.check()
    eq, im, ca, sf = (np.round(a[idx], 2).tolist() for a in (res.equity, res.im, res.call_amount, res.shortfall))
    return [{"id": int(a), "account": b.acct_codes[a], "client": b.client_names[a] or b.client_codes[a],
             "status": STATUS_NAMES[int(res.status[a])], "before": STATUS_NAMES[int(res.base_status[a])],
             "new": bool(res.base_status[a] < CALL), "equity": eq[k], "im": im[k], "call_amount": ca[k],
             "shortfall": sf[k]} for k, a in enumerate(idx.tolist())]
