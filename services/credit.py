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
    id: int = 0  # credit_groups.id (the key of its change requests)

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
                "select g.name, g.limit_amount, m.account_id, g.id from credit_groups g "
                "left join credit_group_members m on m.group_id = g.id order by g.name")).all()
            limits = {d: float(a) for d, a in conn.execute(text("select dimension, amount from company_limits"))}
        by_group: dict[str, tuple[float, list[int], int]] = {}
        for name, lim, acct_id, group_id in rows:
            entry = by_group.setdefault(name, (float(lim), [], int(group_id)))
            if acct_id is not None:
                entry[1].append(int(acct_id))
        for name, (lim, ids, group_id) in by_group.items():
            idx = np.searchsorted(b.acct_ids, np.array(ids, np.int64)) if ids else np.zeros(0, np.int64)
            groups.append(GroupUsage(name, lim, float(loan[idx].sum()), [b.acct_codes[i] for i in idx.tolist()],
                                     group_id))
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


def create_credited_client(store: Store, user: Any, account: str, amount: float, reason: str) -> int:
    """A change request granting a first financing limit; a client already credited is refused."""
    from services import changes

    if not amount > 0:
        raise changes.ChangeError(f"a financing limit must be > 0, got {amount:g}")
    with store.begin() as conn:
        row = conn.execute(text("select a.id, a.type, a.closed, f.amount from accounts a left join financing_limits f "
                                "on f.account_id = a.id where a.code = :c"), {"c": account}).first()
    if row is None:
        raise changes.ChangeError(f"unknown account {account!r}")
    if row.type == "cash" or row.closed:
        raise changes.ChangeError(f"{account} is a {'closed' if row.closed else 'cash'} account: it cannot be credited")
    if row.amount is not None and row.amount > 0:
        raise changes.ChangeError(f"{account} is already credited (limit {row.amount:,.2f}); adjust its limit instead")
    op = "update" if row.amount is not None else "insert"
    return changes.submit(store, user, "financing_limit", {"account_id": int(row.id)}, {"amount": float(amount)},
                          reason, op=op, amount=float(amount), context={"account": account, "new_client": True})


def delete_closed_limits(store: Store, user: Any, reason: str) -> list[int]:
    """Change requests removing the limits of closed accounts (they still count toward company totals)."""
    from services import changes

    with store.begin() as conn:
        ids = [r[0] for r in conn.execute(text(
            "select f.account_id from financing_limits f join accounts a on a.id = f.account_id "
            "where a.closed = :t"), {"t": True})]
    return [changes.submit(store, user, "financing_limit", {"account_id": i}, {}, reason, op="delete")
            for i in ids]


def limit_history(store: Store, account: str | None = None, start: Any = None, end: Any = None,
                  search: str | None = None) -> list[dict[str, Any]]:
    """Credit snapshots: every applied financing-limit change (who, when, before, after, request), oldest
    first, from the audit trail. ``start`` (inclusive) and ``end`` (exclusive) are aware datetimes;
    ``account`` is an exact account code; ``search`` matches, without case, part of the account code,
    the client code or the client name."""
    import json

    from services import audit

    with store.begin() as conn:
        ids = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(text(
            "select a.id, a.code, c.code, c.name from accounts a join clients c on c.id = a.client_id"))}
    needle = (search or "").strip().casefold()
    out = []
    for r in reversed(audit.rows(store, start, end, entity="financing_limits")):
        if r["action"] != "apply":
            continue
        key = json.loads(r["entity_key"] or "{}")
        code, client, name = ids.get(key.get("account_id"), (None, None, None))
        if account is not None and code != account:
            continue
        if needle and not any(needle in (v or "").casefold() for v in (code, client, name)):
            continue
        before, after = json.loads(r["before"] or "{}"), json.loads(r["after"] or "{}")
        b, a = before.get("amount"), after.get("amount")
        out.append({"ts": r["ts"], "account": code, "client": client, "client_name": name, "by": r["actor"],
                    "request_id": r["request_id"], "before": b, "after": a,
                    "change": None if a is None and b is None else (a or 0.0) - (b or 0.0)})
    return out


def client_financing(store: Store) -> dict[str, Any]:
    """Client financing from the stored cash balances of margin and intraday accounts (not closed).

    - ``currencies``: per currency, the debit balances (negative cash, as a positive amount) in that
      currency and in HKD at the stored rate, the number of accounts in debit and the currency's share
      of all debits in HKD — what the firm lends in each currency;
    - ``over_limit``: accounts whose loan (`max(0, −Σ cash · fx)`, RISK_METHODS §1) exceeds their
      financing limit, largest excess first, with client, limit, loan, excess and usage;
    - totals: ``total_debit_hkd`` (sum of the per-currency debits) and ``total_loan_hkd`` (sum of
      loans: a credit in one currency offsets a debit in another).
    Plain floats, strings and lists only, so it crosses threads and processes as it is."""
    with store.begin() as conn:
        fx = {str(c): float(r) for c, r in conn.execute(text("select code, fx_rate from currencies"))}
        rows = conn.execute(text(
            "select a.id, a.code, c.code as client, c.name as client_name, b.currency, b.amount "
            "from cash_balances b join accounts a on a.id = b.account_id join clients c on c.id = a.client_id "
            "where a.type <> 'cash' and a.closed = :f"), {"f": False}).all()
        limits = {int(a): float(v) for a, v in conn.execute(text("select account_id, amount from financing_limits"))}
    per_ccy: dict[str, list[float]] = {}
    cash: dict[int, float] = {}
    who: dict[int, tuple[str, str, str]] = {}
    for r in rows:
        rate = fx.get(r.currency)
        if rate is None:
            raise ValueError(f"currency {r.currency} of {r.code} has no exchange rate")
        amount = float(r.amount)
        cash[r.id] = cash.get(r.id, 0.0) + amount * rate
        who[r.id] = (r.code, r.client, r.client_name)
        if amount < 0:
            entry = per_ccy.setdefault(r.currency, [0.0, 0.0, 0.0])
            entry[0] += -amount
            entry[1] += -amount * rate
            entry[2] += 1
    total_debit = sum(v[1] for v in per_ccy.values())
    currencies = [{"currency": c, "fx_rate": fx[c], "debit": v[0], "debit_hkd": v[1], "accounts": int(v[2]),
                   "share": v[1] / total_debit if total_debit > 0 else 0.0}
                  for c, v in sorted(per_ccy.items(), key=lambda kv: -kv[1][1])]
    over: list[dict[str, Any]] = []
    for acct_id, c in cash.items():
        loan = max(0.0, -c)
        limit = limits.get(acct_id, 0.0)
        if loan > limit:
            code, client, name = who[acct_id]
            over.append({"account": code, "client": client, "client_name": name, "limit": limit, "loan": loan,
                         "over": loan - limit, "usage": loan / limit if limit > 0 else None})
    over.sort(key=lambda o: (-float(o["over"]), str(o["account"])))
    return {"currencies": currencies, "over_limit": over, "total_debit_hkd": total_debit,
            "total_loan_hkd": sum(max(0.0, -c) for c in cash.values())}
