"""Pre-trade checks (RISK_METHODS §5): one decision per order, with every reason.

The decision is the most severe of all reasons — ``reject`` > ``approval`` (a four-eyes release
before the order goes out) > ``prompt`` (the trader confirms) > ``accept`` — and each reason names
the rule, its threshold and what was observed, so a trader or a risk officer can see why.

`PreTradeEngine` holds what the checks read: the live margin engine (buying power, positions, cash,
prices), account and security flags, the blacklist, short-sell status, client trading limits, the
limit catalogue with its specific rules, and the trading day's running totals. It does no I/O:
`services.pretrade_store` loads it from the store and persists decisions and fills; the order-check
service (`services.check_server`) and the what-if dialog both call `check`. Orders are parsed in
`services.pretrade_orders`; the limit catalogue and the day's running totals are in
`services.pretrade_limits`.

Limit rules. A code (``CL_ORD_NOTIONAL``: metric, dimension, threshold, action, enabled) is the
global rule. A specific rule names one or more subjects (account, security, trader, client category)
and a threshold (and optionally its own action) for a code. For every enabled code, the specific
rules that match the order all apply; only when none matches does the code's global threshold
apply. A disabled code switches off its specific rules too (the control is off firm-wide).

Subjects of the global rule by dimension: company — the firm; client — the account; security — the
security; trader; client_category; multi — the account in the security. Daily totals (quantity,
notional, order count) are kept for every combination of the four subjects, so any rule's subject
reads its total in one dictionary lookup; fills feed quantity and notional, accepted orders (not
rejected ones) feed the count. All totals start again at the trading day's start (Hong Kong date).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from models.book import ACCT_CASH
from services.margin import STATUS_NAMES, MarginEngine, derive
from services.pretrade_limits import (
    DailyTotals,
    LimitBook,
    LimitCode,
    Specific,
    hk_day,
)
from services.pretrade_orders import Order, OrderError
from services.ratios import resolve

DECISIONS = ("accept", "prompt", "approval", "reject")
SEVERITY = {d: i for i, d in enumerate(DECISIONS)}



class Reason:
    """Why an order is not a plain accept: the rule, its action, threshold and what was observed."""

    __slots__ = ("rule", "action", "threshold", "observed", "_message", "_metric")

    def __init__(self, rule: str, action: str, threshold: float | None, observed: float | None, message: str,
                 metric: str = "") -> None:
        self.rule, self.action, self.threshold, self.observed = rule, action, threshold, observed
        self._message = message  # for a limit rule: the limit's name, the sentence is built when read
        self._metric = metric

    @property
    def message(self) -> str:
        if not self._metric:
            return self._message
        return (f"{self._message}: {_metric_text(self._metric, self.observed or 0.0)} above "
                f"{_metric_text(self._metric, self.threshold or 0.0)}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reason) and self.as_json() == other.as_json()

    def __repr__(self) -> str:
        return f"Reason({self.rule!r}, {self.action!r}, {self.threshold!r}, {self.observed!r})"

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "action": self.action, "threshold": self.threshold,
                "observed": None if self.observed is None else round(self.observed, 6), "message": self.message}


@dataclass(slots=True)
class Decision:
    order: Order
    decision: str
    reasons: list[Reason]
    notional: float  # HKD
    price: float  # the price checked (the last price for a market order)
    ts: float
    trading_day: date
    id: int | None = None
    request_id: int | None = None
    category: str | None = None  # the client's category when checked (None: an unknown account)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": True, "decision": self.decision,
                               "reasons": [r.as_json() for r in self.reasons] if self.reasons else [],
                               "notional": round(self.notional, 2)}
        if self.id is not None:
            out["decision_id"] = self.id
        if self.request_id is not None:
            out["release_request"] = self.request_id
        return out


@dataclass
class Flags:
    """What the store knows beyond the book: per-account and per-security flags and lists."""

    restricted: np.ndarray  # bool per account
    closed: np.ndarray  # bool per account
    category: list[str]  # per account (client category)
    halted: np.ndarray  # bool per security
    normal_qty: np.ndarray  # float per security; NaN: normal_order_lots × lot size
    short_prohibited: dict[str, str] = field(default_factory=dict)  # code → prohibited | auto-prohibited
    blacklisted_credit: set[str] = field(default_factory=set)  # account codes
    open_calls: set[str] = field(default_factory=set)  # account codes with an open margin call
    trading_limits: dict[tuple[str, str], float] = field(default_factory=dict)  # (account, type) → amount

    @classmethod
    def empty(cls, n_acct: int, n_sec: int) -> Flags:
        return cls(np.zeros(n_acct, bool), np.zeros(n_acct, bool), ["retail"] * n_acct, np.zeros(n_sec, bool),
                   np.full(n_sec, np.nan))


class PreTradeEngine:
    """Checks orders against the live book; not thread-safe (one owner thread)."""

    def __init__(self, margin: MarginEngine, flags: Flags, limits: LimitBook,
                 parameters: dict[str, float] | None = None, now: float | None = None) -> None:
        self.margin = margin
        self.flags = flags
        self.limits = limits
        p = dict(margin.book.parameters)
        p.update(parameters or {})
        self.normal_lots = float(p.get("normal_order_lots", 50.0))
        self.prompt_multiple = float(p.get("size_prompt_multiple", 3.0))
        self.reject_multiple = float(p.get("size_reject_multiple", 10.0))
        self.dup_window = float(p.get("duplicate_window_seconds", 60.0))
        self.approval_notional = float(p.get("approval_notional", 1_000_000.0))
        self.totals = DailyTotals(hk_day(now if now is not None else datetime.now(UTC).timestamp()),
                                  limits.count_masks)
        self._recent: dict[tuple[str, str, str, float, float], float] = {}  # order → when it was last recorded
        self._recent_order: deque[tuple[float, tuple[str, str, str, float, float]]] = deque()

    # ------------------------------------------------------------------ reference data
    def set_limits(self, limits: LimitBook) -> None:
        self.limits = limits
        self.totals.count_under(limits.count_masks)

    def set_flags(self, flags: Flags) -> None:
        self.flags = flags

    # ------------------------------------------------------------------ the check
    def check(self, order: Order, now: float | None = None) -> Decision:
        """The decision for ``order`` (not recorded: call `record` once it is final)."""
        now = datetime.now(UTC).timestamp() if now is None else now
        day = hk_day(now)
        self.totals.roll(day)
        reasons: list[Reason] = []
        b = self.margin.book
        a = b.acct_index.get(order.account)
        s = b.sec_index.get(order.code)
        if a is None:
            reasons.append(Reason("unknown_account", "reject", None, None, f"account {order.account} is unknown"))
        if s is None:
            reasons.append(Reason("unknown_security", "reject", None, None, f"security {order.code} is unknown"))
        if a is None or s is None:
            return Decision(order, "reject", reasons, 0.0, order.price or 0.0, now, day)
        last = float(b.price[s])
        price = order.price if order.price is not None else last
        fx = float(b.fx[b.sec_currency[s]])
        notional = order.qty * price * fx
        self._eligibility(order, a, s, reasons)
        self._size(order, s, reasons)
        self._duplicate(order, price, now, reasons)
        if notional > self.approval_notional:
            reasons.append(Reason("notional_approval", "approval", self.approval_notional, notional,
                                  f"notional {notional:,.0f} above {self.approval_notional:,.0f} needs a release "
                                  "approval"))
        pos = self._position(a, s)
        self._money(order, a, s, pos, notional, price * fx, reasons)
        self._limit_rules(order, a, s, pos, notional, price, last, fx, reasons)
        decision = max((r.action for r in reasons), key=SEVERITY.__getitem__) if reasons else "accept"
        return Decision(order, decision, reasons, notional, price, now, day, category=self.flags.category[a])

    def record(self, d: Decision) -> None:
        """Count a final decision: a non-rejected order counts for duplicates and the daily order count."""
        if d.decision == "reject":
            return
        o = d.order
        key = (o.account, o.code, o.side, o.qty, d.price)
        self._recent[key] = d.ts
        self._recent_order.append((d.ts, key))
        self.totals.add_order(o.account, o.code, o.trader, d.category or "")

    def fill(self, order: Order, now: float | None = None) -> dict[str, Any]:
        """An execution: positions, cash and the daily totals move; returns the account's new margin."""
        now = datetime.now(UTC).timestamp() if now is None else now
        self.totals.roll(hk_day(now))
        b = self.margin.book
        a = b.acct_index.get(order.account)
        s = b.sec_index.get(order.code)
        if a is None:
            raise OrderError(f"fill.account {order.account} is unknown")
        if s is None:
            raise OrderError(f"fill.code {order.code} is unknown")
        price = order.price if order.price is not None else float(b.price[s])
        signed = order.qty if order.side == "buy" else -order.qty
        cur = int(b.sec_currency[s])
        new_qty = self._position(a, s) + signed
        new_cash = float(b.cash[a, cur]) - signed * price
        self.margin.apply_positions(np.array([a]), np.array([s]), np.array([new_qty]))
        self.margin.apply_cash(np.array([a]), np.array([cur]), np.array([new_cash]))
        notional = order.qty * price * float(b.fx[cur])
        self.totals.add_fill(order.account, order.code, order.trader, self.flags.category[a], order.side,
                             order.qty, notional)
        out = self.margin.account_result(a)
        out.update(position=new_qty, cash_currency=b.currencies[cur], cash_in_currency=new_cash)
        return out

    # ------------------------------------------------------------------ what-if
    def what_if(self, order: Order) -> dict[str, dict[str, Any]]:
        """The account's margin now and after the order fills at its price (nothing changes)."""
        m, b = self.margin, self.margin.book
        a = b.acct_index.get(order.account)
        s = b.sec_index.get(order.code)
        if a is None or s is None:
            raise OrderError(f"unknown {'account ' + order.account if a is None else 'security ' + order.code}")
        before = m.account_result(a)
        price = order.price if order.price is not None else float(b.price[s])
        cur = int(b.sec_currency[s])
        pxb = price * float(b.fx[cur])
        old = self._position(a, s)
        new = old + (order.qty if order.side == "buy" else -order.qty)
        acct = np.array([a, a])
        sec = np.array([s, s])
        im_r, mm_r, _ = resolve(b, acct, sec, np.array([old, new]), None, m.intraday_session)
        mark = float(m.pxb[s])  # the position now is valued at the market, the new one at the order price
        d_im = abs(new) * pxb * im_r[1] - abs(old) * mark * im_r[0]
        d_mm = abs(new) * pxb * mm_r[1] - abs(old) * mark * mm_r[0]
        d_net = new * pxb - old * mark
        d_gross = abs(new) * pxb - abs(old) * mark
        cash = float(m.cash_base[a]) - (new - old) * pxb
        net = float(m.sums[0, a]) + d_net
        gross = float(m.sums[1, a]) + d_gross
        r = derive(np.array([cash]), np.array([net]), np.array([gross]), np.array([float(m.im[a]) + d_im]),
                   np.array([float(m.mm[a]) + d_mm]), b.financing_limit[a:a + 1], m.force_call_factor)
        after: dict[str, Any] = {"account": before["account"], "client": before["client"],
                                 "status": STATUS_NAMES[int(r["status"][0])]}
        for k, v in r.items():
            if k != "status":
                after[k] = round(float(v[0]), 2)
        after["position"] = new
        before["position"] = old
        return {"before": before, "after": after}

    # ------------------------------------------------------------------ built-in checks
    def _position(self, a: int, s: int) -> float:
        i = self.margin.position_row(a, s)
        return float(self.margin.book.pos_qty[i]) if i >= 0 else 0.0

    def _eligibility(self, o: Order, a: int, s: int, reasons: list[Reason]) -> None:
        b, f = self.margin.book, self.flags
        if f.closed[a]:
            reasons.append(Reason("account_closed", "reject", None, None, f"account {o.account} is closed"))
        if b.frozen[a]:
            reasons.append(Reason("account_frozen", "reject", None, None, f"account {o.account} is frozen"))
        if f.restricted[a]:
            reasons.append(Reason("account_restricted", "reject", None, None, f"account {o.account} is restricted"))
        if b.suspended[s]:
            reasons.append(Reason("security_suspended", "reject", None, None, f"{o.code} is suspended"))
        if f.halted[s]:
            reasons.append(Reason("security_halted", "reject", None, None, f"{o.code} is halted"))

    def _size(self, o: Order, s: int, reasons: list[Reason]) -> None:
        normal = float(self.flags.normal_qty[s])
        if not normal > 0:
            normal = self.normal_lots * float(self.margin.book.lot_size[s])
        times = o.qty / normal
        if times > self.reject_multiple:
            reasons.append(Reason("size_vs_normal", "reject", self.reject_multiple, times,
                                  f"{o.qty:,.0f} is {times:.1f}× the normal size {normal:,.0f} "
                                  f"(reject above {self.reject_multiple:g}×)"))
        elif times > self.prompt_multiple:
            reasons.append(Reason("size_vs_normal", "prompt", self.prompt_multiple, times,
                                  f"{o.qty:,.0f} is {times:.1f}× the normal size {normal:,.0f}: confirm"))

    def _duplicate(self, o: Order, price: float, now: float, reasons: list[Reason]) -> None:
        cutoff = now - self.dup_window
        recent, last_seen = self._recent_order, self._recent
        while recent and recent[0][0] <= cutoff:  # forget what is older than the window
            ts, k = recent.popleft()
            if last_seen.get(k) == ts:  # not seen again since
                del last_seen[k]
        seen = last_seen.get((o.account, o.code, o.side, o.qty, price))
        if seen is not None:
            age = now - seen
            reasons.append(Reason("duplicate", "reject", self.dup_window, age,
                                  f"same order ({o.side} {o.qty:,.0f} {o.code} @ {price:g}) {age:.1f} s ago"))

    def _money(self, o: Order, a: int, s: int, pos: float, notional: float, pxb: float,
               reasons: list[Reason]) -> None:
        m, b, f = self.margin, self.margin.book, self.flags
        cash = float(m.cash[a])
        acct = o.account
        tl = f.trading_limits
        if o.side == "buy":
            own = max(0.0, cash)
            if acct in f.open_calls and notional > own:
                reasons.append(Reason("open_margin_call", "reject", own, notional,
                                      f"{acct} has an open margin call: no new margin buying "
                                      f"(cost {notional:,.0f} above cash {own:,.0f})"))
            if acct in f.blacklisted_credit and notional > own:
                reasons.append(Reason("blacklisted_credit", "reject", own, notional,
                                      f"{acct} is blacklisted for credit: cost {notional:,.0f} above cash "
                                      f"{own:,.0f}"))
            used = self.totals.side_notional.get((acct, "buy"), 0.0)
            line = max(0.0, tl.get((acct, "daily_buy"), 0.0) - used)
            available = float(m.buying_power[a]) + line
            if notional > available:
                reasons.append(Reason("buying_power", "reject", available, notional,
                                      f"cost {notional:,.0f} above buying power {float(m.buying_power[a]):,.0f} "
                                      f"+ trading limit {line:,.0f}"))
        else:
            short_qty = o.qty - max(0.0, pos)
            if short_qty > 0:
                status = f.short_prohibited.get(o.code)
                if b.acct_type[a] == ACCT_CASH:
                    reasons.append(Reason("short_sell_not_allowed", "reject", None, short_qty,
                                          f"{acct} is a cash account: it cannot sell {short_qty:,.0f} short"))
                elif status:
                    reasons.append(Reason("short_sell_prohibited", "reject", None, short_qty,
                                          f"short selling {o.code} is {status}"))
                need = short_qty * pxb * float(b.short_im[s] if b.short_im[s] == b.short_im[s] else 1.0)
                bp = float(m.buying_power[a])
                if need > bp:
                    reasons.append(Reason("buying_power", "reject", bp, need,
                                          f"short margin {need:,.0f} above buying power {bp:,.0f}"))
            sold = self.totals.side_notional.get((acct, "sell"), 0.0)
            lim = tl.get((acct, "daily_sell"))
            if lim is not None and sold + notional > lim:
                reasons.append(Reason("trading_limit.daily_sell", "reject", lim, sold + notional,
                                      f"today's sells {sold + notional:,.0f} above the daily sell limit {lim:,.0f}"))
        lim = tl.get((acct, "order_notional"))
        if lim is not None and notional > lim:
            reasons.append(Reason("trading_limit.order_notional", "reject", lim, notional,
                                  f"order notional {notional:,.0f} above the client's limit {lim:,.0f}"))
        lim = tl.get((acct, "position_notional"))
        if lim is not None:
            after = abs(pos + (o.qty if o.side == "buy" else -o.qty)) * pxb
            if after > lim:
                reasons.append(Reason("trading_limit.position_notional", "reject", lim, after,
                                      f"position {after:,.0f} after the order above the client's limit {lim:,.0f}"))

    # ------------------------------------------------------------------ limit rules
    def _limit_rules(self, o: Order, a: int, s: int, pos: float, notional: float, price: float, last: float,
                     fx: float, reasons: list[Reason]) -> None:
        book = self.limits
        # the order's key under each subject mask the rules use, built once
        row = (None, o.account, o.code, o.trader, self.flags.category[a])
        keys = [key(row) for key in book.key_getters]
        specific: list[Specific] | None = None
        if book.by_subject:
            for i in book.subject_slots:
                hit = book.by_subject.get(keys[i])
                if hit:
                    specific = hit if specific is None else specific + hit
        judged = None if specific is None else {h[0] for h in specific}  # codes judged by their specific rules
        qty = o.qty
        t = self.totals
        # what each metric kind observes: the order's own values, then where today's totals are kept
        values = (qty, notional, abs(pos + (qty if o.side == "buy" else -qty)) * price * fx,
                  abs(price / last - 1.0) if o.order_type == "limit" and last > 0 else 0.0)
        daily = (t.qty, t.notional, t.count)
        this = (qty, notional, 1.0)  # the order's own part of each daily total
        fired: list[tuple[int, Reason]] = []
        floor = book.order_floor
        if values[0] > floor[0] or values[1] > floor[1] or values[2] > floor[2] or values[3] > floor[3]:
            for metric, kind, _, lowest, rules in book.order_groups:
                if values[kind] > lowest:
                    _fire(fired, metric, values[kind], rules, judged)
        for metric, kind, at, lowest, rules in book.daily_groups:
            observed = daily[kind - 4].get(keys[at], 0.0) + this[kind - 4]
            if observed > lowest:  # else below the group's lowest threshold: the usual case
                _fire(fired, metric, observed, rules, judged)
        for i, c, kind, at, hits in specific or ():
            if kind < 4:
                observed = values[kind]
            else:
                observed = daily[kind - 4].get(keys[at], 0.0) + this[kind - 4]
            if observed <= hits[0][0]:
                continue
            for threshold, action, label in hits:
                if observed <= threshold:
                    break
                fired.append((i, Reason(label, action, threshold, observed, c.name, c.metric)))
        if fired:
            fired.sort(key=_first)  # catalogue order (stable within a code)
            reasons.extend(r for _, r in fired)


def _fire(fired: list[tuple[int, Reason]], metric: str, observed: float,
          rules: tuple[tuple[float, int, LimitCode, str], ...], judged: set[int] | None) -> None:
    """The global rules of a group that ``observed`` breaks (thresholds ascending), except codes judged
    by their specific rules."""
    for threshold, i, c, action in rules:
        if observed <= threshold:
            break
        if judged is None or i not in judged:
            fired.append((i, Reason(c.code, action, threshold, observed, c.name, metric)))


def _first(item: tuple[int, Reason]) -> int:
    return item[0]


def _metric_text(metric: str, v: float) -> str:
    if metric == "price_deviation":
        return f"{v * 100:.1f}%"
    return f"{v:,.0f}"
