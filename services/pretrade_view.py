"""What the desk's pre-trade views read and check (no Qt): the decision stream, the limit catalogue with
its pending change requests, the rule that fired in the desk's words, and the what-if check.

- `poll_decisions` — decisions newer than the last one shown, as numpy columns, plus the release state
  of ``approval`` decisions (``request #12`` while its four-eyes release waits, ``released``, or
  ``request #12 rejected``).
- `decision_mask` — the stream's filter (decision, trader, account) over those columns.
- `describe_rule` — a reason's rule as a definition: the limit code (and the specific rule) behind a
  ``CL_ORD_QTY`` or ``CL_ORD_QTY · Tom large orders`` reason, or what a built-in check does.
- `load_limits_view` — codes and rules with their pending requests (the Limits dock).
- `order_from_form` / `what_if_order` — the What-if dialog: the form's text as an `Order` (a bad
  field is named), then `check` (never `record`) and `what_if` on the live margin engine, under its
  lock (the store is read before the lock is taken). Nothing is stored or sent.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from services.lazy import lazy_module
from services.margin import MarginEngine
from services.pretrade import Decision
from services.pretrade_limits import LimitCode, LimitRule
from services.pretrade_orders import Order, OrderError, parse_order

if TYPE_CHECKING:
    from services import pretrade_store as _pretrade_store
    from services.pretrade_store import DecisionRow
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    _pretrade_store = lazy_module("services.pretrade_store")

MAX_ROWS = 20_000  # decisions the dock keeps
TEXT_COLUMNS = ("decision", "account", "trader", "code", "side", "rules", "release", "client_order_id")
NUMBER_COLUMNS = ("qty", "price", "notional")
BUILTIN_RULES = {
    "unknown_account": "Eligibility: the account must exist in the book.",
    "unknown_security": "Eligibility: the security must exist in the book.",
    "account_closed": "Eligibility: a closed account cannot trade.",
    "account_frozen": "Eligibility: a frozen account cannot trade.",
    "account_restricted": "Eligibility: a restricted account cannot trade.",
    "security_suspended": "Eligibility: a suspended security cannot be traded.",
    "security_halted": "Eligibility: a halted security cannot be traded.",
    "size_vs_normal": "Order size against the security's normal size (its configured normal quantity, else "
                      "normal_order_lots × lot size): prompt above 3×, reject above 10×.",
    "duplicate": "Duplicate: the same account, security, side, quantity and price as an order not rejected "
                 "within the duplicate window (60 s).",
    "notional_approval": "Notional above the approval threshold (1,000,000 HKD): the order waits for a "
                         "four-eyes release in the Approvals dock.",
    "open_margin_call": "Open margin call: no new buying on margin until the call is met.",
    "blacklisted_credit": "Blacklisted for credit: buys only up to the account's own cash.",
    "buying_power": "Buying power: the cost (or short margin) must fit the account's buying power plus its "
                    "unused daily-buy trading limit.",
    "short_sell_not_allowed": "A cash account cannot sell short.",
    "short_sell_prohibited": "Short selling the security is prohibited (or auto-prohibited).",
    "trading_limit.daily_sell": "Client trading limit: today's sells may not exceed the daily sell limit.",
    "trading_limit.order_notional": "Client trading limit: one order's notional may not exceed it.",
    "trading_limit.position_notional": "Client trading limit: the position after the order may not exceed it.",
}
FORM_LABELS = {"account": "Account", "code": "Security code", "side": "Side", "qty": "Quantity",
               "price": "Price", "order_type": "Order type"}


# ---------------------------------------------------------------------- the decision stream
def release_text(request_id: int | None, released: bool, status: str | None) -> str:
    """``released``, ``request #12`` (waiting) or ``request #12 rejected``; empty when no release."""
    if released:
        return "released"
    if not request_id:
        return ""
    return f"request #{request_id}" + ("" if status in (None, "pending", "approved") else f" {status}")


def release_states(store: Store, ids: list[int]) -> dict[int, str]:
    """Decision id → release text for these decisions (those with a release request)."""
    from sqlalchemy import bindparam, text

    out: dict[int, str] = {}
    q = text("select d.id, d.request_id, d.released, r.status from pretrade_decisions d "
             "left join change_requests r on r.id = d.request_id where d.id in :ids and d.request_id is not null"
             ).bindparams(bindparam("ids", expanding=True))
    with store.begin() as conn:
        for i in range(0, len(ids), 500):
            for r in conn.execute(q, {"ids": ids[i:i + 500]}):
                out[int(r.id)] = release_text(r.request_id, bool(r.released), r.status)
    return out


@dataclass
class DecisionPoll:
    rows: list[DecisionRow]
    columns: dict[str, np.ndarray]  # one entry per row of ``rows``
    releases: dict[int, str]  # decision id → release text (new approval rows and the watched ones)


def decision_columns(rows: list[DecisionRow], releases: dict[int, str] | None = None) -> dict[str, np.ndarray]:
    """The rows as numpy columns: text (``str``), numbers (float), ``id`` and ``ts`` (epoch seconds)."""
    recs = [r.as_record() for r in rows]
    releases = releases or {}
    cols: dict[str, np.ndarray] = {
        "id": np.array([r.id for r in rows], np.int64),
        "ts": np.array([r.ts.timestamp() for r in rows], float),
    }
    for name in TEXT_COLUMNS:
        cols[name] = np.array([str(rec[name]) for rec in recs], dtype=object)
    for name in NUMBER_COLUMNS:
        cols[name] = np.array([float(rec[name]) for rec in recs], float)
    for i, r in enumerate(rows):
        if r.id in releases:
            cols["release"][i] = releases[r.id]
    cols["account_l"] = np.array([r.account.lower() for r in rows], dtype=str)
    cols["trader_l"] = np.array([r.trader.lower() for r in rows], dtype=str)
    return cols


def poll_decisions(store: Store, after_id: int = 0, watch: list[int] | None = None,
                   limit: int = MAX_ROWS) -> DecisionPoll:
    """Decisions newer than ``after_id`` (at most ``limit`` of the newest) and the release state of
    the new approval decisions and of the ``watch`` ids (approvals still waiting for their release)."""
    rows = _pretrade_store.decisions(store, after_id=after_id, limit=limit)
    ids = [r.id for r in rows if r.request_id and not r.released] + list(watch or [])
    releases = release_states(store, ids) if ids else {}
    return DecisionPoll(rows, decision_columns(rows, releases), releases)


def decision_mask(cols: dict[str, np.ndarray], decision: str = "", trader: str = "", account: str = ""
                  ) -> np.ndarray:
    """Rows passing the filter: the decision exactly, trader and account as case-insensitive parts."""
    n = cols["id"].shape[0]
    mask = np.ones(n, bool)
    if n == 0:
        return mask
    if decision:
        mask &= cols["decision"] == decision
    for name, needle in (("trader_l", trader), ("account_l", account)):
        needle = needle.strip().lower()
        if needle:
            mask &= np.char.find(cols[name].astype(str), needle) >= 0
    return mask


def decision_counts(cols: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, int]:
    """Orders per decision among the rows in ``mask``."""
    from services.pretrade import DECISIONS

    shown = cols["decision"][mask]
    return {d: int(np.count_nonzero(shown == d)) for d in DECISIONS}


# ---------------------------------------------------------------------- the rule that fired
def number_text(v: float | None, metric: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if metric == "price_deviation":
        return f"{v:g} ({v * 100:.1f}%)"
    if float(v) == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.4f}".rstrip("0").rstrip(".")


def code_text(c: LimitCode) -> str:
    return (f"{c.code} — {c.name}: metric {c.metric}, dimension {c.dimension.replace('_', ' ')}, threshold "
            f"{number_text(c.threshold, c.metric)}, action {c.action}, {'enabled' if c.enabled else 'disabled'}")


def subjects_text(r: LimitRule) -> str:
    parts = [f"{k} {v}" for k, v in (("account", r.account), ("security", r.security), ("trader", r.trader),
                                      ("client category", r.category)) if v]
    return ", ".join(parts) or "no subject"


def rule_text(r: LimitRule, c: LimitCode | None) -> str:
    action = r.action or (f"the code's ({c.action})" if c else "the code's")
    return (f"Specific rule #{r.id} “{r.name}”: {subjects_text(r)}; threshold "
            f"{number_text(r.threshold, c.metric if c else '')}, action {action}, "
            f"{'active' if r.active else 'inactive'}")


def describe_rule(rule: str, codes: dict[str, LimitCode], rules: list[LimitRule]) -> list[str]:
    """The definition behind a reason's rule: code (and specific rule) for a limit, else the check."""
    code, _, name = rule.partition(" · ")
    c = codes.get(code.strip())
    if c is None:
        base = rule.split(".")[0] if rule.startswith("trading_limit.") else rule
        return [f"Built-in check “{rule}”: " + BUILTIN_RULES.get(rule, BUILTIN_RULES.get(base, "a pre-trade check "
                                                                                       "of RISK_METHODS §5."))]
    out = ["Global limit " + code_text(c)]
    if name:
        matches = [r for r in rules if r.code == c.code and r.name == name.strip()]
        out += [rule_text(r, c) for r in matches] or [f"Specific rule “{name}” (no longer in the catalogue)"]
    else:
        n = sum(1 for r in rules if r.code == c.code and r.active)
        out.append("The global threshold applied: no specific rule matched the order"
                   + (f" ({n} active specific rule{'s' if n != 1 else ''} for this code)" if n else "") + ".")
    return out


# ---------------------------------------------------------------------- the limits catalogue
@dataclass
class LimitsView:
    codes: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    catalogue: dict[str, LimitCode] = field(default_factory=dict)
    may_request: bool = True


def _after_text(after: dict[str, Any]) -> str:
    keys = [k for k in ("threshold", "action", "enabled", "active", "name") if k in after]
    return ", ".join(f"{k} → {after[k] if not isinstance(after[k], float) else number_text(after[k])}"
                     for k in keys)


def load_limits_view(store: Store, user: Any) -> LimitsView:
    """Every limit code and specific rule with its pending request, plus pending new rules (task)."""
    from services import changes
    from services.auth import permitted

    codes = _pretrade_store.limit_codes(store)
    rules = _pretrade_store.limit_rules(store)
    pending_code: dict[str, tuple[int, str]] = {}
    pending_rule: dict[int, tuple[int, str]] = {}
    inserts = []
    for req in changes.listing(store, status="pending", kind="limit_code"):
        pending_code.setdefault(str(req.target_key.get("code")), (req.id, _after_text(req.after)))
    for rq in changes.listing(store, status="pending", kind="limit_rule"):
        rid = int(rq.target_key.get("id", 0))
        if rq.op == "insert":
            inserts.append((rq, rid))
        else:
            pending_rule.setdefault(rid, (rq.id, _after_text(rq.after)))
    n_rules = {c.code: sum(1 for r in rules if r.code == c.code and r.active) for c in codes}
    code_rows = []
    for i, c in enumerate(codes):
        pc = pending_code.get(c.code)
        code_rows.append({"key": i, "code": c.code, "name": c.name, "metric": c.metric,
                          "dimension": c.dimension, "threshold": c.threshold, "action": c.action,
                          "enabled": "enabled" if c.enabled else "disabled", "rules": n_rules[c.code],
                          "request_id": pc[0] if pc else None,
                          "request": f"request #{pc[0]} pending: {pc[1]}" if pc else ""})
    rule_rows = []
    for r in rules:
        pr = pending_rule.get(r.id)
        rule_rows.append({"id": r.id, "name": r.name, "code": r.code, "account": r.account or "",
                          "security": r.security or "", "trader": r.trader or "", "category": r.category or "",
                          "threshold": r.threshold, "action": r.action or "",
                          "active": "active" if r.active else "inactive", "status": "stored",
                          "request_id": pr[0] if pr else None,
                          "request": f"request #{pr[0]} pending: {pr[1]}" if pr else ""})
    for ins, rid in reversed(inserts):
        a, ctx = ins.after, ins.context or {}
        rule_rows.append({"id": rid, "name": a.get("name", ""), "code": a.get("code", ""),
                          "account": ctx.get("account") or "", "security": ctx.get("security") or "",
                          "trader": a.get("trader") or "", "category": a.get("client_category") or "",
                          "threshold": float(a.get("threshold") or 0.0), "action": a.get("action") or "",
                          "active": "pending", "status": "pending", "request_id": ins.id,
                          "request": f"request #{ins.id} pending (new)"})
    return LimitsView(code_rows, rule_rows, {c.code: c for c in codes}, permitted(store, user, "request",
                                                                                   "limit_rule"))


def parse_threshold(value: str) -> tuple[float | None, str]:
    """(threshold, "") for a number ≥ 0 (thousands separators allowed), else (None, why not)."""
    t = value.strip().replace(",", "")
    if not t:
        return None, "Enter the threshold."
    try:
        v = float(t)
    except ValueError:
        return None, f"Threshold “{value.strip()}” is not a number."
    if not math.isfinite(v) or v < 0:
        return None, "The threshold must be a number ≥ 0."
    return v, ""


# ---------------------------------------------------------------------- what-if
def _number_or_text(value: str) -> Any:
    t = value.strip().replace(",", "")
    if not t:
        return None
    try:
        f = float(t)
    except ValueError:
        return value.strip()
    return int(f) if f.is_integer() and abs(f) < 1e15 else f


def friendly(e: OrderError) -> tuple[str, str]:
    """(form field, message naming it) for `parse_order`'s ``order.qty must be …`` messages."""
    msg = str(e)
    for name, label in FORM_LABELS.items():
        prefix = f"order.{name} "
        if msg.startswith(prefix):
            return name, f"{label} {msg[len(prefix):]}"
    return "", msg


def order_from_form(account: str, code: str, side: str, qty: str, price: str, order_type: str,
                    trader: str) -> Order:
    """The form as an `Order` (blank price: a market order at the last price); `OrderError` names
    the first bad field as `parse_order` does (``order.qty must be a positive number, got -5``)."""
    px = _number_or_text(price)
    obj = {"account": account.strip().upper(), "code": code.strip().upper(), "side": side,
           "qty": _number_or_text(qty), "price": px, "order_type": order_type if px is not None else "market",
           "trader": trader, "client_order_id": "what-if"}
    if obj["qty"] is None:
        raise OrderError("order.qty is missing")
    return parse_order(obj)


@dataclass
class WhatIfResult:
    decision: Decision
    margin: dict[str, dict[str, Any]] | None  # {"before": …, "after": …}; None for an unknown account/security
    problem: str = ""  # why there is no margin view
    checked_at: float = 0.0


def what_if_order(store: Store, order: Order, margin: MarginEngine | None = None, lock: Any = None,
                  now: float | None = None) -> WhatIfResult:
    """The decision (`check`, not `record`) and the margin before/after, on ``margin`` (the live
    engine) with flags, limits and today's totals from the store.

    The store is read before taking ``lock`` (only the book's shape is read from the engine then, and
    the GUI takes the same lock on its timer); `check` and `what_if`, which read prices, positions,
    cash and margin, run under it. A book reloaded in between is noticed under the lock and the
    engine rebuilt there (rare)."""
    now = time.time() if now is None else now
    book = margin.book if margin is not None else None
    eng = _pretrade_store.build_engine(store, now=now, margin=margin)
    with lock if lock is not None else contextlib.nullcontext():
        if margin is not None and margin.book is not book:
            eng = _pretrade_store.build_engine(store, now=now, margin=margin)
        decision = eng.check(order, now)
        try:
            view: dict[str, dict[str, Any]] | None = eng.what_if(order)
            problem = ""
        except OrderError as e:
            view, problem = None, str(e)
    return WhatIfResult(decision, view, problem, now)


__all__ = ["MAX_ROWS", "DecisionPoll", "LimitsView", "WhatIfResult", "decision_columns", "decision_mask",
           "describe_rule", "load_limits_view", "order_from_form", "parse_threshold", "poll_decisions",
           "what_if_order"]
