"""Stress scenarios (RISK_METHODS §3): what a market move does to every account's margin.

A scenario is a list of shocks ``(target, change)`` — ``change`` relative, −0.2 = −20% — with
targets, most specific first: ``security:CODE`` > ``group:NAME`` (stock group) > ``level:1|2|3`` >
``market:HK`` > ``all``. Each security takes the most specific shock that matches it (no
compounding); exempt securities are not shocked; FX shocks scale ``fx[c]``. Per account the §1
numbers are recomputed at the shocked prices with the ratios in force (`MarginEngine.sums_at` —
the same chunked, vectorised sum as the live engine), plus ``shortfall' = max(0, −E')``. Exempt
accounts are left out of the summary.

The scenario file (DESIGN.md): ``{"name", "shocks": [{"target", "change"}], "fx_shocks":
[{"currency", "change"}], "exempt_securities": [...], "exempt_accounts": [...]}``. A bad file is
refused with the JSON path of the bad value (`ScenarioError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.book import Book
from services.margin import STATUS_NAMES, MarginEngine, derive

TARGET_KINDS = ("all", "market", "level", "group", "security")  # least → most specific
TOP_N = 20
KNOWN_MARKETS = frozenset({"HK", "US", "CN", "SG", "JP", "UK", "TW", "KR", "AU", "DE", "FR"})
KNOWN_CURRENCIES = frozenset({"HKD", "USD", "CNY", "CNH", "SGD", "JPY", "GBP", "TWD", "KRW", "AUD", "EUR"})
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "resources" / "scenarios"


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the JSON path and the problem."""


@dataclass
class Scenario:
    name: str
    shocks: list[tuple[str, float]]  # (target, change)
    fx_shocks: list[tuple[str, float]] = field(default_factory=list)
    exempt_securities: list[str] = field(default_factory=list)
    exempt_accounts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shocks": [{"target": t, "change": c} for t, c in self.shocks],
                "fx_shocks": [{"currency": k, "change": c} for k, c in self.fx_shocks],
                "exempt_securities": list(self.exempt_securities), "exempt_accounts": list(self.exempt_accounts)}


def _change(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ScenarioError(f"{path}: change must be a number, got {v!r}")
    f = float(v)
    if not np.isfinite(f):
        raise ScenarioError(f"{path}: change must be finite, got {v!r}")
    if f < -1.0:
        raise ScenarioError(f"{path}: change {f:g} is below −100%")
    return f


def _strings(doc: dict[str, Any], key: str) -> list[str]:
    v = doc.get(key, [])
    if not isinstance(v, list):
        raise ScenarioError(f"{key}: must be a list, got {type(v).__name__}")
    for i, x in enumerate(v):
        if not isinstance(x, str):
            raise ScenarioError(f"{key}[{i}]: must be text, got {x!r}")
    return list(v)


def scenario_from_dict(doc: Any, book: Book | None = None) -> Scenario:
    """A `Scenario` from its JSON document; with ``book`` every target must exist in it."""
    if not isinstance(doc, dict):
        raise ScenarioError("scenario: must be a JSON object")
    name = doc.get("name", "scenario")
    if not isinstance(name, str):
        raise ScenarioError(f"name: must be text, got {name!r}")
    raw = doc.get("shocks", [])
    if not isinstance(raw, list):
        raise ScenarioError(f"shocks: must be a list, got {type(raw).__name__}")
    shocks = []
    for i, s in enumerate(raw):
        path = f"shocks[{i}]"
        if not isinstance(s, dict):
            raise ScenarioError(f"{path}: must be an object with target and change")
        target = s.get("target")
        if not isinstance(target, str):
            raise ScenarioError(f"{path}.target: must be text, got {target!r}")
        kind, _, value = target.partition(":")
        if kind not in TARGET_KINDS or (kind == "all") != (value == ""):
            raise ScenarioError(f"{path}.target: unknown target {target!r} (all, market:HK, level:1, group:NAME, "
                                "security:CODE)")
        if kind == "level" and value not in ("1", "2", "3"):
            raise ScenarioError(f"{path}.target: level must be 1, 2 or 3, got {value!r}")
        if book is not None:
            if kind == "security" and value not in book.sec_index:
                raise ScenarioError(f"{path}.target: unknown security {value!r}")
            if kind == "group" and value not in book.stock_groups:
                raise ScenarioError(f"{path}.target: unknown stock group {value!r}")
            if kind == "market" and value not in book.markets and value not in KNOWN_MARKETS:
                raise ScenarioError(f"{path}.target: unknown market {value!r}")
        shocks.append((target, _change(s.get("change"), f"{path}.change")))
    fx = []
    raw_fx = doc.get("fx_shocks", [])
    if not isinstance(raw_fx, list):
        raise ScenarioError("fx_shocks: must be a list")
    for i, s in enumerate(raw_fx):
        path = f"fx_shocks[{i}]"
        if not isinstance(s, dict) or not isinstance(s.get("currency"), str):
            raise ScenarioError(f"{path}.currency: must be text")
        if book is not None and s["currency"] not in book.currencies and s["currency"] not in KNOWN_CURRENCIES:
            raise ScenarioError(f"{path}.currency: unknown currency {s['currency']!r}")
        fx.append((s["currency"], _change(s.get("change"), f"{path}.change")))
    sc = Scenario(name, shocks, fx, _strings(doc, "exempt_securities"), _strings(doc, "exempt_accounts"))
    if book is not None:
        for i, c in enumerate(sc.exempt_securities):
            if c not in book.sec_index:
                raise ScenarioError(f"exempt_securities[{i}]: unknown security {c!r}")
        for i, c in enumerate(sc.exempt_accounts):
            if c not in book.acct_index:
                raise ScenarioError(f"exempt_accounts[{i}]: unknown account {c!r}")
    return sc


def load_scenario(path: str | Path, book: Book | None = None) -> Scenario:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ScenarioError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ScenarioError(f"{path} is not valid JSON: {e}") from None
    return scenario_from_dict(doc, book)


def security_changes(book: Book, sc: Scenario) -> np.ndarray:
    """The relative price change applied to each security (most specific shock wins)."""
    n = book.n_sec
    rank = np.full(n, -1, np.int8)
    change = np.zeros(n)
    markets = np.array(book.markets, dtype=object)
    for target, c in sc.shocks:
        kind, _, value = target.partition(":")
        r = TARGET_KINDS.index(kind)
        if kind == "all":
            hit = np.ones(n, bool)
        elif kind == "market":
            hit = markets[book.sec_market] == value if len(book.markets) else np.zeros(n, bool)
        elif kind == "level":
            hit = book.level == int(value)
        elif kind == "group":
            hit = np.zeros(n, bool)
            hit[book.stock_groups.get(value, np.zeros(0, np.int64))] = True
        else:
            hit = np.zeros(n, bool)
            j = book.sec_index.get(value)
            if j is not None:
                hit[j] = True
        take = hit & (rank <= r)  # equal rank: the later shock in the file wins
        change[take] = c
        rank[take] = r
    for code in sc.exempt_securities:
        j = book.sec_index.get(code)
        if j is not None:
            change[j] = 0.0
    return change


def predefined(engine: MarginEngine | None = None) -> list[Scenario]:
    """The shipped scenarios (resources/scenarios) and, with a book, each of its ten largest
    collateral stocks (long market value held in margin accounts) −50%."""
    out = [scenario_from_dict(json.loads(p.read_text(encoding="utf-8")))
           for p in sorted(SCENARIO_DIR.glob("*.json"))]
    if engine is not None:
        out.extend(top_collateral(engine))
    return out


def top_collateral(engine: MarginEngine, n: int = 10, change: float = -0.5) -> list[Scenario]:
    from models.book import ACCT_CASH

    b = engine.book
    q = b.pos_qty
    sel = (q > 0) & (b.acct_type[b.pos_acct] != ACCT_CASH)
    value = np.bincount(b.pos_sec[sel], q[sel] * engine.pxb[b.pos_sec[sel]], b.n_sec)
    order = np.lexsort((np.array(b.sec_codes, dtype=object), -value))[:n]
    return [Scenario(f"Top collateral #{k + 1}: {b.sec_codes[j]} {change:+.0%}",
                     [(f"security:{b.sec_codes[j]}", change)]) for k, j in enumerate(order) if value[j] > 0]


@dataclass
class StressResult:
    scenario: Scenario
    accounts: np.ndarray  # indices of the accounts in the summary (exempt ones left out)
    equity: np.ndarray
    im: np.ndarray
    mm: np.ndarray
    status: np.ndarray
    call_amount: np.ndarray
    shortfall: np.ndarray
    excess: np.ndarray
    base_status: np.ndarray
    codes: list[str]

    def summary(self) -> dict[str, Any]:
        idx = self.accounts
        counts = np.bincount(self.status[idx], minlength=4)
        sf = self.shortfall[idx]
        top = idx[np.lexsort((np.array(self.codes, dtype=object)[idx], -sf))][:TOP_N] if idx.size else idx
        return {"accounts_by_status": {STATUS_NAMES[i]: int(counts[i]) for i in range(4)},
                "total_call_amount": round(float(self.call_amount[idx].sum()), 2),
                "total_shortfall": round(float(sf.sum()), 2),
                "top_shortfalls": [{"account": self.codes[i], "shortfall": round(float(self.shortfall[i]), 2)}
                                   for i in top if self.shortfall[i] > 0],
                "new_calls": int(((self.status[idx] >= 2) & (self.base_status[idx] < 2)).sum())}

    def accounts_json(self) -> list[dict[str, Any]]:
        cols = {k: np.round(getattr(self, k), 2).tolist() for k in ("equity", "im", "mm", "call_amount", "shortfall")}
        st = self.status.tolist()
        return [{"account": self.codes[a], "status": STATUS_NAMES[st[a]], **{k: cols[k][a] for k in cols}}
                for a in self.accounts.tolist()]

    def as_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.name, "summary": self.summary(), "accounts": self.accounts_json()}


def run(engine: MarginEngine, sc: Scenario) -> StressResult:
    """Every account's margin under ``sc`` (the engine is not changed)."""
    b = engine.book
    fx = b.fx.copy()
    for cur, c in sc.fx_shocks:
        if cur in b.currencies:
            fx[b.currencies.index(cur)] *= 1.0 + c
    pxb = b.price * (1.0 + security_changes(b, sc)) * fx[b.sec_currency]
    s = engine.sums_at(pxb)
    r = derive(b.cash @ fx, s[0], s[1], s[2], s[3], b.financing_limit, engine.force_call_factor)
    keep = np.ones(b.n_acct, bool)
    for code in sc.exempt_accounts:
        a = b.acct_index.get(code)
        if a is not None:
            keep[a] = False
    return StressResult(sc, np.flatnonzero(keep), r["equity"], r["im"], r["mm"], r["status"], r["call_amount"],
                        np.maximum(0.0, -r["equity"]), r["excess"], engine.status.copy(), b.acct_codes)


def sweep(engine: MarginEngine, sizes: list[float], exempt: Scenario | None = None) -> list[dict[str, float]]:
    """Total call amount and shortfall for an across-the-board fall of each size (the shock chart)."""
    out = []
    for size in sizes:
        sc = Scenario(f"all {-size:+.0%}", [("all", -abs(size))],
                      exempt_securities=exempt.exempt_securities if exempt else [],
                      exempt_accounts=exempt.exempt_accounts if exempt else [])
        res = run(engine, sc)
        idx = res.accounts
        out.append({"change": -abs(size), "total_call_amount": float(res.call_amount[idx].sum()),
                    "total_shortfall": float(res.shortfall[idx].sum()),
                    "accounts_in_call": int((res.status[idx] >= 2).sum())})
    return out
