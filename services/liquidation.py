"""What to sell to restore IM (RISK_METHODS §1–2): proposals, the effect of edited orders, many accounts at once.

Selling long MV x of a holding with IM ratio r leaves equity unchanged (cash rises by x, MV falls by x)
and lowers IM by r·x, so the IM shortfall `IM − E` shrinks by r·x. The proposal sells the holdings
with the largest FRR haircut first (the collateral the firm trusts least; ties: larger IM ratio, then
larger market value), each whole holding until the last one, which is cut to the fewest whole lots that
restore IM. A quantity is valid when it is whole lots, or exactly what is left of the holding (an odd
lot goes with the rest). Suspended securities, holdings with no price and holdings whose IM ratio is 0
release nothing and are never proposed.

Outstanding liquidation orders (confirmed or sent today: they are day orders) reserve their quantity
and their IM release, so a second proposal never sells the same shares twice. IM is restored when the
shortfall left is below half a cent (results are reported to 2 decimals).

Everything here is pure numpy on copies of the engine's arrays: `LiquidationAccount` is taken under
the monitor's lock, then proposals and edits are evaluated without it. `propose_many` does the same
greedy for many accounts in one vectorised pass (batch and automatic liquidation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.margin import STATUS_NAMES, MarginEngine

TOLERANCE = 0.005  # HKD: a shortfall below half a cent rounds to 0.00 — IM is restored
ORDER_TYPES = ("market", "limit")


class LiquidationError(ValueError):
    """A liquidation cannot be proposed or stored as asked; the message is for the user."""


@dataclass
class SaleProposal:
    code: str
    qty: float  # shares to sell (whole lots, or the rest of the holding)
    price: float  # security currency
    proceeds: float  # base currency
    im_release: float  # IM released by the sale, base currency


@dataclass(frozen=True)
class OrderLine:
    """One sell order as the user sees it in the proposal table."""

    code: str
    qty: float
    order_type: str = "market"
    limit_price: float | None = None


@dataclass
class LiquidationAccount:
    """One account's long holdings and margin figures, copied from the engine (no lock needed after)."""

    index: int  # engine account index
    account: str
    client_name: str
    status: str
    equity: float
    im: float
    mm: float
    call_amount: float
    codes: list[str]
    holding: np.ndarray  # shares held (long)
    reserved: np.ndarray  # shares already in outstanding liquidation orders
    pxb: np.ndarray  # price in base currency
    price: np.ndarray  # price in the security's currency
    currency: list[str]
    lot: np.ndarray
    haircut: np.ndarray
    im_ratio: np.ndarray
    suspended: np.ndarray
    reserved_release: float = 0.0  # IM the outstanding orders release at today's prices
    row: dict[str, int] = field(default_factory=dict)  # code → position row

    @property
    def available(self) -> np.ndarray:
        return np.maximum(self.holding - self.reserved, 0.0)

    @property
    def deficit(self) -> float:
        """IM shortfall before any order: IM − E (≤ 0: the account meets IM)."""
        return self.im - self.equity

    @property
    def open_deficit(self) -> float:
        """The shortfall the outstanding orders leave: what a new proposal has to cover."""
        return self.deficit - self.reserved_release


@dataclass
class Effect:
    """What the (edited) orders do to the account, and what is wrong with them."""

    deficit: float  # IM − E before the new orders, after the outstanding ones
    released: float  # IM the new orders release
    proceeds: float  # HKD at current prices
    im_after: float  # IM after the outstanding and the new orders
    equity: float
    line_release: np.ndarray
    problems: list[str]

    @property
    def shortfall_after(self) -> float:
        return max(0.0, self.im_after - self.equity)

    @property
    def restores(self) -> bool:
        return self.im_after - self.equity < TOLERANCE

    @property
    def valid(self) -> bool:
        return not self.problems

    def message(self) -> str:
        """The first problem, or the warning that IM is not restored, or ''."""
        if self.problems:
            return self.problems[0]
        if not self.restores:
            return (f"These orders no longer restore IM: a shortfall of {self.shortfall_after:,.2f} HKD remains "
                    "after them.")
        return ""


# ---------------------------------------------------------------------- taking an account
def account_for_liquidation(engine: MarginEngine, a: int, reserved: Mapping[str, float] | None = None
                            ) -> LiquidationAccount:
    """Copy account ``a``'s long holdings and figures (call under the monitor's lock).

    ``reserved``: code → shares in outstanding liquidation orders (more than held is capped)."""
    b = engine.book
    p = engine.positions_of(a)
    keep = p["qty"] > 0
    sec = p["sec"][keep]
    codes = [b.sec_codes[s] for s in sec.tolist()]
    holding = p["qty"][keep].astype(float)
    res = np.array([float((reserved or {}).get(c, 0.0)) for c in codes], float)
    res = np.minimum(res, holding)
    r = p["im_ratio"][keep].astype(float)
    pxb = engine.pxb[sec].astype(float)
    acct = LiquidationAccount(
        index=int(a), account=b.acct_codes[a], client_name=b.client_names[a],
        status=STATUS_NAMES[int(engine.status[a])], equity=float(engine.equity[a]), im=float(engine.im[a]),
        mm=float(engine.mm[a]), call_amount=float(engine.call_amount[a]), codes=codes, holding=holding,
        reserved=res, pxb=pxb, price=b.price[sec].astype(float),
        currency=[b.currencies[int(c)] for c in b.sec_currency[sec].tolist()],
        lot=np.maximum(b.lot_size[sec], 1).astype(float), haircut=b.haircut[sec].astype(float), im_ratio=r,
        suspended=b.suspended[sec].astype(bool), reserved_release=float((res * pxb * r).sum()),
        row={c: i for i, c in enumerate(codes)})
    return acct


# ---------------------------------------------------------------------- the greedy, vectorised
def _greedy(owner: np.ndarray, need: np.ndarray, avail: np.ndarray, unit: np.ndarray, lot: np.ndarray,
            haircut: np.ndarray, ratio: np.ndarray, mv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows in selling order, quantity per row) for every group at once.

    owner: group of each candidate row; need: shortfall per group; unit: IM released per share (HKD).
    Within a group rows are sold whole, largest haircut first, until the rest of the shortfall fits in
    one holding, which is cut to the fewest whole lots covering it (or sold whole if that is less)."""
    if owner.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    order = np.lexsort((-mv, -ratio, -haircut, owner))
    g = owner[order]
    full = (avail * unit)[order]
    cum = np.cumsum(full)
    first = np.r_[True, g[1:] != g[:-1]]
    start_cum = np.maximum.accumulate(np.where(first, cum - full, -np.inf))  # cum before each group
    before = cum - full - start_cum  # released by the earlier rows of the same group
    left = need[g] - before
    take = left >= TOLERANCE
    rows = order[take]
    left = left[take]
    u, lt, av = unit[rows], lot[rows], avail[rows]
    lots = np.ceil(left / (u * lt))
    fewer = (lots - 1) * lt * u >= left  # float division may round a whole number of lots up
    lots = np.where(fewer & (lots > 1), lots - 1, lots)
    qty = np.minimum(av, lots * lt)
    return rows, qty


def _candidates(avail: np.ndarray, pxb: np.ndarray, ratio: np.ndarray, suspended: np.ndarray) -> np.ndarray:
    return (avail > 0) & (ratio > 0) & (pxb > 0) & ~suspended


def propose(acct: LiquidationAccount) -> list[OrderLine]:
    """The market sell orders that restore IM (nothing when the account already meets it)."""
    need = acct.open_deficit
    if need < TOLERANCE:
        return []
    avail = acct.available
    idx = np.flatnonzero(_candidates(avail, acct.pxb, acct.im_ratio, acct.suspended))
    rows, qty = _greedy(np.zeros(idx.size, np.int64), np.array([need]), avail[idx],
                        (acct.pxb * acct.im_ratio)[idx], acct.lot[idx], acct.haircut[idx], acct.im_ratio[idx],
                        (avail * acct.pxb)[idx])
    return [OrderLine(acct.codes[int(idx[r])], float(q)) for r, q in zip(rows.tolist(), qty.tolist(), strict=True)]


def restore_im_proposal(engine: MarginEngine, a: int) -> tuple[float, list[SaleProposal]]:
    """(IM shortfall, proposals in selling order) for the drill-down; empty when the account meets IM."""
    acct = account_for_liquidation(engine, a)
    deficit = acct.deficit
    if deficit <= 0:
        return 0.0, []
    out = []
    for line in propose(acct):
        i = acct.row[line.code]
        proceeds = line.qty * float(acct.pxb[i])
        out.append(SaleProposal(line.code, line.qty, float(acct.price[i]), proceeds,
                                proceeds * float(acct.im_ratio[i])))
    return deficit, out


# ---------------------------------------------------------------------- edited orders
def _qty_text(q: float) -> str:
    return f"{q:,.0f}" if float(q).is_integer() else f"{q:,.4f}".rstrip("0").rstrip(".")


def lot_problem(qty: float, lot: float, available: float) -> str:
    """'' when ``qty`` is whole lots or exactly the rest of the holding; else what to sell instead."""
    if qty == available or lot <= 1 and float(qty).is_integer():
        return ""
    lots = qty / lot
    if abs(lots - round(lots)) < 1e-9:
        return ""
    lo, hi = np.floor(lots) * lot, np.ceil(lots) * lot
    options = [_qty_text(x) for x in (lo, hi) if 0 < x < available]
    alt = " or ".join(options)
    tail = f"sell {alt}" + (" or " if alt else "sell ") + f"the whole {_qty_text(available)}"
    return f"{_qty_text(qty)} is not a whole number of lots of {_qty_text(lot)} ({tail})"


def evaluate(acct: LiquidationAccount, lines: Sequence[OrderLine]) -> Effect:
    """The effect of ``lines`` on the account, with a message naming each bad line ("line 2 (700.HK): …")."""
    problems: list[str] = []
    release = np.zeros(len(lines))
    proceeds = 0.0
    seen: dict[str, int] = {}
    avail = acct.available
    for n, line in enumerate(lines, start=1):
        name = f"line {n} ({line.code or 'no code'})"
        i = acct.row.get(line.code)
        if i is None:
            problems.append(f"{name}: the account holds no {line.code or 'security'} to sell")
            continue
        if line.code in seen:
            problems.append(f"{name}: {line.code} is already on line {seen[line.code]}; one line per security")
            continue
        seen[line.code] = n
        q = float(line.qty)
        if not np.isfinite(q) or q <= 0:
            problems.append(f"{name}: the quantity must be a number more than 0")
            continue
        if acct.suspended[i]:
            problems.append(f"{name}: {line.code} is suspended and cannot be sold")
            continue
        if q > avail[i] + 1e-9:
            held = f"holds {_qty_text(acct.holding[i])}"
            if acct.reserved[i] > 0:
                held += f", {_qty_text(acct.reserved[i])} already in outstanding orders"
            problems.append(f"{name}: sells {_qty_text(q)} but the account {held}")
            continue
        lp = lot_problem(q, float(acct.lot[i]), float(avail[i]))
        if lp:
            problems.append(f"{name}: {lp}")
            continue
        if line.order_type not in ORDER_TYPES:
            problems.append(f"{name}: order type must be market or limit")
            continue
        if line.order_type == "limit" and (line.limit_price is None or not line.limit_price > 0):
            problems.append(f"{name}: a limit order needs a limit price above 0")
            continue
        release[n - 1] = q * acct.pxb[i] * acct.im_ratio[i]
        proceeds += q * float(acct.pxb[i])
    released = float(release.sum())
    return Effect(deficit=acct.open_deficit, released=released, proceeds=proceeds,
                  im_after=acct.im - acct.reserved_release - released, equity=acct.equity, line_release=release,
                  problems=problems)


# ---------------------------------------------------------------------- many accounts
def _segments(engine: MarginEngine, accounts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position rows, owning slot) of ``accounts`` in the engine's account-sorted arrays."""
    starts = engine.acct_start[accounts]
    lens = engine.acct_start[accounts + 1] - starts
    total = int(lens.sum())
    offsets = np.repeat(np.cumsum(lens) - lens, lens)
    rows = np.repeat(starts, lens) + (np.arange(total) - offsets)
    return rows.astype(np.int64), np.repeat(np.arange(accounts.shape[0]), lens)


@dataclass(frozen=True)
class PlannedOrder:
    """A proposed sell order with what it is worth (as stored with the order)."""

    code: str
    qty: float
    ref_price: float  # security currency
    currency: str
    lot: int
    im_release: float  # HKD at ref_price


def planned(acct: LiquidationAccount, lines: Sequence[OrderLine]) -> list[PlannedOrder]:
    """The lines of a valid proposal with their prices and IM release (call after `evaluate`)."""
    out = []
    for line in lines:
        i = acct.row[line.code]
        out.append(PlannedOrder(line.code, float(line.qty), float(acct.price[i]), acct.currency[i],
                                int(acct.lot[i]), float(line.qty * acct.pxb[i] * acct.im_ratio[i])))
    return out


def propose_many(engine: MarginEngine, accounts: Iterable[int],
                 reserved: Mapping[tuple[int, int], float] | None = None
                 ) -> dict[int, tuple[list[PlannedOrder], float]]:
    """For each account index: (orders restoring IM, shortfall left after them) — one numpy pass.

    ``reserved``: (account index, security index) → shares in outstanding orders. Call under the
    monitor's lock (it reads the engine's arrays)."""
    acc = np.unique(np.fromiter(accounts, np.int64))
    if acc.size == 0:
        return {}
    b = engine.book
    rows, slot = _segments(engine, acc)
    sec = b.pos_sec[rows]
    qty = b.pos_qty[rows].astype(float)
    ratio = engine.im_ratio[rows]
    pxb = engine.pxb[sec]
    res = np.zeros(rows.shape[0])
    if reserved:
        key = {(int(a), int(s)): q for (a, s), q in reserved.items()}
        res = np.array([key.get((int(a), int(s)), 0.0) for a, s in zip(acc[slot].tolist(), sec.tolist(),
                                                                           strict=True)], float)
    longs = qty > 0
    res = np.where(longs, np.minimum(res, np.maximum(qty, 0)), 0.0)
    avail = np.where(longs, qty - res, 0.0)
    reserved_release = np.bincount(slot, weights=res * pxb * ratio, minlength=acc.size)
    need = engine.im[acc] - engine.equity[acc] - reserved_release
    lot = np.maximum(b.lot_size[sec], 1).astype(float)
    cand = np.flatnonzero(_candidates(avail, pxb, ratio, b.suspended[sec]))
    sel, q = _greedy(slot[cand], need, avail[cand], (pxb * ratio)[cand], lot[cand], b.haircut[sec][cand],
                     ratio[cand], (avail * pxb)[cand])
    rows_sel = cand[sel]
    rel = q * pxb[rows_sel] * ratio[rows_sel]
    released = np.bincount(slot[rows_sel], weights=rel, minlength=acc.size)
    short = np.maximum(need - released, 0.0)
    out: dict[int, tuple[list[PlannedOrder], float]] = {int(a): ([], float(s)) for a, s in zip(
        acc.tolist(), np.where(short < TOLERANCE, 0.0, short).tolist(), strict=True)}
    cur = b.sec_currency[sec]
    for r, qq, rr in zip(rows_sel.tolist(), q.tolist(), rel.tolist(), strict=True):
        s = int(sec[r])
        out[int(acc[slot[r]])][0].append(PlannedOrder(b.sec_codes[s], float(qq), float(b.price[s]),
                                                      b.currencies[int(cur[r])], int(lot[r]), float(rr)))
    return out
