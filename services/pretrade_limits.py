"""The limit catalogue as the pre-trade check reads it (RISK_METHODS §5): limit codes (the global
rules) and specific rules, arranged by `LimitBook` for one lookup per subject; the trading day's
running totals per subject (`DailyTotals`, reset at the Hong Kong day's start); and the subject keys
both are indexed by: (account, security, trader, client category), None where a rule does not name
that subject."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import product
from operator import itemgetter
from typing import Any

from services.calendar import HK_TZ

# subject masks over (account, security, trader, client_category)
DIMENSION_MASK = {
    "company": (False, False, False, False),
    "client": (True, False, False, False),
    "security": (False, True, False, False),
    "trader": (False, False, True, False),
    "client_category": (False, False, False, True),
    "multi": (True, True, False, False),
}
Key = tuple[str | None, ...]


@dataclass(slots=True)
class LimitCode:
    code: str
    name: str
    metric: str
    dimension: str
    threshold: float
    action: str
    enabled: bool


@dataclass(slots=True)
class LimitRule:
    id: int
    name: str
    code: str
    account: str | None
    security: str | None
    trader: str | None
    category: str | None
    threshold: float
    action: str | None  # None: the code's action
    active: bool = True

    @property
    def mask(self) -> tuple[bool, bool, bool, bool]:
        return (self.account is not None, self.security is not None, self.trader is not None,
                self.category is not None)

    @property
    def key(self) -> Key:
        return (self.account, self.security, self.trader, self.category)


_DAY_CACHE: list[Any] = [0.0, 0.0, None]  # [start, end, day] of the last Hong Kong day looked up


def hk_day(ts: float) -> date:
    """The Hong Kong calendar date of ``ts`` (cached for the day: called on every check)."""
    start, end, day = _DAY_CACHE
    if start <= ts < end:
        return day  # type: ignore[no-any-return]
    local = datetime.fromtimestamp(ts, UTC).astimezone(HK_TZ)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    _DAY_CACHE[:] = [midnight.timestamp(), midnight.timestamp() + 86_400.0, local.date()]
    return local.date()


def _subject_keys(account: str, security: str, trader: str, category: str) -> product[tuple[str | None, ...]]:
    """The order's key under each of the 16 subject masks."""
    return product((None, account), (None, security), (None, trader), (None, category))


def subject_key(mask: tuple[bool, ...], account: str, security: str, trader: str, category: str) -> Key:
    """The subject's key under ``mask``: its fields where the mask says so, None elsewhere."""
    return (account if mask[0] else None, security if mask[1] else None, trader if mask[2] else None,
            category if mask[3] else None)


def key_getter(mask: tuple[bool, ...]) -> Callable[[tuple[Any, ...]], Key]:
    """`subject_key` under ``mask`` as one C call on the subject row (None, account, security, trader,
    category): the check builds an order's key under every mask the rules use."""
    return itemgetter(*(i + 1 if on else 0 for i, on in enumerate(mask)))  # type: ignore[return-value]


class DailyTotals:
    """The trading day's filled quantity and notional and accepted-order count, per subject key.

    Orders are counted only under the subject masks an order-count limit uses (`count_masks`), not
    all sixteen (a third of the service's per-order work was that bookkeeping); the day's orders are kept
    counted by subject, so a mask that a limit change brings in is counted from the day's start."""

    def __init__(self, day: date, count_masks: tuple[tuple[bool, ...], ...] = ()) -> None:
        self.day = day
        self.qty: dict[Key, float] = {}
        self.notional: dict[Key, float] = {}
        self.count: dict[Key, int] = {}
        self.count_masks = count_masks
        self._count_keys = tuple(key_getter(m) for m in count_masks)
        # today's counted orders by subject (account, security, trader, category): one entry per subject,
        # not per order (a busy day is millions of orders over far fewer subjects)
        self.subjects: dict[tuple[str, str, str, str], int] = {}
        self.side_notional: dict[tuple[str, str], float] = {}  # (account, side) → notional

    def roll(self, day: date) -> bool:
        """Start again when the trading day changes; True when it did."""
        if day == self.day:
            return False
        self.__init__(day, self.count_masks)  # type: ignore[misc]
        return True

    def count_under(self, masks: tuple[tuple[bool, ...], ...]) -> None:
        """Count orders under ``masks`` from now on; masks new to the day are counted from its orders."""
        new = [m for m in masks if m not in self.count_masks]
        c = self.count
        for m in new:
            for subject, n in self.subjects.items():
                k = subject_key(m, *subject)
                c[k] = c.get(k, 0) + n
        if new:
            self.count_masks = self.count_masks + tuple(new)  # kept for the day: their counts stay whole
            self._count_keys = tuple(key_getter(m) for m in self.count_masks)

    def add_fill(self, account: str, security: str, trader: str, category: str, side: str, qty: float,
                 notional: float) -> None:
        for k in _subject_keys(account, security, trader, category):
            self.qty[k] = self.qty.get(k, 0.0) + qty
            self.notional[k] = self.notional.get(k, 0.0) + notional
        sk = (account, side)
        self.side_notional[sk] = self.side_notional.get(sk, 0.0) + notional

    def add_order(self, account: str, security: str, trader: str, category: str) -> None:
        subject = (account, security, trader, category)
        self.subjects[subject] = self.subjects.get(subject, 0) + 1
        c = self.count
        row = (None, *subject)
        for key in self._count_keys:
            k = key(row)
            c[k] = c.get(k, 0) + 1


# a code's specific rules for one subject key: code rank, code, metric kind, key slot, (threshold, action,
# label) ascending
Specific = tuple[int, "LimitCode", int, int, tuple[tuple[float, str, str], ...]]


ORDER_METRICS = ("order_qty", "order_notional", "position_notional", "price_deviation")  # one value per order
DAILY_METRICS = ("daily_qty", "daily_notional", "order_count")  # today's total for a subject, this order included
METRIC_KIND = {m: i for i, m in enumerate(ORDER_METRICS + DAILY_METRICS)}  # how the check reads each metric


class LimitBook:
    """The catalogue and its specific rules, arranged for the check.

    - `key_masks`: every subject mask the check looks an order up under (specific rules' subjects and
      the daily totals of global rules); the order's key under each is built once per check and the
      rules below refer to it by its place (slot).
    - `by_subject`: specific rules by subject key (its None places are the rule's mask): the order
      looks up its key under each mask of `subject_slots`.
    - `groups`: the enabled codes' global rules grouped by what they observe (metric and, for a daily
      total, the subject), thresholds ascending: one observation per group, and the usual order that
      breaks no limit stops at the group's first threshold.
    A code with a matching specific rule is judged by its specific rules only (RISK_METHODS §5)."""

    def __init__(self, codes: list[LimitCode], rules: list[LimitRule]) -> None:
        self.codes = {c.code: c for c in codes}
        self.rules = [r for r in rules if r.active]
        self.enabled = [c for c in codes if c.enabled]
        rank = {c.code: i for i, c in enumerate(self.enabled)}  # reasons come out in catalogue order
        subject_masks = sorted({r.mask for r in self.rules if r.code in rank}, reverse=True)
        daily_masks = sorted({DIMENSION_MASK[c.dimension] for c in self.enabled if c.metric in DAILY_METRICS}
                             - set(subject_masks), reverse=True)
        self.key_masks = tuple(subject_masks + daily_masks)
        self.key_getters = tuple(key_getter(m) for m in self.key_masks)
        slot: dict[tuple[bool, ...], int] = {m: i for i, m in enumerate(self.key_masks)}
        self.subject_slots = tuple(range(len(subject_masks)))
        same: dict[tuple[Key, int], list[tuple[float, str, str]]] = {}
        for r in self.rules:
            i = rank.get(r.code)
            if i is not None:
                c = self.enabled[i]
                same.setdefault((r.key, i), []).append((r.threshold, r.action or c.action, f"{c.code} · {r.name}"))
        self.by_subject: dict[Key, list[Specific]] = {}
        for (key, i), hits in same.items():
            c = self.enabled[i]
            mask = tuple(v is not None for v in key)
            self.by_subject.setdefault(key, []).append(
                (i, c, METRIC_KIND[c.metric], slot[mask], tuple(sorted(hits, key=lambda h: h[0]))))
        counted = {DIMENSION_MASK[c.dimension] for c in self.enabled if c.metric == "order_count"}
        counted |= {r.mask for r in self.rules if r.code in rank and self.codes[r.code].metric == "order_count"}
        self.count_masks = tuple(sorted(counted))  # the subject masks orders are counted under
        grouped: dict[tuple[str, int], list[tuple[float, int, LimitCode, str]]] = {}
        for i, c in enumerate(self.enabled):
            at = -1 if c.metric in ORDER_METRICS else slot[DIMENSION_MASK[c.dimension]]
            grouped.setdefault((c.metric, at), []).append((c.threshold, i, c, c.action))
        # (metric, kind, key slot or -1, lowest threshold, rules by threshold)
        self.groups = tuple((metric, METRIC_KIND[metric], at, g[0][0], tuple(g))
                            for (metric, at), g in ((k, sorted(v, key=lambda x: (x[0], x[1])))
                                                    for k, v in grouped.items()))
        # the lowest global threshold of each order metric (infinite: none): an order below all four
        # skips the order-metric groups at once
        floor = [math.inf] * len(ORDER_METRICS)
        for _, kind, _, lowest, _ in self.groups:
            if kind < len(ORDER_METRICS):
                floor[kind] = min(floor[kind], lowest)
        self.order_floor = tuple(floor)
        self.order_groups = tuple(g for g in self.groups if g[1] < len(ORDER_METRICS))
        self.daily_groups = tuple(g for g in self.groups if g[1] >= len(ORDER_METRICS))
