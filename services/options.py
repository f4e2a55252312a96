"""Options (issue 8): option positions, near-expiry holdings, the exercise overview and exercises.

Option series live beside the stock book (`option_series`: underlying, call or put, strike, expiry,
contract size and the last premium per share) with the contracts each account holds or wrote in
`option_positions` (short < 0). They are not securities of the margin book: RISK_METHODS gives options
no margin ratio and a recognised value of 0, and keeping them apart leaves every stock-book figure as
it was. Units = contracts × contract size.

Exercise at the underlying price S against the strike K: a call is in the money when S > K, a put when
S < K (at the money is out). In the money, every position of the series is settled — a long one is
exercised, a short one assigned — with one rule for both sides: a call moves ``units`` shares of the
underlying into the account and ``K × units`` cash out of it, a put the opposite (``units`` is signed,
so a short call delivers shares and receives cash). Out of the money the position lapses with no stock
or cash. Either way the option position is closed; stock positions, cash, the option position and the
exercise records change in one transaction with an audit record.
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
class OptionBook:
    """Series (arrays by series index) and positions (arrays by position) aligned with a stock book."""

    codes: list[str]
    kind: np.ndarray  # int8: 1 call, 2 put
    underlying: np.ndarray  # int64 security index in the book
    strike: np.ndarray  # float64, per share
    expiry: np.ndarray  # datetime64[D]
    contract_size: np.ndarray  # float64
    premium: np.ndarray  # float64, per share
    pos_acct: np.ndarray  # int64 account index in the book
    pos_series: np.ndarray  # int64 series index
    pos_contracts: np.ndarray  # float64, signed

    @property
    def pos_units(self) -> np.ndarray:
        return self.pos_contracts * self.contract_size[self.pos_series]


def load_options(conn: Connection, book: Book) -> OptionBook:
    """Every series whose underlying is in the book, and the non-zero positions in them."""
    series = conn.execute(text("select id, code, underlying_id, option_type, strike, expiry, contract_size, premium "
                               "from option_series order by id")).all()
    sec_ids = book.sec_ids if book.sec_ids is not None else np.zeros(0, np.int64)
    acct_ids = book.acct_ids if book.acct_ids is not None else np.zeros(0, np.int64)
    und = np.searchsorted(sec_ids, np.array([r[2] for r in series], np.int64))
    keep = [i for i, r in enumerate(series) if und[i] < len(sec_ids) and sec_ids[und[i]] == r[2]]
    series = [series[i] for i in keep]
    und = und[keep]
    sid = np.array([r[0] for r in series], np.int64)
    pos = conn.execute(text("select account_id, series_id, contracts from option_positions where contracts <> 0 "
                            "order by series_id, account_id")).all()
    pa = np.searchsorted(acct_ids, np.array([r[0] for r in pos], np.int64))
    ps = np.searchsorted(sid, np.array([r[1] for r in pos], np.int64))
    ok = np.array([pa[i] < len(acct_ids) and acct_ids[pa[i]] == r[0] and ps[i] < len(sid) and sid[ps[i]] == r[1]
                   for i, r in enumerate(pos)], bool)
    return OptionBook(
        codes=[r[1] for r in series], kind=np.array([CALL if r[3] == "call" else PUT for r in series], np.int8),
        underlying=und.astype(np.int64), strike=np.array([float(r[4]) for r in series]),
        expiry=np.array([str(r[5])[:10] for r in series], "datetime64[D]"),
        contract_size=np.array([float(r[6]) for r in series]), premium=np.array([float(r[7]) for r in series]),
        pos_acct=pa[ok].astype(np.int64), pos_series=ps[ok].astype(np.int64),
        pos_contracts=np.array([float(r[2]) for r in pos])[ok] if pos else np.zeros(0))


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
def option_positions(book: Book, ob: OptionBook, today: date) -> list[dict[str, Any]]:
    """Every option position with its terms, the underlying price, moneyness and days to expiry."""
    n = ob.pos_contracts.shape[0]
    if n == 0:
        return []
    ser, acct, contracts = ob.pos_series, ob.pos_acct, ob.pos_contracts
    units = ob.pos_units
    kind, und, strike = ob.kind[ser], ob.underlying[ser], ob.strike[ser]
    spot = book.price[und]
    days = (ob.expiry[ser] - np.datetime64(today, "D")).astype(np.int64)
    itm = in_the_money(kind, spot, strike)
    intr = intrinsic(kind, spot, strike) * np.abs(units)
    fx = book.fx[book.sec_currency[und]]
    mv = np.abs(units) * ob.premium[ser] * fx
    out = []
    for i in range(n):
        k, a, u = int(ser[i]), int(acct[i]), int(und[i])
        out.append({
            "id": i + 1, "account": book.acct_codes[a], "client": book.client_codes[a],
            "client_name": book.client_names[a], "option": ob.codes[k], "underlying": book.sec_codes[u],
            "type": TYPE_NAMES[int(kind[i])], "strike": float(strike[i]), "expiry": str(ob.expiry[k]),
            "days_to_expiry": int(days[i]), "contract_size": float(ob.contract_size[k]),
            "contracts": float(contracts[i]), "units": float(units[i]), "side": "long" if contracts[i] > 0 else "short",
            "premium": float(ob.premium[k]), "underlying_price": float(spot[i]),
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
            "select s.id, s.code, s.option_type, s.strike, s.expiry, s.contract_size, u.id as uid, u.code as ucode, "
            "u.currency, p.price from option_series s join securities u on u.id = s.underlying_id "
            "left join prices p on p.security_id = u.id where s.code = :c"), {"c": option_code}).first()
        if o is None:
            raise OptionError(f"{option_code!r} is not an option series")
        spot = float(o.price or 0.0) if underlying_price is None else float(underlying_price)
        if not spot > 0:
            raise OptionError(f"the underlying price of {o.ucode} must be > 0, got {spot:g}")
        sql = ("select p.account_id, a.code, p.contracts from option_positions p join accounts a "
               "on a.id = p.account_id where p.series_id = :s and p.contracts <> 0")
        params: dict[str, Any] = {"s": o.id}
        if account is not None:
            sql += " and a.code = :a"
            params["a"] = account
        pos = conn.execute(text(sql + " order by a.code"), params).all()
        if not pos:
            who = f" for {account}" if account else ""
            raise OptionError(f"no open position in {option_code}{who} to exercise")
        units = np.array([float(r.contracts) for r in pos]) * float(o.contract_size)
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
            conn.execute(text("delete from option_positions where account_id = :a and series_id = :s"),
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
    """A new option series inside the caller's transaction; its id."""
    u = conn.execute(text("select id from securities where code = :c"), {"c": underlying}).first()
    if u is None:
        raise OptionError(f"unknown underlying {underlying!r}")
    if option_type not in ("call", "put"):
        raise OptionError(f"option type must be call or put, got {option_type!r}")
    if not strike > 0 or contract_size < 1 or premium < 0:
        raise OptionError("strike must be > 0, contract size ≥ 1 and the premium ≥ 0")
    code = code or f"{underlying.split('.')[0]} {option_type[0].upper()}{strike:g} {expiry:%y%m%d}"
    return int(conn.execute(insert(S.option_series).values(
        code=code, underlying_id=u.id, option_type=option_type, strike=strike, expiry=expiry,
        contract_size=contract_size, premium=premium).returning(S.option_series.c.id)).scalar_one())


def seed_options(store: Store, today: date | None = None, seed: int = 7) -> int:
    """Option series on the most-held Hong Kong stocks — expiring in 2 days, 4 days, next month and
    one expired yesterday — with long calls and puts, covered and under-covered short calls. Returns
    the number of option positions written."""
    today = today or date.today()
    rng = np.random.default_rng(seed)
    with store.begin() as conn:
        if conn.execute(text("select 1 from option_series limit 1")).first():
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
                rows: list[tuple[int, float]] = []  # (account, contracts)
                if otype == "call" and holders:
                    # written calls: the first covered, the second short more than the shares held
                    writers = [holders[0], holders[-1]] if len(holders) > 1 else holders[:1]  # largest, smallest
                    for h, (acct, qty) in enumerate(writers):
                        full = int(float(qty) // size)
                        contracts = max(1, min(full // 2, 10)) if h == 0 else min(full + 2, 24)
                        rows.append((int(acct), -float(contracts)))
                for acct, in others[: 2 + (j % 2)]:
                    rows.append((int(acct), float(rng.integers(1, 6))))
                if rows:
                    conn.execute(insert(S.option_positions), [{"account_id": a, "series_id": sid, "contracts": q}
                                                              for a, q in rows])
                written += len(rows)
    return written
