"""Currency borrowing reminders (issue 8): clients who trade a foreign currency on the aggregated
buying power end up borrowing it (a negative balance in that currency) and are reminded to exchange.

Rules are a risk parameter (`borrowing_rules`, four-eyes kind ``borrowing_rule``): a currency — or
``*`` for every non-base currency — with a threshold in the currency itself and/or a threshold on the
debit's base-currency (HKD) equivalent, and an enabled flag. A client's debit ``d = −balance`` in a
currency matches when an enabled rule for that currency or ``*`` has ``d ≥ currency threshold`` or
``d · fx ≥ base threshold`` (either is enough, as the desk manual says). Base-currency debits are margin
loans, not currency borrowing, and never match.

A manual exchange moves both cash balances and writes its record and audit entry in one transaction;
a reminder sent is a stored row (the reminder history).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import insert, text

from models import schema as S
from services import audit, changes
from services.auth import User
from services.options import add_cash
from services.store import Store

KIND = "borrowing_rule"
EXCHANGE_KIND = "currency_exchange"  # permission to exchange for clients and send reminders (not a change kind)
ANY = "*"


class BorrowingError(ValueError):
    """A rule, exchange or reminder the desk cannot make; the message names the field."""


@dataclass
class Rule:
    id: int
    currency: str
    currency_threshold: float | None
    base_threshold: float | None
    enabled: bool
    version: int

    @property
    def label(self) -> str:
        parts = []
        if self.currency_threshold is not None:
            parts.append(f"≥ {self.currency_threshold:,.0f} {self.currency if self.currency != ANY else ''}".rstrip())
        if self.base_threshold is not None:
            parts.append(f"≥ {self.base_threshold:,.0f} base")
        return f"{'any currency' if self.currency == ANY else self.currency}: {' or '.join(parts)}"


def rules(store: Store) -> list[Rule]:
    with store.begin() as conn:
        return [Rule(int(r.id), r.currency, r.currency_threshold, r.base_threshold, bool(r.enabled), int(r.version))
                for r in conn.execute(text("select * from borrowing_rules order by currency"))]


def _threshold(v: Any, name: str) -> float | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    try:
        f = float(str(v).replace(",", "")) if isinstance(v, str) else float(v)
    except ValueError:
        raise BorrowingError(f"{name}: “{v}” is not a number") from None
    if not math.isfinite(f) or f < 0:
        raise BorrowingError(f"{name} must be a number ≥ 0, got {v}")
    return f


def validate_rule(store: Store, currency: str, currency_threshold: Any, base_threshold: Any
                  ) -> tuple[str, float | None, float | None]:
    cur = (currency or "").strip().upper()
    if not cur:
        raise BorrowingError("currency: choose a currency (or * for every non-base currency)")
    with store.begin() as conn:
        known = {r[0]: bool(r[1]) for r in conn.execute(text("select code, is_base from currencies"))}
    if cur != ANY and cur not in known:
        raise BorrowingError(f"currency: unknown currency {cur!r}")
    if known.get(cur):
        raise BorrowingError(f"currency: {cur} is the base currency — its debits are margin loans, not borrowing")
    ct = _threshold(currency_threshold, "currency threshold")
    bt = _threshold(base_threshold, "base-currency threshold")
    if ct is None and bt is None:
        raise BorrowingError("give a currency threshold, a base-currency threshold, or both")
    if cur == ANY and ct is not None:
        raise BorrowingError("currency threshold: the * rule covers several currencies; give a base-currency "
                             "threshold only")
    return cur, ct, bt


def propose_rule(store: Store, user: User, currency: str, currency_threshold: Any, base_threshold: Any,
                 enabled: bool, reason: str) -> int:
    """A four-eyes request creating or changing the rule for ``currency``; nothing applies until approved."""
    cur, ct, bt = validate_rule(store, currency, currency_threshold, base_threshold)
    after = {"currency": cur, "currency_threshold": ct, "base_threshold": bt, "enabled": bool(enabled)}
    with store.begin() as conn:
        row = conn.execute(text("select id, currency_threshold, base_threshold, enabled from borrowing_rules "
                                "where currency = :c"), {"c": cur}).first()
        if row is not None and (row.currency_threshold, row.base_threshold, bool(row.enabled)) == (ct, bt,
                                                                                                      bool(enabled)):
            raise BorrowingError(f"that is the current rule for {cur}: nothing to change")
        pending = [r for r in changes.listing(store, status="pending", kind=KIND)
                   if (r.context or {}).get("currency") == cur]
        if pending:
            raise BorrowingError(f"change request {pending[0].id} for the {cur} rule is still pending")
        if row is None:
            key = {"id": changes.insert_id_floor(conn, "borrowing_rules") + 1}
            return changes.submit(store, user, KIND, key, after, reason, op="insert", context={"currency": cur},
                                  conn=conn)
    return changes.submit(store, user, KIND, {"id": int(row.id)}, {k: v for k, v in after.items() if k != "currency"},
                          reason, context={"currency": cur})


# ---------------------------------------------------------------------- matching
def matching_clients(store: Store) -> list[dict[str, Any]]:
    """(account, currency) debits matching an enabled rule, largest base amount first, with the
    account's other balances and its reminder history count."""
    with store.begin() as conn:
        fx = {r[0]: (float(r[1]), bool(r[2])) for r in conn.execute(text("select code, fx_rate, is_base "
                                                                            "from currencies"))}
        bal = conn.execute(text(
            "select a.code, c.code as client, c.name, b.currency, b.amount from cash_balances b "
            "join accounts a on a.id = b.account_id join clients c on c.id = a.client_id")).all()
        sent = {(r[0], r[1]): (int(r[2]), r[3]) for r in conn.execute(text(
            "select account, currency, count(*), max(ts) from borrowing_reminders group by account, currency"))}
    return match(rules(store), fx, list(bal), sent)


def match(rule_list: list[Rule], fx: dict[str, tuple[float, bool]], balances: list[Any],
          sent: dict[tuple[str, str], tuple[int, Any]] | None = None) -> list[dict[str, Any]]:
    """The matching itself over balance rows (account, client, name, currency, amount), vectorised."""
    sent = sent or {}
    active = [r for r in rule_list if r.enabled]
    if not balances or not active:
        return []
    cur = np.array([r[3] for r in balances], dtype=object)
    amt = np.array([float(r[4]) for r in balances])
    rate = np.array([fx.get(c, (1.0, False))[0] for c in cur])
    base = np.array([fx.get(c, (1.0, False))[1] for c in cur])
    debit = np.maximum(0.0, -amt)
    debit_base = debit * rate
    which = np.full(len(balances), -1, np.int64)
    # specific rules first, then '*': the first rule that matches is the one reported
    ordered = sorted(active, key=lambda r: r.currency == ANY)
    for k, r in enumerate(ordered):
        applies = (~base) & (debit > 0) & ((cur == r.currency) if r.currency != ANY else True)
        hit = np.zeros(len(balances), bool)
        if r.currency_threshold is not None:
            hit |= debit >= r.currency_threshold
        if r.base_threshold is not None:
            hit |= debit_base >= r.base_threshold
        which = np.where((which < 0) & applies & hit, k, which)
    home: dict[str, dict[str, float]] = {}
    for r in balances:
        home.setdefault(r[0], {})[r[3]] = float(r[4])
    out = []
    for i in np.flatnonzero(which >= 0)[np.argsort(-debit_base[which >= 0], kind="stable")].tolist():
        a, c = balances[i][0], cur[i]
        n, last = sent.get((a, c), (0, None))
        others = {k: v for k, v in home[a].items() if k != c and v != 0}
        out.append({"id": i + 1, "account": a, "client": balances[i][1], "name": balances[i][2], "currency": c,
                    "balance": float(amt[i]), "debit": float(debit[i]), "debit_base": float(debit_base[i]),
                    "rule": ordered[int(which[i])].label,
                    "other_balances": ", ".join(f"{k} {v:,.2f}" for k, v in sorted(others.items())),
                    "reminders": n, "last_reminder": last})
    return out


# ---------------------------------------------------------------------- exchange and reminders
def exchange(store: Store, user: User, account: str, from_currency: str, to_currency: str, amount: Any,
             rate: Any, remark: str = "") -> dict[str, Any]:
    """Sell ``amount`` of ``from_currency`` for ``amount × rate`` of ``to_currency`` in the account: both
    balances, the exchange record and the audit entry in one transaction. Returns the record with the
    new balances."""
    _check_permitted(store, user)
    fc, tc = (from_currency or "").strip().upper(), (to_currency or "").strip().upper()
    amt = _threshold(amount, "amount")
    rt = _threshold(rate, "rate")
    if amt is None or amt <= 0:
        raise BorrowingError("amount: give an amount > 0 to exchange")
    if rt is None or rt <= 0:
        raise BorrowingError("rate: give a rate > 0 (units of the currency bought per unit sold)")
    if fc == tc:
        raise BorrowingError("to currency: choose a currency other than the one sold")
    to_amount = round(amt * rt, 2)
    if to_amount <= 0:
        raise BorrowingError("amount × rate rounds to nothing")
    now = datetime.now(UTC)
    with store.begin() as conn:
        known = {r[0] for r in conn.execute(text("select code from currencies"))}
        for name, c in (("from currency", fc), ("to currency", tc)):
            if c not in known:
                raise BorrowingError(f"{name}: unknown currency {c!r}")
        acct = conn.execute(text("select id from accounts where code = :a"), {"a": account}).scalar()
        if acct is None:
            raise BorrowingError(f"account: unknown account {account!r}")
        before = {r[0]: float(r[1]) for r in conn.execute(text(
            "select currency, amount from cash_balances where account_id = :a and currency in (:f, :t)"),
            {"a": acct, "f": fc, "t": tc})}
        new_from = add_cash(conn, int(acct), fc, -amt)
        new_to = add_cash(conn, int(acct), tc, to_amount)
        rec = {"ts": now, "account": account, "from_currency": fc, "to_currency": tc, "from_amount": amt,
               "rate": rt, "to_amount": to_amount, "by": user.login, "remark": remark.strip()}
        rid = int(conn.execute(insert(S.currency_exchanges).values(**rec).returning(S.currency_exchanges.c.id))
                  .scalar_one())
        audit.append(conn, store.kind, user.login, "exchange", "cash_balances", account,
                     json.dumps(before, sort_keys=True), json.dumps({fc: new_from, tc: new_to}, sort_keys=True))
    return {**rec, "id": rid, "new_from_balance": new_from, "new_to_balance": new_to}


def _check_permitted(store: Store, user: User) -> None:
    from services.auth import AuthError, permitted

    if not permitted(store, user, "request", EXCHANGE_KIND):
        raise AuthError(f"{user.login} ({user.role_label}) may not exchange currency for clients or send reminders")


def reminder_text(row: dict[str, Any]) -> str:
    return (f"Dear client, account {row['account']} has borrowed {row['debit']:,.2f} {row['currency']} "
            f"(about {row['debit_base']:,.2f} in base currency). Please exchange into {row['currency']} to repay it.")


def send_reminders(store: Store, user: User, rows: list[dict[str, Any]], channel: str = "message") -> int:
    """Store one reminder per (account, currency) row; audited. Returns how many were sent."""
    _check_permitted(store, user)
    if not rows:
        raise BorrowingError("select at least one client to remind")
    now = datetime.now(UTC)
    recs = [{"ts": now, "account": r["account"], "currency": r["currency"], "debit": float(r["debit"]),
             "debit_base": float(r["debit_base"]), "rule": str(r.get("rule", ""))[:64], "channel": channel,
             "message": reminder_text(r), "by": user.login} for r in rows]
    with store.begin() as conn:
        conn.execute(insert(S.borrowing_reminders), recs)
        audit.append(conn, store.kind, user.login, "remind", "borrowing_reminders", "", "",
                     json.dumps([[r["account"], r["currency"]] for r in recs]))
    return len(recs)


def reminder_history(store: Store, limit: int = 5000) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "select * from borrowing_reminders order by id desc limit :n"), {"n": limit})]


def exchange_history(store: Store, limit: int = 5000) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "select * from currency_exchanges order by id desc limit :n"), {"n": limit})]


def seed_borrowing(store: Store, seed: int = 7) -> None:
    """Demo: on SQLite, approved rules (any currency ≥ 50,000 HKD; USD ≥ 5,000; CNH ≥ 30,000 disabled) and
    a pending one, reminders for a few matching clients and one manual exchange."""
    if store.kind != "sqlite" or rules(store):
        return  # decisions on PostgreSQL are made by real logins
    rita, sam = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
    for cur, ct, bt, on in (("*", None, 50_000.0, True), ("USD", 5_000.0, None, True), ("CNH", 30_000.0, None, False)):
        rid = propose_rule(store, rita, cur, ct, bt, on, "Desk policy on currency borrowing")
        changes.approve(store, sam, rid, "agreed")
    propose_rule(store, rita, "CNH", 30_000.0, 100_000.0, True, "Start reminding CNH borrowers")
    found = matching_clients(store)
    if found:
        send_reminders(store, rita, found[: min(6, len(found))])
        first = found[0]
        fx = {r[0]: float(r[1]) for r in _fx_rows(store)}
        half = float(max(1, round(first["debit"] / 2)))  # whole units of the borrowed currency at the book's FX,
        exchange(store, rita, first["account"], "HKD", first["currency"],  # so the account's equity is unchanged
                 round(half * fx[first["currency"]] / fx.get("HKD", 1.0), 2), fx.get("HKD", 1.0) / fx[first["currency"]],
                 "client asked by phone to cover half")


def _fx_rows(store: Store) -> list[Any]:
    with store.begin() as conn:
        return list(conn.execute(text("select code, fx_rate from currencies")))


@dataclass
class BorrowingSnapshot:
    rules: list[dict[str, Any]]
    matches: list[dict[str, Any]]
    reminders: list[dict[str, Any]]
    exchanges: list[dict[str, Any]]
    currencies: dict[str, float]  # code → fx (base units per unit)
    base: str
    may_request: bool


def snapshot(store: Store, user: User) -> BorrowingSnapshot:
    """Everything the currency-borrowing dock shows (a task function)."""
    from services.auth import permitted

    pending: dict[str, int] = {}
    for req in changes.listing(store, status="pending", kind=KIND):
        pending.setdefault(str(req.after.get("currency") or (req.context or {}).get("currency")), req.id)
    rows = [{"id": r.id, "currency": r.currency, "currency_threshold": r.currency_threshold,
             "base_threshold": r.base_threshold, "enabled": "yes" if r.enabled else "no", "rule": r.label,
             "pending": f"pending #{pending[r.currency]}" if r.currency in pending else ""} for r in rules(store)]
    have = {r["currency"] for r in rows}
    for k, (cur, rid) in enumerate(sorted(pending.items())):
        if cur not in have:  # a new rule waiting for approval
            rows.append({"id": 100_000 + k, "currency": cur, "currency_threshold": None, "base_threshold": None,
                         "enabled": "", "rule": "(new rule)", "pending": f"pending #{rid}"})
    fx = _fx_rows(store)
    with store.begin() as conn:
        base = conn.execute(text("select code from currencies where is_base")).scalar() or "HKD"
    return BorrowingSnapshot(rows, matching_clients(store), reminder_history(store), exchange_history(store),
                             {r[0]: float(r[1]) for r in fx}, str(base), permitted(store, user, "request", KIND))
