"""Credit usage (RISK_METHODS §2 "Credit"): per account, per credit group and for the company.

- account: `over_limit = loan − financing_limit` when positive; usage = loan / limit;
- credit group: over when the sum of its accounts' loans exceeds the group's limit;
- company: over when total loans exceed the total-financing limit, and the SFC rule
  total margin loans ≤ 5 × capital.
Everything is computed from the live engine's arrays (vectorised); the store gives the groups,
company limits and blacklist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import text

from services.margin import MarginEngine
from services.store import Store


@dataclass
class GroupUsage:
    name: str
    limit: float
    loan: float
    accounts: list[str]

    @property
    def usage(self) -> float:
        return self.loan / self.limit if self.limit > 0 else (np.inf if self.loan > 0 else 0.0)

    @property
    def over(self) -> bool:
        return self.loan > self.limit


@dataclass
class CreditUsage:
    loan: np.ndarray  # per account, base currency
    limit: np.ndarray
    over_limit: np.ndarray  # max(0, loan − limit)
    usage: np.ndarray  # loan / limit (inf where a loan has no limit, 0 where neither)
    groups: list[GroupUsage]
    company: dict[str, Any]

    def over_limit_accounts(self) -> np.ndarray:
        """Indices of accounts over their financing limit, largest excess first."""
        idx = np.flatnonzero(self.over_limit > 0)
        return idx[np.argsort(-self.over_limit[idx], kind="stable")]


def credit_usage(engine: MarginEngine, store: Store | None = None) -> CreditUsage:
    b = engine.book
    loan = engine.loan.copy()
    limit = b.financing_limit.copy()
    over = np.maximum(0.0, loan - limit)
    with np.errstate(divide="ignore", invalid="ignore"):
        usage = np.where(limit > 0, loan / limit, np.where(loan > 0, np.inf, 0.0))
    groups: list[GroupUsage] = []
    limits: dict[str, float] = {}
    if store is not None and b.acct_ids is not None:
        with store.begin() as conn:
            rows = conn.execute(text(
                "select g.name, g.limit_amount, m.account_id from credit_groups g "
                "left join credit_group_members m on m.group_id = g.id order by g.name")).all()
            limits = {d: float(a) for d, a in conn.execute(text("select dimension, amount from company_limits"))}
        by_group: dict[str, tuple[float, list[int]]] = {}
        for name, lim, acct_id in rows:
            entry = by_group.setdefault(name, (float(lim), []))
            if acct_id is not None:
                entry[1].append(int(acct_id))
        for name, (lim, ids) in by_group.items():
            idx = np.searchsorted(b.acct_ids, np.array(ids, np.int64)) if ids else np.zeros(0, np.int64)
            groups.append(GroupUsage(name, lim, float(loan[idx].sum()), [b.acct_codes[i] for i in idx.tolist()]))
    total_loans = float(loan.sum())
    capital = limits.get("capital")
    total_fin = limits.get("total_financing")
    per_client = limits.get("per_client_max")
    company: dict[str, Any] = {
        "total_loans": total_loans,
        "total_financing_limits": float(limit.sum()),
        "total_financing_cap": total_fin,
        "over_total_financing": bool(total_fin is not None and total_loans > total_fin),
        "capital": capital,
        "five_x_capital": None if capital is None else 5.0 * capital,
        "over_five_x_capital": bool(capital is not None and total_loans > 5.0 * capital),
        "per_client_max": per_client,
        "limits_above_per_client_max": [] if per_client is None else
        [b.acct_codes[i] for i in np.flatnonzero(limit > per_client).tolist()],
    }
    return CreditUsage(loan, limit, over, usage, groups, company)


def blacklisted_accounts(store: Store, tag: str) -> set[str]:
    """Account codes blacklisted for `tag` ("Credit" or "Asset Transfer"), directly or via their client."""
    with store.begin() as conn:
        rows = conn.execute(text(
            "select a.code from blacklist b join accounts a on a.id = b.account_id "
            "where b.enabled = :on and b.tag = :t union "
            "select a.code from blacklist b join accounts a on a.client_id = b.client_id "
            "where b.enabled = :on and b.tag = :t"), {"t": tag, "on": True}).scalars()
        return set(rows)
