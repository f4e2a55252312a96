"""Automatic credit (issue 4): a deposit or stock transfer into a margin account proposes a limit.

The rule — `auto_credit_share` of the account's marginable collateral (long market value × (1 − IM
ratio), i.e. what the stock tables lend against), capped at `auto_credit_cap` and rounded down to
10,000 — is made of company parameters, themselves changed through four-eyes. Applying it is a change
request made by the system user, so a checker still approves every limit (RISK_METHODS: every risk
parameter change is four-eyes). Clients blacklisted for "Credit" are skipped and reported as needing
a manual request; accounts with a pending limit request are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.book import ACCT_MARGIN
from services.auth import User
from services.margin import MarginEngine
from services.store import Store

SYSTEM_USER = User("system", "Automatic credit", "risk_officer")


@dataclass
class Proposal:
    account: int  # engine account index
    code: str
    current: float
    proposed: float
    collateral: float


def evaluate(engine: MarginEngine, accounts: np.ndarray, share: float, cap: float,
             blacklisted: set[str] = frozenset()) -> tuple[list[Proposal], list[str]]:  # type: ignore[assignment]
    """(proposals, accounts skipped because blacklisted for Credit) for the given margin accounts."""
    b = engine.book
    accounts = np.unique(np.asarray(accounts, np.int64))
    accounts = accounts[b.acct_type[accounts] == ACCT_MARGIN]
    if accounts.size == 0:
        return [], []
    lend = np.zeros(accounts.shape[0])
    for j, a in enumerate(accounts.tolist()):
        p = engine.positions_of(a)
        longs = p["qty"] > 0
        lend[j] = float((p["mv"][longs] * (1.0 - np.minimum(1.0, p["im_ratio"][longs]))).sum())
    proposed = np.floor(np.minimum(cap, share * lend) / 10_000.0) * 10_000.0
    current = b.financing_limit[accounts]
    out: list[Proposal] = []
    skipped: list[str] = []
    for a, cur, new, coll in zip(accounts.tolist(), current.tolist(), proposed.tolist(), lend.tolist(),
                                 strict=True):
        if new <= cur:
            continue
        code = b.acct_codes[a]
        if code in blacklisted:
            skipped.append(code)
            continue
        out.append(Proposal(a, code, float(cur), float(new), float(coll)))
    return out, skipped


def submit(store: Store, engine: MarginEngine, proposals: list[Proposal]) -> list[int]:
    """One change request per proposal, by the system user, unless one is already pending."""
    from services import changes

    pending = {tuple(sorted(r.target_key.items())) for r in changes.listing(store, status="pending")
               if r.kind == "financing_limit"}
    ids = []
    acct_ids = engine.book.acct_ids
    assert acct_ids is not None, "automatic credit needs a book loaded from a store"
    for p in proposals:
        key = {"account_id": int(acct_ids[p.account])}
        if tuple(sorted(key.items())) in pending:
            continue
        with store.begin() as conn:
            from sqlalchemy import text

            exists = conn.execute(text("select 1 from financing_limits where account_id = :a"),
                                  {"a": key["account_id"]}).first()
        ids.append(changes.submit(
            store, SYSTEM_USER, "financing_limit", key, {"amount": p.proposed},
            f"automatic credit: {p.collateral:,.0f} lendable collateral after a deposit or transfer",
            op="update" if exists else "insert", amount=p.proposed,
            context={"account": p.code, "current_limit": p.current, "rule": "auto_credit"}))
    return ids
