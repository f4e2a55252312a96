"""Options (issue 8): option positions, near-expiry holdings, the exercise overview and exercises.

An option series is a security (it has a price — the premium per share — and positions) whose terms
live in `option_contracts`: underlying, call or put, strike, expiry and contract size. A position's
quantity is in shares under the contracts (so the margin engine's MV = |qty| × premium is right and the
series' lot size is its contract size); contracts = qty / contract size, short < 0.

Exercise at the underlying price S against the strike K: a call is in the money when S > K, a put when
S < K (at the money is out). In the money, every position of the series is settled — a long one is
exercised, a short one assigned — with one rule for both sides: a call moves ``units`` shares of the
underlying into the account and ``K × units`` cash out of it, a put the opposite (``units`` is signed,
so a short call delivers shares and receives cash). Out of the money the position lapses with no stock
or cash. Either way the option position is closed, and positions, cash and the exercise records change
in one transaction with an audit record.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, insert, text

from models import schema as S
from models.book import Book
from services import audit
from services.auth import User
from services.store import Store

CALL, PUT = 1, 2
TYPE_NAMES = {CALL: "call", PUT: "put"}


class OptionError(ValueError):
    """An exercise or option definition the desk cannot make; the message says why."""


@dataclass
class OptionTerms:
    """Per security index of a book: zero / NaN where the security is not an option."""

    kind: np.ndarray  # int8: 0 not an option, 1 call, 2 put
    underlying: np.ndarray  # int64 security index of the underlying (-1 when not an option)
    strike: np.ndarray  # float64
    expiry: np.ndarray  # datetime64[D] (NaT when not an option)
    contract_size: np.ndarray  # float64

    @property
    def is_option(self) -> np.ndarray:
        return self.kind > 0


def load_terms(conn: Connection, book: Book) -> OptionTerms:
    n = book.n_sec
    out = OptionTerms(np.zeros(n, np.int8), np.full(n, -1, np.int64), np.full(n, np.nan),
                      np.full(n, np.datetime64("NaT"), "datetime64[D]"), np.full(n, np.nan))
    rows = conn.execute(text("select security_id, underlying_id, option_type, strike, expiry, contract_size "
                             "from option_contracts")).all()
    if not rows or book.sec_ids is None:
        return out
    ids = book.sec_ids
    sec = np.searchsorted(ids, np.array([r[0] for r in rows], np.int64))
    und = np.searchsorted(ids, np.array([r[1] for r in rows], np.int64))
    out.kind[sec] = [CALL if r[2] == "call" else PUT for r in rows]
    out.underlying[sec] = und
    out.strike[sec] = [float(r[3]) for r in rows]
    out.expiry[sec] = np.array([str(r[4])[:10] for r in rows], "datetime64[D]")
    out.contract_size[sec] = [float(r[5]) for r in rows]
    return out


def intrinsic(kind: np.ndarray, spot: np.ndarray, strike: np.ndarray) -> np.ndarray:
    """Per-share intrinsic value: (S − K)⁺ for calls, (K − S)⁺ for puts."""
    return np.where(kind == CALL, np.maximum(0.0, spot - strike), np.maximum(0.0, strike - spot))


def in_the_money(kind: np.ndarray, spot: np.ndarray, strike: np.ndarray) -> np.ndarray:
    """Strictly in the money (at the money is not: exercising it gains nothing)."""
    return np.where(kind == CALL, spot > strike, spot < strike)


def settlement(kind: np.ndarray, units: np.ndarray, strike: np.ndarray, itm: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """(underlying shares into the account, cash into the account) of exercising / assigning ``units``
    (signed) of each series; zero where out of the money."""
    sign = np.where(kind == CALL, 1.0, -1.0)
    stock = np.where(itm, sign * units, 0.0)
    cash = np.where(itm, -sign * strike * units, 0.0)
    return stock + 0.0, cash + 0.0  # + 0.0: no negative zeros in the records


# ---------------------------------------------------------------------- views
def option_positions(book: Book, terms: OptionTerms, today: date) -> list[dict[str, Any]]:
    """Every option position with its terms, the underlying price, moneyness and days to expiry."""
    rows = np.flatnonzero(terms.is_option[book.pos_sec] & (book.pos_qty != 0))
    if rows.size == 0:
        return []
    sec = book.pos_sec[rows]
    acct = book.pos_acct[rows]
    qty = book.pos_qty[rows]
    kind = terms.kind[sec]
    und = terms.underlying[sec]
    spot = book.price[und]
    strike = terms.strike[sec]
    size = terms.contract_size[sec]
    days = (terms.expiry[sec] - np.datetime64(today, "D")).astype(np.int64)
    itm = in_the_money(kind, spot, strike)
    intr = intrinsic(kind, spot, strike) * np.abs(qty)
    fx = book.fx[book.sec_currency[sec]]
    mv = np.abs(qty) * book.price[sec] * fx
    out = []
    for i in range(rows.shape[0]):
        s, a, u = int(sec[i]), int(acct[i]), int(und[i])
        out.append({
            "id": int(rows[i]), "account": book.acct_codes[a], "client": book.client_codes[a],
            "client_name": book.client_names[a], "option": book.sec_codes[s], "underlying": book.sec_codes[u],
            "type": TYPE_NAMES[int(kind[i])], "strike": float(strike[i]),
            "expiry": str(terms.expiry[s]), "days_to_expiry": int(days[i]), "contract_size": float(size[i]),
            "contracts": float(qty[i] / size[i]), "units": float(qty[i]), "side": "long" if qty[i] > 0 else "short",
            "premium": float(book.price[s]), "underlying_price": float(spot[i]),
            "moneyness": "ITM" if itm[i] else ("ATM" if spot[i] == strike[i] else "OTM"),
            "intrinsic_value": float(intr[i]), "market_value": float(mv[i]),
            "currency": book.currencies[int(book.sec_currency[u])],
        })
    return out


def near_expiry(positions: list[dict[str, Any]], days: int) -> list[dict[str, Any]]:
    """Positions expiring today or within ``days`` calendar days (expired ones are not: they wait for
    exercise or lapse in the overview)."""
    return [p for p in positions if 0 <= p["days_to_expiry"] <= days]


def exercise_overview(positions: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per expiry date: series, open positions, accounts, long and short contracts, how many
    positions are in the money, and how many were already exercised, assigned or lapsed."""
    by: dict[str, dict[str, Any]] = {}

    def row(expiry: str) -> dict[str, Any]:
        if expiry not in by:
            by[expiry] = {"id": len(by) + 1, "expiry": expiry, "series": set(), "positions": 0, "accounts": set(),
                          "long_contracts": 0.0, "short_contracts": 0.0, "itm_positions": 0, "done": 0,
                          "days_to_expiry": None}
        return by[expiry]

    for p in positions:
        r = row(p["expiry"])
        r["series"].add(p["option"])
        r["positions"] += 1
        r["accounts"].add(p["account"])
        r["long_contracts" if p["contracts"] > 0 else "short_contracts"] += abs(p["contracts"])
        r["itm_positions"] += p["moneyness"] == "ITM"
        r["days_to_expiry"] = p["days_to_expiry"]
    for rec in records:
        r = row(str(rec["expiry"])[:10])
        r["series"].add(rec["option_code"])
        r["done"] += 1
    out = []
    for k in sorted(by):
        r = by[k]
        if r["days_to_expiry"] is None:
            r["days_to_expiry"] = int((np.datetime64(k, "D") - np.datetime64(date.today(), "D")).astype(int))
        status = ("done" if r["positions"] == 0 else "expired — to settle" if r["days_to_expiry"] < 0
                  else "open")
        out.append({**r, "series": len(r["series"]), "accounts": len(r["accounts"]), "status": status})
    for i, r in enumerate(out, start=1):
        r["id"] = i
    return out


def exercise_records(store: Store, limit: int = 5000) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "select * from option_exercises order by id desc limit :n"), {"n": limit})]


# ---------------------------------------------------------------------- exercise
@dataclass
class ExerciseResult:
    batch: str
    records: list[dict[str, Any]]

    @property
    def exercised(self) -> int:
        return sum(1 for r in self.records if r["action"] != "lapsed")


def exercise(store: Store, user: User, option_code: str, account: str | None = None,
             underlying_price: float | None = None) -> ExerciseResult:
    """Exercise (or let lapse) every open position of a series, or one account's; see the module doc.

    ``underlying_price`` defaults to the underlying's last price in the store."""
    now = datetime.now(UTC)
    batch = f"EX-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    with store.begin() as conn:
        o = conn.execute(text(
            "select s.id, s.code, c.option_type, c.strike, c.expiry, c.contract_size, u.id as uid, u.code as ucode, "
            "u.currency, p.price from securities s join option_contracts c on c.security_id = s.id "
            "join securities u on u.id = c.underlying_id left join prices p on p.security_id = u.id "
            "where s.code = :c"), {"c": option_code}).first()
        if o is None:
            raise OptionError(f"{option_code!r} is not an option series")
        spot = float(o.price or 0.0) if underlying_price is None else float(underlying_price)
        if not spot > 0:
            raise OptionError(f"the underlying price of {o.ucode} must be > 0, got {spot:g}")
        sql = ("select p.account_id, a.code, p.qty from positions p join accounts a on a.id = p.account_id "
               "where p.security_id = :s and p.qty <> 0")
        params: dict[str, Any] = {"s": o.id}
        if account is not None:
            sql += " and a.code = :a"
            params["a"] = account
        pos = conn.execute(text(sql + " order by a.code"), params).all()
        if not pos:
            who = f" for {account}" if account else ""
            raise OptionError(f"no open position in {option_code}{who} to exercise")
        units = np.array([float(r.qty) for r in pos])
        kind = np.full(units.shape[0], CALL if o.option_type == "call" else PUT, np.int8)
        strike = np.full(units.shape[0], float(o.strike))
        itm = in_the_money(kind, np.full(units.shape[0], spot), strike)
        stock, cash = settlement(kind, units, strike, itm)
        intr = intrinsic(kind, np.full(units.shape[0], spot), strike) * np.abs(units)
        recs = []
        for i, r in enumerate(pos):
            action = "lapsed" if not itm[i] else ("exercised" if units[i] > 0 else "assigned")
            recs.append({"ts": now, "batch": batch, "account": r.code, "option_code": o.code, "underlying": o.ucode,
                         "option_type": o.option_type, "strike": float(o.strike),
                         "expiry": _as_date(o.expiry), "contracts": float(units[i] / o.contract_size),
                         "units": float(units[i]), "underlying_price": spot, "in_the_money": bool(itm[i]),
                         "action": action, "stock_change": float(stock[i]), "cash_change": float(cash[i]),
                         "currency": o.currency, "intrinsic_value": float(intr[i]), "by": user.login})
            conn.execute(text("delete from positions where account_id = :a and security_id = :s"),
                         {"a": r.account_id, "s": o.id})
            if stock[i] != 0:
                _add_position(conn, int(r.account_id), int(o.uid), float(stock[i]))
            if cash[i] != 0:
                add_cash(conn, int(r.account_id), str(o.currency), float(cash[i]))
        conn.execute(insert(S.option_exercises), recs)
        audit.append(conn, store.kind, user.login, "exercise", "option_exercises", batch, "",
                     json.dumps({"option": o.code, "account": account, "underlying_price": spot,
                                 "positions": len(recs), "in_the_money": bool(itm[0])}))
    return ExerciseResult(batch, recs)


def _as_date(v: Any) -> date:
    return v if isinstance(v, date) else date.fromisoformat(str(v)[:10])


def _add_position(conn: Connection, account_id: int, security_id: int, delta: float) -> None:
    cur = conn.execute(text("select qty from positions where account_id = :a and security_id = :s"),
                       {"a": account_id, "s": security_id}).scalar()
    if cur is None:
        conn.execute(text("insert into positions (account_id, security_id, qty) values (:a, :s, :q)"),
                     {"a": account_id, "s": security_id, "q": delta})
    elif float(cur) + delta == 0:
        conn.execute(text("delete from positions where account_id = :a and security_id = :s"),
                     {"a": account_id, "s": security_id})
    else:
        conn.execute(text("update positions set qty = qty + :q where account_id = :a and security_id = :s"),
                     {"a": account_id, "s": security_id, "q": delta})


def add_cash(conn: Connection, account_id: int, currency: str, delta: float) -> float:
    """Add ``delta`` to an account's balance in a currency inside the caller's transaction; the new balance."""
    cur = conn.execute(text("select amount from cash_balances where account_id = :a and currency = :c"),
                       {"a": account_id, "c": currency}).scalar()
    if cur is None:
        conn.execute(text("insert into cash_balances (account_id, currency, amount) values (:a, :c, :v)"),
                     {"a": account_id, "c": currency, "v": delta})
        return delta
    new = round(float(cur) + delta, 2)
    conn.execute(text("update cash_balances set amount = :v where account_id = :a and currency = :c"),
                 {"a": account_id, "c": currency, "v": new})
    return new


# ---------------------------------------------------------------------- definitions and the demo
def create_series(conn: Connection, underlying: str, option_type: str, strike: float, expiry: date,
                  contract_size: int, premium: float, code: str | None = None) -> int:
    """A new option series (its security row, premium price and terms) inside the caller's transaction."""
    u = conn.execute(text("select id, market, currency from securities where code = :c"), {"c": underlying}).first()
    if u is None:
        raise OptionError(f"unknown underlying {underlying!r}")
    if option_type not in ("call", "put"):
        raise OptionError(f"option type must be call or put, got {option_type!r}")
    if not strike > 0 or contract_size < 1 or premium < 0:
        raise OptionError("strike must be > 0, contract size ≥ 1 and the premium ≥ 0")
    code = code or f"{underlying.split('.')[0]} {option_type[0].upper()}{strike:g} {expiry:%y%m%d}"
    sid = int(conn.execute(text("select coalesce(max(id), 0) + 1 from securities")).scalar_one())
    conn.execute(insert(S.securities).values(
        id=sid, code=code, name=f"{underlying} {expiry:%d %b %y} {strike:g} {option_type}", market=u.market,
        currency=u.currency, lot_size=contract_size, level=3))
    conn.execute(insert(S.prices).values(security_id=sid, price=max(premium, 0.001), ts=datetime.now(UTC).timestamp()))
    conn.execute(insert(S.haircuts).values(security_id=sid, haircut=1.0))
    conn.execute(insert(S.option_contracts).values(security_id=sid, underlying_id=u.id, option_type=option_type,
                                                   strike=strike, expiry=expiry, contract_size=contract_size))
    return sid


def seed_options(store: Store, today: date | None = None, seed: int = 7) -> int:
    """Option series on the most-held Hong Kong stocks — expiring in 2 days, 4 days, next month and
    one expired yesterday — with long calls and puts, covered and under-covered short calls. Returns
    the number of option positions written."""
    today = today or date.today()
    rng = np.random.default_rng(seed)
    with store.begin() as conn:
        if conn.execute(text("select 1 from option_contracts limit 1")).first():
            return 0
        held = conn.execute(text(
            "select s.code, s.id, max(p2.price) as price, count(*) as n from positions p "
            "join securities s on s.id = p.security_id join prices p2 on p2.security_id = s.id "
            "where p.qty > 0 and s.market = 'HK' group by s.code, s.id order by count(*) desc, s.code limit 4")).all()
        if not held:
            return 0
        expiries = [today + timedelta(days=2), today + timedelta(days=4), today + timedelta(days=28),
                    today - timedelta(days=1)]
        written = 0
        for k, u in enumerate(held):
            px = float(u.price)
            size = 100 if px < 200 else 50
            holders = conn.execute(text(
                "select p.account_id, p.qty from positions p join accounts a on a.id = p.account_id "
                "where p.security_id = :s and p.qty > 0 and a.type <> 'cash' order by p.qty desc limit 6"),
                {"s": u.id}).all()
            others = conn.execute(text(
                "select a.id from accounts a where a.type = 'margin' and not exists (select 1 from positions p "
                "where p.account_id = a.id and p.security_id = :s) order by a.id limit 4 offset :o"),
                {"s": u.id, "o": 4 * k}).all()
            for j, (otype, mult) in enumerate((("call", 0.95), ("call", 1.08), ("put", 1.05), ("put", 0.9))):
                expiry = expiries[(k + j) % len(expiries)]
                strike = float(np.round(px * mult, 1 if px < 50 else 0))
                intr = max(0.0, px - strike) if otype == "call" else max(0.0, strike - px)
                premium = round(intr + px * 0.01 * (1 + rng.random()), 3)
                sid = create_series(conn, u.code, otype, strike, expiry, size, premium)
                rows: list[tuple[int, float]] = []
                if otype == "call" and holders:
                    # written calls: the first covered, the second short more than the shares held
                    writers = [holders[0], holders[-1]] if len(holders) > 1 else holders[:1]  # largest, smallest
                    for h, (acct, qty) in enumerate(writers):
                        full = int(float(qty) // size)
                        contracts = max(1, min(full // 2, 10)) if h == 0 else min(full + 2, 24)
                        rows.append((int(acct), -float(contracts * size)))
                for acct, in others[: 2 + (j % 2)]:
                    rows.append((int(acct), float(int(rng.integers(1, 6)) * size)))
                for acct, q in rows:
                    conn.execute(text("insert into positions (account_id, security_id, qty) values (:a, :s, :q)"),
                                 {"a": acct, "s": sid, "q": q})
                written += len(rows)
        if store.kind == "postgresql":  # ids were given explicitly: move the sequence past them
            conn.execute(text("select setval(pg_get_serial_sequence('securities', 'id'), "
                              "coalesce((select max(id) from securities), 0) + 1, false)"))
    return written
