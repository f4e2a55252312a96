"""Pre-trade checks and the store: load what the checks read, keep what they decided.

- `build_engine(store)` — the book with its live margin, account/security flags, lists, client
  trading limits, the limit catalogue and rules, and the trading day's totals so far (fills and
  order counts), so a restarted service carries on where it stopped.
- `load_flags`, `load_limits` — reloaded by the service when a change request is decided.
- `save_decisions`, `decision_row`, `save_decision_rows` — accepted / prompted / rejected decisions,
  batched (the service's decision writer).
- `save_approval` — an ``approval`` decision and its four-eyes order-release request, together in
  one transaction (the release shows in the Approvals dock; approving it sets ``released``).
- `save_fill` — an execution: the fill, the position and the cash balance in one transaction.
- `decisions`, `reason_counts`, `limit_codes`, `limit_rules` — what the desk's Pre-trade dock reads.
- `propose_code`, `propose_rule` — limit edits, as change requests.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from models import schema as S
from services import changes
from services.auth import User
from services.margin import MarginEngine
from services.pretrade import DECISIONS, Decision, Flags, PreTradeEngine
from services.pretrade_limits import LimitBook, LimitCode, LimitRule, hk_day
from services.pretrade_orders import Order, to_json
from services.store import Store, StoreError

SERVICE_USER = User("check-server", "Order-check service", "trader")


# ---------------------------------------------------------------------- loading
def load_flags(store: Store, engine: MarginEngine) -> Flags:
    from services import short_sell, trading_limits

    b = engine.book
    f = Flags.empty(b.n_acct, b.n_sec)
    ai, si = b.acct_index, b.sec_index
    with store.begin() as conn:
        for r in conn.execute(text(
                "select a.code, a.restricted, a.closed, c.category from accounts a join clients c on c.id = a.client_id")):
            i = ai.get(r.code)
            if i is not None:
                f.restricted[i] = bool(r.restricted)
                f.closed[i] = bool(r.closed)
                f.category[i] = r.category
        for r in conn.execute(text("select code, halted, normal_qty from securities")):
            j = si.get(r.code)
            if j is not None:
                f.halted[j] = bool(r.halted)
                f.normal_qty[j] = math.nan if r.normal_qty is None else float(r.normal_qty)
        f.open_calls = set(conn.execute(text(
            "select distinct a.code from margin_calls m join accounts a on a.id = m.account_id "
            "where m.state = 'open'")).scalars())
        f.blacklisted_credit = set(conn.execute(text(
            "select a.code from blacklist l join accounts a on a.id = l.account_id or a.client_id = l.client_id "
            "where l.enabled and l.tag = 'Credit'")).scalars())
    f.short_prohibited = {c: st.effective for c, st in short_sell.statuses(store).items() if st.effective != "sellable"}
    f.trading_limits = trading_limits.in_force(store)
    return f


def flags_signature(store: Store, now: float | None = None) -> tuple[Any, ...]:
    """A cheap fingerprint of everything `load_flags` reads (one query): reload only when it moves.
    The minute is part of it, so limits that expire by the clock are dropped within a minute."""
    minute = int((now if now is not None else datetime.now(UTC).timestamp()) // 60)
    with store.begin() as conn:
        row = conn.execute(text(
            "select (select count(*) from margin_calls where state = 'open'), "
            "(select coalesce(max(id), 0) from margin_calls), "
            "(select coalesce(sum(version), 0) + count(*) from accounts), "
            "(select coalesce(sum(version), 0) from securities), "
            "(select count(*) from securities where halted or suspended), "
            "(select coalesce(sum(version), 0) + count(*) from blacklist), "
            "(select count(*) from lending_inventory where auto_prohibited), "
            "(select coalesce(sum(version), 0) + count(*) from short_sell_rules), "
            "(select coalesce(sum(version), 0) + count(*) from client_trading_limits)")).one()
    return (minute, *row)


def limit_codes(store: Store) -> list[LimitCode]:
    with store.begin() as conn:
        rows = conn.execute(text("select code, name, metric, dimension, threshold, action, enabled from limit_codes "
                                 "order by code")).all()
    return [LimitCode(r.code, r.name, r.metric, r.dimension, float(r.threshold), r.action, bool(r.enabled))
            for r in rows]


def limit_rules(store: Store, active_only: bool = False) -> list[LimitRule]:
    with store.begin() as conn:
        rows = conn.execute(text(
            "select r.id, r.name, r.code, a.code as account, s.code as security, r.trader, r.client_category, "
            "r.threshold, r.action, r.active from limit_rules r left join accounts a on a.id = r.account_id "
            "left join securities s on s.id = r.security_id order by r.id")).all()
    return [LimitRule(int(r.id), r.name, r.code, r.account, r.security, r.trader, r.client_category,
                      float(r.threshold), r.action, bool(r.active)) for r in rows if r.active or not active_only]


def load_limits(store: Store) -> LimitBook:
    return LimitBook(limit_codes(store), limit_rules(store, active_only=True))


def build_engine(store: Store, now: float | None = None, margin: MarginEngine | None = None) -> PreTradeEngine:
    """A pre-trade engine over the store's book (or ``margin``, the live engine), with today's totals."""
    now = datetime.now(UTC).timestamp() if now is None else now
    if margin is None:
        margin = MarginEngine(store.load_book())
    params = store.parameters()
    eng = PreTradeEngine(margin, load_flags(store, margin), load_limits(store), params, now)
    day = hk_day(now)
    cats = eng.flags.category
    ai = margin.book.acct_index
    with store.begin() as conn:
        fills = conn.execute(text("select f.account, f.trader, f.code, f.side, f.qty, f.price, s.currency "
                                  "from pretrade_fills f join securities s on s.code = f.code "
                                  "where f.trading_day = :d order by f.id"), {"d": day}).all()
        counts = conn.execute(text("select account, trader, code from pretrade_decisions "
                                   "where trading_day = :d and decision <> 'reject'"), {"d": day}).all()
    fx = dict(zip(margin.book.currencies, margin.book.fx.tolist(), strict=True))
    for r in fills:
        a = ai.get(r.account)
        eng.totals.add_fill(r.account, r.code, r.trader, cats[a] if a is not None else "", r.side, float(r.qty),
                            float(r.qty) * float(r.price) * fx.get(r.currency, 1.0))
    for r in counts:
        a = ai.get(r.account)
        eng.totals.add_order(r.account, r.code, r.trader, cats[a] if a is not None else "")
    return eng


# ---------------------------------------------------------------------- writing
def _decision_row(d: Decision) -> dict[str, Any]:
    o = d.order
    return {"ts": datetime.fromtimestamp(d.ts, UTC), "trading_day": d.trading_day,
            "client_order_id": o.client_order_id, "account": o.account, "trader": o.trader, "code": o.code,
            "side": o.side, "qty": o.qty, "price": d.price, "notional": d.notional, "decision": d.decision,
            "reasons": json.dumps([r.as_json() for r in d.reasons])}


_DECISION_COLUMNS = ("ts, trading_day, client_order_id, account, trader, code, side, qty, price, notional, "
                     "decision, reasons, released, version")
# SQLite: one prepared statement stepped per row (the storing runs in a writer process of its own, so
# its steps hand no interpreter back and forth with the request loop); half the cost of expanding one
# JSON parameter with json_each/json_extract. PostgreSQL: one statement per batch, its rows one JSON
# parameter the server expands (one round trip).
_DECISION_SQL = {
    "sqlite": f"insert into pretrade_decisions ({_DECISION_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1)",
    "postgresql": f"insert into pretrade_decisions ({_DECISION_COLUMNS}) select (r->>0)::timestamptz, "
                  "(r->>1)::date, r->>2, r->>3, r->>4, r->>5, r->>6, (r->>7)::float8, (r->>8)::float8, "
                  "(r->>9)::float8, r->>10, r->>11, false, 1 from json_array_elements(%s::json) r",
}


def decision_row(d: Decision, reasons: list[dict[str, Any]] | None = None) -> tuple[Any, ...]:
    """A decision as the row `save_decision_rows` stores: its time as epoch seconds, its reasons as JSON
    text. ``reasons``: the decision's reasons as already built for its answer (else built here)."""
    o = d.order
    if reasons is None:
        reasons = [r.as_json() for r in d.reasons]
    # numpy numbers in a reason are written as numbers, as in the answer
    why = to_json(reasons).decode() if reasons else "[]"
    return (d.ts, _iso_day(d.trading_day), o.client_order_id, o.account, o.trader, o.code, o.side, o.qty,
            d.price, d.notional, d.decision, why)


@lru_cache(maxsize=64)
def _iso_day(day: date) -> str:
    return day.isoformat()


def save_decision_rows(store: Store, rows: list[Any], slice_rows: int = 0, pause: float = 0.0) -> None:
    """Decision rows (`decision_row`) in one transaction; with ``slice_rows``, written that many at a
    time with ``pause`` seconds between (the writer process: never a core held for long)."""
    if not rows:
        return
    us = np.round(np.fromiter((r[0] for r in rows), float, len(rows)) * 1e6).astype("datetime64[us]")
    iso = np.datetime_as_string(us, unit="us").tolist()  # the whole batch at once, not strftime per row
    if store.kind == "sqlite":  # stamps as SQLAlchemy stores them
        stamped = [(ts.replace("T", " "), *r[1:]) for ts, r in zip(iso, rows, strict=True)]
    else:
        stamped = [(ts + "+00:00", *r[1:]) for ts, r in zip(iso, rows, strict=True)]
    step = slice_rows or len(stamped)
    sql = _DECISION_SQL[store.kind]
    try:
        with store.begin() as conn:
            for k in range(0, len(stamped), step):
                part = stamped[k:k + step]
                if k and pause:
                    time.sleep(pause)
                conn.exec_driver_sql(sql, part if store.kind == "sqlite" else (to_json(part).decode(),))
    except DBAPIError as e:  # the transaction rolled back: nothing half-written
        raise StoreError(f"the store refused {len(rows)} pre-trade decisions: {e.orig}") from e


def save_decisions(store: Store, decisions: list[Decision], reasons: list[list[dict[str, Any]]] | None = None) -> None:
    """Many decisions in one transaction (`save_decision_rows`)."""
    whys: list[Any] = [None] * len(decisions) if reasons is None else reasons
    save_decision_rows(store, [decision_row(d, why) for d, why in zip(decisions, whys, strict=True)])


def save_approval(store: Store, d: Decision, user: User = SERVICE_USER) -> Decision:
    """Store an ``approval`` decision with its order-release request (one transaction); sets the ids."""
    o = d.order
    with store.begin() as conn:
        did = int(conn.execute(S.pretrade_decisions.insert().values(**_decision_row(d))
                               .returning(S.pretrade_decisions.c.id)).scalar_one())
        why = "; ".join(r.message for r in d.reasons if r.action == "approval")
        ctx = {"account": o.account, "order": f"{o.side} {o.qty:,.0f} {o.code} @ {d.price:g}", "trader": o.trader,
               "client_order_id": o.client_order_id, "notional": round(d.notional, 2),
               "reasons": [r.as_json() for r in d.reasons]}
        rid = changes.submit(store, user, "order_release", {"id": did}, {"released": True},
                             f"release order {o.client_order_id or did}: {why}", amount=d.notional, context=ctx,
                             conn=conn)
        conn.execute(S.pretrade_decisions.update().where(S.pretrade_decisions.c.id == did).values(request_id=rid))
    d.id, d.request_id = did, rid
    return d


def save_fill(store: Store, order: Order, price: float, ts: float) -> None:
    """The fill, the new position and the new cash balance, written together."""
    signed = order.qty if order.side == "buy" else -order.qty
    with store.begin() as conn:
        ids = conn.execute(text("select a.id as acct, s.id as sec, s.currency from accounts a, securities s "
                                "where a.code = :a and s.code = :c"), {"a": order.account, "c": order.code}).first()
        if ids is None:
            raise ValueError(f"unknown account {order.account} or security {order.code}")
        conn.execute(S.pretrade_fills.insert().values(
            ts=datetime.fromtimestamp(ts, UTC), trading_day=hk_day(ts), client_order_id=order.client_order_id,
            account=order.account, trader=order.trader, code=order.code, side=order.side, qty=order.qty,
            price=price))
        _upsert_add(conn, "positions", "security_id", ids.acct, ids.sec, "qty", signed)
        _upsert_add(conn, "cash_balances", "currency", ids.acct, ids.currency, "amount", -signed * price)


def _upsert_add(conn: Connection, table: str, key: str, acct: int, k: Any, col: str, delta: float) -> None:
    n = conn.execute(text(f"update {table} set {col} = {col} + :d where account_id = :a and {key} = :k"),
                     {"d": delta, "a": acct, "k": k}).rowcount
    if not n:
        conn.execute(text(f"insert into {table} (account_id, {key}, {col}) values (:a, :k, :d)"),
                     {"d": delta, "a": acct, "k": k})


# ---------------------------------------------------------------------- reading (the desk's view)
@dataclass
class DecisionRow:
    id: int
    ts: datetime
    client_order_id: str
    account: str
    trader: str
    code: str
    side: str
    qty: float
    price: float
    notional: float
    decision: str
    reasons: list[dict[str, Any]]
    request_id: int | None
    released: bool

    def as_record(self) -> dict[str, Any]:
        rules = ", ".join(str(r.get("rule")) for r in self.reasons)
        return {"id": self.id, "ts": self.ts, "client_order_id": self.client_order_id, "account": self.account,
                "trader": self.trader, "code": self.code, "side": self.side, "qty": self.qty, "price": self.price,
                "notional": self.notional, "decision": self.decision, "rules": rules,
                "release": ("released" if self.released else f"request #{self.request_id}")
                if self.request_id else ""}


def decisions(store: Store, after_id: int = 0, limit: int = 5000, day: date | None = None) -> list[DecisionRow]:
    """Decisions newer than ``after_id`` (oldest first), at most ``limit`` of the newest."""
    q = ("select id, ts, client_order_id, account, trader, code, side, qty, price, notional, decision, reasons, "
         "request_id, released from pretrade_decisions where id > :after")
    args: dict[str, Any] = {"after": after_id, "n": limit}
    if day is not None:
        q += " and trading_day = :d"
        args["d"] = day
    with store.begin() as conn:
        rows = conn.execute(text(q + " order by id desc limit :n"), args).all()
    from services.store import _as_dt

    return [DecisionRow(int(r.id), _as_dt(r.ts) or datetime.now(UTC), r.client_order_id, r.account, r.trader, r.code,
                        r.side, float(r.qty), float(r.price), float(r.notional), r.decision, json.loads(r.reasons),
                        r.request_id, bool(r.released)) for r in reversed(rows)]


def reason_counts(rows: list[DecisionRow]) -> dict[str, dict[str, int]]:
    """rule → {decision → orders}, for the counts panel (pure)."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        for reason in r.reasons:
            d = out.setdefault(str(reason.get("rule")), dict.fromkeys(DECISIONS, 0))
            d[str(reason.get("action"))] = d.get(str(reason.get("action")), 0) + 1
    return out


# ---------------------------------------------------------------------- edits (four-eyes)
def propose_code(store: Store, user: User, code: str, reason: str, *, threshold: float | None = None,
                 action: str | None = None, enabled: bool | None = None) -> int:
    after: dict[str, Any] = {}
    if threshold is not None:
        if not math.isfinite(threshold) or threshold < 0:
            raise changes.ChangeError("a limit threshold is a number ≥ 0")
        after["threshold"] = float(threshold)
    if action is not None:
        if action not in S.LIMIT_ACTIONS:
            raise changes.ChangeError(f"action must be one of {', '.join(S.LIMIT_ACTIONS)}")
        after["action"] = action
    if enabled is not None:
        after["enabled"] = bool(enabled)
    if not after:
        raise changes.ChangeError("nothing to change")
    return changes.submit(store, user, "limit_code", {"code": code}, after, reason, context={"code": code})


RULE_FIELDS = ("account", "security", "trader", "category")


def rule_problem(store: Store, code: str, subjects: Mapping[str, str | None], threshold: float) -> str:
    """Why a specific rule cannot be made ('' when it can): subjects must match the code's dimension."""
    codes = {c.code: c for c in limit_codes(store)}
    c = codes.get(code)
    if c is None:
        return f"limit code {code!r} does not exist"
    if not math.isfinite(threshold) or threshold < 0:
        return "a limit threshold is a number ≥ 0"
    given = [k for k in RULE_FIELDS if subjects.get(k)]
    if not given:
        return "name at least one subject (account, security, trader or client category)"
    want = {"client": ["account"], "security": ["security"], "trader": ["trader"], "client_category": ["category"]}
    if c.dimension == "company":
        return f"{code} is a company-wide limit: it has no specific rules"
    if c.dimension == "multi":
        if len(given) < 2:
            return f"{code} is a multi-dimension limit: name two or more subjects"
    elif given != want[c.dimension]:
        return f"{code} is a {c.dimension.replace('_', ' ')} limit: name the {want[c.dimension][0]} only"
    with store.begin() as conn:
        if subjects.get("account") and conn.execute(text("select 1 from accounts where code = :c"),
                                                    {"c": subjects["account"]}).first() is None:
            return f"account {subjects['account']} does not exist"
        if subjects.get("security") and conn.execute(text("select 1 from securities where code = :c"),
                                                     {"c": subjects["security"]}).first() is None:
            return f"security {subjects['security']} does not exist"
    return ""


def propose_rule(store: Store, user: User, name: str, code: str, subjects: Mapping[str, str | None], threshold: float,
                 reason: str, action: str | None = None, rule_id: int | None = None,
                 active: bool = True) -> int:
    """A new specific rule (or, with ``rule_id``, new values for one) as a change request."""
    problem = rule_problem(store, code, subjects, threshold)
    if not problem and not name.strip():
        problem = "give the rule a name"
    if not problem and action is not None and action not in S.LIMIT_ACTIONS:
        problem = f"action must be one of {', '.join(S.LIMIT_ACTIONS)}"
    if problem:
        raise changes.ChangeError(problem)
    with store.begin() as conn:
        acct = conn.execute(text("select id from accounts where code = :c"),
                            {"c": subjects.get("account") or ""}).scalar()
        sec = conn.execute(text("select id from securities where code = :c"),
                           {"c": subjects.get("security") or ""}).scalar()
    after = {"name": name.strip(), "code": code, "account_id": acct, "security_id": sec,
             "trader": subjects.get("trader") or None, "client_category": subjects.get("category") or None,
             "threshold": float(threshold), "action": action, "active": bool(active)}
    ctx = {"code": code, **{k: v for k, v in subjects.items() if v}}
    if rule_id is None:
        with store.begin() as conn:
            new_id = changes.insert_id_floor(conn, "limit_rules") + 1
            return changes.submit(store, user, "limit_rule", {"id": new_id}, after, reason, op="insert",
                                  context=ctx, conn=conn)
    return changes.submit(store, user, "limit_rule", {"id": rule_id}, after, reason, context=ctx)


def set_rule_active(store: Store, user: User, rule_id: int, active: bool, reason: str) -> int:
    return changes.submit(store, user, "limit_rule", {"id": rule_id}, {"active": bool(active)}, reason)

