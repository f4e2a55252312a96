"""Positions and collections (issue 8): short positions against lending inventory, recalls,
non-performing credit and the stock to collect from clients.

Everything is computed from one book loaded from the store (struct of arrays) with `np.bincount`
over all positions — no per-position Python on the hot paths:

- **Short positions**: per security, total short quantity (Σ −q over q < 0), the lending inventory,
  usage = short / inventory, short market value and the number of clients short.
- **Recall**: when the lender recalls a security, every client short in it gets a notice or a buy-in
  proposal (whole lots of the short). The recall and one item per client are stored; the desk works
  the items (pending → sent / proposed → done).
- **Non-performing credit**: an account with a loan not covered by its recognised collateral value
  (``loan > RV``, RV = Σ (1 − h) · MV over long stock positions with the FRR haircut h, suspended
  stock and options at 0 — the recognised value of RISK_METHODS §4), or an open call at least
  ``npl_days_past_deadline`` business days past its deadline. Uncovered = max(0, loan − RV).
- **Stock collections**: short stock the lending inventory does not cover (each short client's share
  of the uncovered quantity, pro rata, in whole lots, due in 2 trading days), and short calls whose
  underlying is not held in full (the missing shares, due at expiry). `refresh_collections` keeps the
  stored records in step with the book; the desk marks them collected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, insert, text

from models import schema as S
from models.book import Book
from services import audit
from services.auth import User
from services.calendar import TradingCalendar
from services.margin import STATUS_NAMES, MarginEngine
from services.options import CALL, OptionBook, load_options
from services.store import Store

SETTLEMENT_DAYS = 2  # Hong Kong T+2: short stock not borrowed must be delivered by then
DEFAULT_NPL_DAYS = 5.0
DEFAULT_NEAR_EXPIRY_DAYS = 5.0


class PositionsOpsError(ValueError):
    """A recall, collection update or other desk action that cannot be made; the message says why."""


@dataclass
class PositionsState:
    """The book and what the panels need beside it, read in one go (a task function's result)."""

    book: Book
    engine: MarginEngine
    inventory: np.ndarray  # per security: lending inventory (NaN: none recorded)
    options: OptionBook  # option series and positions beside the stock book
    calendar: TradingCalendar
    parameters: dict[str, float]
    open_calls: list[tuple[str, date]] = field(default_factory=list)  # (account code, deadline)

    def parameter(self, name: str, default: float) -> float:
        return float(self.parameters.get(name, default))


def calendar_of(conn: Connection) -> TradingCalendar:
    return TradingCalendar(_as_date(r[0]) for r in conn.execute(text("select day from holidays where market = 'HK'")))


def load_state(store: Store) -> PositionsState:
    book = store.load_book()
    with store.begin() as conn:
        inv = np.full(book.n_sec, np.nan)
        rows = conn.execute(text("select security_id, qty from lending_inventory")).all()
        if rows and book.sec_ids is not None:
            idx = np.searchsorted(book.sec_ids, np.array([r[0] for r in rows], np.int64))
            ok = (idx < book.n_sec)
            ok[ok] = book.sec_ids[idx[ok]] == np.array([r[0] for r in rows], np.int64)[ok]
            inv[idx[ok]] = np.array([float(r[1]) for r in rows])[ok]
        opts = load_options(conn, book)
        cal = calendar_of(conn)
        params = {r[0]: float(r[1]) for r in conn.execute(text("select name, value from company_parameters"))}
        calls = [(r[0], _as_date(r[1])) for r in conn.execute(text(
            "select a.code, c.deadline from margin_calls c join accounts a on a.id = c.account_id "
            "where c.state = 'open'"))]
    return PositionsState(book, MarginEngine(book), inv, opts, cal, params, calls)


def _as_date(v: Any) -> date:
    return v if isinstance(v, date) and not isinstance(v, datetime) else date.fromisoformat(str(v)[:10])


# ---------------------------------------------------------------------- short positions
def short_overview(state: PositionsState) -> list[dict[str, Any]]:
    """One row per stock held short: short qty, inventory, usage %, uncovered, MV and clients."""
    b = state.book
    short = b.pos_qty < 0
    sec = b.pos_sec[short]
    qty = -b.pos_qty[short]
    total = np.bincount(sec, qty, minlength=b.n_sec)
    accounts = np.bincount(sec, minlength=b.n_sec)
    _, client_idx = np.unique(np.array(b.client_codes, dtype=object), return_inverse=True)
    pairs = np.unique(sec.astype(np.int64) * (len(b.client_codes) + 1) + client_idx[b.pos_acct[short]])
    clients = np.bincount(pairs // (len(b.client_codes) + 1), minlength=b.n_sec)
    inv = state.inventory
    with np.errstate(divide="ignore", invalid="ignore"):
        usage = np.where(inv > 0, total / inv * 100.0, np.nan)
    uncovered = np.maximum(0.0, total - np.nan_to_num(inv, nan=0.0))
    mv = total * state.engine.pxb
    out = []
    for s in np.flatnonzero(total > 0).tolist():
        out.append({"id": s, "code": b.sec_codes[s], "name": b.sec_names[s], "short_qty": float(total[s]),
                    "inventory": None if np.isnan(inv[s]) else float(inv[s]),
                    "usage_pct": None if np.isnan(usage[s]) else float(usage[s]),
                    "uncovered": float(uncovered[s]), "short_mv": float(mv[s]), "accounts": int(accounts[s]),
                    "clients": int(clients[s]), "price": float(b.price[s]), "lot_size": int(b.lot_size[s])})
    return out


def short_clients(state: PositionsState, code: str) -> list[dict[str, Any]]:
    """The accounts short in one security, largest first, with their margin status and call amount."""
    b, e = state.book, state.engine
    s = b.sec_index.get(code)
    if s is None:
        raise PositionsOpsError(f"unknown security {code!r}")
    rows = np.flatnonzero((b.pos_sec == s) & (b.pos_qty < 0))
    total = float(-b.pos_qty[rows].sum())
    out = []
    for r in rows[np.argsort(b.pos_qty[rows], kind="stable")].tolist():
        a = int(b.pos_acct[r])
        q = float(-b.pos_qty[r])
        out.append({"id": a, "account": b.acct_codes[a], "client": b.client_codes[a], "name": b.client_names[a],
                    "short_qty": q, "share_pct": q / total * 100.0 if total else 0.0,
                    "short_mv": q * float(e.pxb[s]), "status": STATUS_NAMES[int(e.status[a])],
                    "equity": float(e.equity[a]), "call_amount": float(e.call_amount[a])})
    return out


def recall(store: Store, user: User, code: str, action: str, due_date: date, reason: str,
           accounts: list[str] | None = None) -> int:
    """Record a recall of ``code`` and one item per short client (or the given accounts): a notice to
    cover, or a buy-in proposal of the whole short in lots. Items stay pending for the desk to work
    (or for the notices / liquidation services when those take them). Returns the recall id."""
    if action not in ("notice", "liquidation"):
        raise PositionsOpsError(f"a recall is answered by a notice or a liquidation, not {action!r}")
    if not reason or not reason.strip():
        raise PositionsOpsError("a recall needs a reason")
    now = datetime.now(UTC)
    if due_date < now.date():
        raise PositionsOpsError(f"the due date {due_date} is in the past")
    with store.begin() as conn:
        sec = conn.execute(text("select s.id, s.lot_size, coalesce(p.price, 0) from securities s left join prices p "
                                "on p.security_id = s.id where s.code = :c"), {"c": code}).first()
        if sec is None:
            raise PositionsOpsError(f"unknown security {code!r}")
        shorts = conn.execute(text("select a.code, -p.qty from positions p join accounts a on a.id = p.account_id "
                                   "where p.security_id = :s and p.qty < 0 order by p.qty, a.code"),
                              {"s": sec[0]}).all()
        if accounts is not None:
            wanted = set(accounts)
            shorts = [r for r in shorts if r[0] in wanted]
            missing = wanted - {r[0] for r in shorts}
            if missing:
                raise PositionsOpsError(f"not short in {code}: {', '.join(sorted(missing))}")
        if not shorts:
            raise PositionsOpsError(f"no client is short in {code}")
        lot = max(1, int(sec[1]))
        qty = np.array([float(r[1]) for r in shorts])
        buy = np.ceil(qty / lot) * lot
        rid = int(conn.execute(insert(S.short_recalls).values(
            code=code, ts=now, by=user.login, action=action, due_date=due_date, reason=reason.strip()
        ).returning(S.short_recalls.c.id)).scalar_one())
        conn.execute(insert(S.short_recall_items), [
            {"recall_id": rid, "account": r[0], "short_qty": float(q), "buy_qty": float(bq), "price": float(sec[2]),
             "status": "pending"} for r, q, bq in zip(shorts, qty.tolist(), buy.tolist(), strict=True)])
        audit.append(conn, store.kind, user.login, "recall", "short_recalls", str(rid), "", json.dumps(
            {"code": code, "action": action, "due_date": str(due_date), "accounts": len(shorts),
             "short_qty": float(qty.sum())}))
    return rid


RECALL_ITEM_STATUSES = ("pending", "sent", "proposed", "done", "cancelled")


def set_recall_item(store: Store, user: User, item_id: int, status: str, ref: str = "") -> None:
    """Move one recall item on (the notice sent, the buy-in proposed, done); audited."""
    if status not in RECALL_ITEM_STATUSES:
        raise PositionsOpsError(f"unknown recall item status {status!r}")
    with store.begin() as conn:
        cur = conn.execute(text("select status from short_recall_items where id = :i"), {"i": item_id}).scalar()
        if cur is None:
            raise PositionsOpsError(f"recall item {item_id} does not exist")
        conn.execute(text("update short_recall_items set status = :s, ref = :r, updated_by = :u, updated_at = :t "
                          "where id = :i"), {"s": status, "r": ref, "u": user.login, "t": datetime.now(UTC),
                                             "i": item_id})
        audit.append(conn, store.kind, user.login, "recall_item", "short_recall_items", str(item_id), cur, status)


def recall_items(store: Store, code: str | None = None) -> list[dict[str, Any]]:
    sql = ("select i.id, i.recall_id, r.code, r.action, r.due_date, r.ts, r.by, r.reason, i.account, i.short_qty, "
           "i.buy_qty, i.price, i.status, i.ref from short_recall_items i join short_recalls r on r.id = i.recall_id")
    with store.begin() as conn:
        rows = conn.execute(text(sql + (" where r.code = :c" if code else "") + " order by i.id desc"),
                            {"c": code} if code else {}).all()
    return [dict(r._mapping) for r in rows]


# ---------------------------------------------------------------------- non-performing credit
def recognised_value(state: PositionsState) -> np.ndarray:
    """Per account: Σ (1 − h) · MV over long stock positions (suspended stock: 0; options are not in
    the stock book and count 0)."""
    b = state.book
    r = np.where(b.suspended, 0.0, 1.0 - b.haircut)
    long = b.pos_qty > 0
    mv = b.pos_qty[long] * state.engine.pxb[b.pos_sec[long]]
    return np.bincount(b.pos_acct[long], r[b.pos_sec[long]] * mv, minlength=b.n_acct)


def non_performing(state: PositionsState, today: date | None = None) -> list[dict[str, Any]]:
    """Accounts whose loan exceeds the recognised collateral value, or with an open call at least
    ``npl_days_past_deadline`` business days past its deadline; worst uncovered amount first."""
    today = today or date.today()
    b, e = state.book, state.engine
    n_days = int(state.parameter("npl_days_past_deadline", DEFAULT_NPL_DAYS))
    loan = e.loan
    rv = recognised_value(state)
    uncovered = np.maximum(0.0, loan - rv)
    days_past = np.zeros(b.n_acct, np.int64)
    deadline = np.full(b.n_acct, np.datetime64("NaT"), "datetime64[D]")
    if state.open_calls:
        idx = np.array([b.acct_index.get(c, -1) for c, _ in state.open_calls], np.int64)
        dl = np.array([str(d) for _, d in state.open_calls], "datetime64[D]")
        ok = idx >= 0
        deadline[idx[ok]] = dl[ok]
        past = state.calendar.business_days_between(dl[ok], np.datetime64(today, "D"))
        days_past[idx[ok]] = np.maximum(0, past)
    npl = ((loan > 0) & (loan > rv)) | (days_past >= n_days) & ~np.isnat(deadline)
    out = []
    for a in np.flatnonzero(npl)[np.argsort(-uncovered[npl], kind="stable")].tolist():
        reasons = []
        if loan[a] > rv[a]:
            reasons.append("loan above recognised collateral")
        if not np.isnat(deadline[a]) and days_past[a] >= n_days:
            reasons.append(f"call {int(days_past[a])} business days past deadline")
        out.append({"id": a, "account": b.acct_codes[a], "client": b.client_codes[a], "name": b.client_names[a],
                    "loan": float(loan[a]), "recognised_value": float(rv[a]), "uncovered": float(uncovered[a]),
                    "coverage_pct": float(rv[a] / loan[a] * 100.0) if loan[a] > 0 else None,
                    "deadline": None if np.isnat(deadline[a]) else str(deadline[a]),
                    "days_past_deadline": int(days_past[a]), "status": STATUS_NAMES[int(e.status[a])],
                    "equity": float(e.equity[a]), "reason": "; ".join(reasons)})
    return out


# ---------------------------------------------------------------------- stock collections
def collections_needed(state: PositionsState, today: date | None = None) -> list[dict[str, Any]]:
    """What must be collected now: (kind, account, code, source, qty, due_date) rows."""
    today = today or date.today()
    b, ob = state.book, state.options
    out: list[dict[str, Any]] = []
    # short stock the lending inventory does not cover, shared pro rata among the short clients
    short = np.flatnonzero(b.pos_qty < 0)
    if short.size:
        sec = b.pos_sec[short]
        qty = -b.pos_qty[short]
        total = np.bincount(sec, qty, minlength=b.n_sec)
        unc = np.maximum(0.0, total - np.nan_to_num(state.inventory, nan=0.0))
        lot = b.lot_size[sec].astype(np.float64)
        share = np.where(total[sec] > 0, unc[sec] * qty / np.where(total[sec] > 0, total[sec], 1.0), 0.0)
        need = np.minimum(qty, np.ceil(share / lot - 1e-9) * lot)
        due = state.calendar.add_trading_days(today, SETTLEMENT_DAYS)
        for i in np.flatnonzero(need > 0).tolist():
            out.append({"kind": "short_stock", "account": b.acct_codes[int(b.pos_acct[short[i]])],
                        "code": b.sec_codes[int(sec[i])], "source": "", "qty": float(need[i]), "due_date": due})
    # short calls: the underlying shares not held
    calls = np.flatnonzero((ob.pos_contracts < 0) & (ob.kind[ob.pos_series] == CALL))
    if calls.size:
        ser = ob.pos_series[calls]
        acct = ob.pos_acct[calls]
        und = ob.underlying[ser]
        required = -ob.pos_units[calls]
        row = state.engine.find_positions(acct, und)
        held = np.where(row >= 0, np.maximum(0.0, b.pos_qty[np.maximum(row, 0)]), 0.0)
        # several short calls on one underlying share the holding: earliest expiry covered first
        key = acct * max(b.n_sec, 1) + und
        order = np.lexsort((ob.expiry[ser], key))
        ks, rq = key[order], required[order]
        starts = np.r_[True, ks[1:] != ks[:-1]]
        run = np.cumsum(rq)
        base = np.maximum.accumulate(np.where(starts, run - rq, 0.0))
        cum = np.zeros(calls.shape[0])
        cum[order] = run - base
        prev = cum - required
        # the part of this call's run [prev, cum] of shares beyond what the account holds
        need = np.maximum(0.0, cum - held) - np.maximum(0.0, prev - held)
        for i in np.flatnonzero(need > 0).tolist():
            k = int(ser[i])
            exp = ob.expiry[k].astype(date)
            out.append({"kind": "covered_option", "account": b.acct_codes[int(acct[i])],
                        "code": b.sec_codes[int(und[i])], "source": ob.codes[k], "qty": float(need[i]),
                        "due_date": max(exp, today)})
    return out


def refresh_collections(store: Store, user: User, state: PositionsState | None = None,
                        today: date | None = None) -> dict[str, int]:
    """Bring the stored open collections in step with the book: new ones opened, changed quantities
    updated, those no longer needed resolved. One transaction, one audit record."""
    state = state or load_state(store)
    today = today or date.today()
    need = {(r["kind"], r["account"], r["code"], r["source"]): r for r in collections_needed(state, today)}
    now = datetime.now(UTC)
    counts = {"opened": 0, "updated": 0, "resolved": 0}
    with store.begin() as conn:
        open_rows = {(r.kind, r.account, r.code, r.source): r for r in conn.execute(text(
            "select id, kind, account, code, source, qty, due_date from stock_collections where status = 'open'"))}
        for k, r in open_rows.items():
            want = need.get(k)
            if want is None:
                conn.execute(text("update stock_collections set status = 'resolved', updated_at = :t, updated_by = :u, "
                                  "remark = 'no longer needed', version = version + 1 where id = :i"),
                             {"t": now, "u": user.login, "i": r.id})
                counts["resolved"] += 1
            elif float(r.qty) != want["qty"] or _as_date(r.due_date) != want["due_date"]:
                conn.execute(text("update stock_collections set qty = :q, due_date = :d, updated_at = :t, "
                                  "updated_by = :u, version = version + 1 where id = :i"),
                             {"q": want["qty"], "d": want["due_date"], "t": now, "u": user.login, "i": r.id})
                counts["updated"] += 1
        new = [dict(v, status="open", created_at=now, updated_at=now, updated_by=user.login)
               for k, v in need.items() if k not in open_rows]
        if new:
            conn.execute(insert(S.stock_collections), new)
        counts["opened"] = len(new)
        if any(counts.values()):
            audit.append(conn, store.kind, user.login, "refresh", "stock_collections", "", "", json.dumps(counts))
    return counts


COLLECTION_STATUSES = ("open", "collected", "resolved", "cancelled")


def set_collection_status(store: Store, user: User, collection_id: int, status: str, remark: str = "") -> None:
    if status not in COLLECTION_STATUSES:
        raise PositionsOpsError(f"unknown collection status {status!r}")
    with store.begin() as conn:
        cur = conn.execute(text("select status from stock_collections where id = :i"), {"i": collection_id}).scalar()
        if cur is None:
            raise PositionsOpsError(f"collection {collection_id} does not exist")
        conn.execute(text("update stock_collections set status = :s, remark = :r, updated_at = :t, updated_by = :u, "
                          "version = version + 1 where id = :i"),
                     {"s": status, "r": remark, "t": datetime.now(UTC), "u": user.login, "i": collection_id})
        audit.append(conn, store.kind, user.login, "collection", "stock_collections", str(collection_id), cur, status)


def collections(store: Store, today: date | None = None) -> list[dict[str, Any]]:
    today = today or date.today()
    with store.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            "select id, kind, account, code, source, qty, due_date, status, created_at, updated_at, updated_by, "
            "remark from stock_collections order by case when status = 'open' then 0 else 1 end, due_date, id"))]
    for r in rows:
        r["days_to_due"] = (_as_date(r["due_date"]) - today).days
        r["due_date"] = str(r["due_date"])[:10]
    return rows


# ---------------------------------------------------------------------- the demo
def seed_positions_ops(store: Store, seed: int = 7) -> None:
    """Demo data for the positions-and-collections and currency-borrowing panels: option series and
    positions, lending inventory for the shorted stocks (a few under-covered), open collections,
    borrowing rules (approved on SQLite), a recall, a manual exchange and reminder history."""
    from services import borrowing, options, short_sell

    options.seed_options(store, seed=seed)
    state = load_state(store)
    b = state.book
    rng = np.random.default_rng(seed)
    short = np.bincount(b.pos_sec[b.pos_qty < 0], -b.pos_qty[b.pos_qty < 0], minlength=b.n_sec)
    shorted = np.flatnonzero(short > 0).tolist()
    inv = {}
    for k, s in enumerate(shorted):
        cover = (0.6, 0.85, 1.5, 2.5, 4.0)[k % 5] if np.isnan(state.inventory[s]) else None
        if cover is not None:
            inv[b.sec_codes[s]] = float(np.round(short[s] * cover * (1 + 0.1 * rng.random()) / b.lot_size[s])
                                        * b.lot_size[s])
    if inv:
        short_sell.update_inventory(store, inv)
    system = User("system", "Demo", "risk_officer")
    refresh_collections(store, system)
    borrowing.seed_borrowing(store, seed=seed)
    if shorted:  # the lender recalls the most over-used stock
        state = load_state(store)
        over = [(r["usage_pct"] or 0.0, r["code"]) for r in short_overview(state)]
        code = max(over)[1]
        with store.begin() as conn:
            done = conn.execute(text("select 1 from short_recalls limit 1")).first()
        if not done:
            recall(store, User("rita", "Rita", "risk_officer"), code, "notice",
                   state.calendar.add_trading_days(date.today(), 3), "Lender recalled the stock (demo)")


# ---------------------------------------------------------------------- one read for the dock
@dataclass
class PositionsSnapshot:
    shorts: list[dict[str, Any]]
    short_clients: dict[str, list[dict[str, Any]]]
    recall_items: list[dict[str, Any]]
    npl: list[dict[str, Any]]
    collections: list[dict[str, Any]]
    option_positions: list[dict[str, Any]]
    near_expiry: list[dict[str, Any]]
    exercise_overview: list[dict[str, Any]]
    exercise_records: list[dict[str, Any]]
    npl_days: int
    near_expiry_days: int
    today: date


def snapshot(store: Store, today: date | None = None) -> PositionsSnapshot:
    """Everything the positions-and-collections dock shows, from one book read (a task function)."""
    from services import options

    today = today or date.today()
    state = load_state(store)
    shorts = short_overview(state)
    clients = {r["code"]: short_clients(state, r["code"]) for r in shorts}
    positions = options.option_positions(state.book, state.options, today)
    records = options.exercise_records(store)
    days = int(state.parameter("option_near_expiry_days", DEFAULT_NEAR_EXPIRY_DAYS))
    for i, r in enumerate(records):
        r.setdefault("id", i + 1)
    return PositionsSnapshot(
        shorts, clients, recall_items(store), non_performing(state, today), collections(store, today), positions,
        options.near_expiry(positions, days), options.exercise_overview(positions, records), records,
        int(state.parameter("npl_days_past_deadline", DEFAULT_NPL_DAYS)), days, today)
