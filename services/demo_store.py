"""Seed a store with the demo book, its index membership, holidays and demo settings."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.calendar import shipped_holidays
from services.store import Store

# (code, name, market, level): the index a security belongs to decides its level (RISK_METHODS §4)
DEMO_INDICES = (
    ("HSI", "Hang Seng Index", "HK", 1),
    ("HSCI", "Hang Seng Composite Index", "HK", 2),
    ("OEX", "S&P 100", "US", 1),
    ("SPX", "S&P 500", "US", 2),
)


def seed_demo_store(store: Store, clients: int = 3000, seed: int = 7, positions: int | None = None,
                    pretrade: bool = True, runs: bool = True) -> dict[str, Any]:
    """The demo book, governance history and (``pretrade``) a morning of pre-trade decisions."""
    # imported here: opening an existing store (ensure_demo_store) must not load pandas and every panel's
    # service just to find the store already seeded
    from services.call_work import seed_demo_call_work
    from services.demo import make_demo_book
    from services.incidents_demo import seed_incidents
    from services.liquidation_orders import seed_demo_liquidation
    from services.loss_events import seed_loss_events
    from services.positions_ops import seed_positions_ops
    from services.rcsa import seed_rcsa
    from services.recon_sources import seed_demo_recon
    from services.risk_runs import seed_demo_runs
    from services.trade_errors import seed_trade_errors

    book = make_demo_book(clients, seed=seed, positions=positions)
    # the demo market is open round the clock, so prices go stale whenever the feed stops
    book.parameters["market_open_hhmm"] = 0.0
    book.parameters["market_close_hhmm"] = 2400.0
    indices = []
    for k, (code, name, market, level) in enumerate(DEMO_INDICES):
        mkt = book.markets.index(market) if market in book.markets else -1
        members = np.flatnonzero((book.sec_market == mkt) & (book.level <= level))
        indices.append({"id": k + 1, "code": code, "name": name, "market": market, "level": level,
                        "members": members.tolist()})
    store.save_book(book, indices=indices, holidays=shipped_holidays())
    store.set_meta("demo", "1")
    seed_demo_governance(store)
    seed_incidents(store)  # incidents and corrective actions (issue 7)
    seed_demo_recon(store, seed=seed)  # reconciliation breaks of every age (issue 7)
    seed_loss_events(store, seed=seed)  # a year of loss events and near misses (issue 7)
    seed_trade_errors(store, seed=seed)  # a year of trade-error tickets and trade counts (issue 7)
    seed_demo_call_work(store)  # issue 8: margin calls opened and worked (notices, remarks, exceptions)
    seed_demo_liquidation(store)  # issue 8: liquidation orders confirmed, sent, cancelled
    if pretrade:
        seed_demo_pretrade(store, book, seed=seed)
    seed_positions_ops(store, seed=seed)  # issue 8: options, lending inventory, collections, borrowing reminders
    if runs:  # this morning's SFC stress runs and LCS test (issue 6)
        seed_demo_runs(store)
    seed_rcsa(store)  # RCSA register and new-business review board (issue 7); after the runs
    seed_demo_kris(store, seed=seed)  # last: today's computed KRIs read the incidents, breaks, errors and calls
    return {"accounts": book.n_acct, "securities": book.n_sec, "positions": book.n_pos}


def ensure_demo_store(store: Store) -> bool:
    """Migrate, and seed the demo book when the store is empty. True when it seeded."""
    store.migrate()
    if store.is_empty():
        seed_demo_store(store)
        return True
    return False


def seed_demo_kris(store: Store, seed: int = 7) -> int:
    """Two years of daily KRI readings up to the last business day, the last day's computed KRIs
    computed from the store's records (so a tile agrees with its drill-down), and the tasks they call
    for. Seed it after the records the computed KRIs read (incidents, breaks, trade errors, calls)."""
    from datetime import date

    import numpy as np

    from services import kri

    end = np.busday_offset(np.datetime64(date.today(), "D"), 0, roll="backward",
                           holidays=kri._holidays()).astype(date)
    with store.begin() as conn:
        n = kri.seed_readings(conn, end, seed=seed)
    if n:
        kri.compute_all(store, "demo", end)  # replaces the walk's last computed values with the records'
        kri.sync_tasks(store, "demo")
    return n


# local demo users (README lists them): login, role, display name; password = login + "-demo"
DEMO_USERS = (
    ("rita", "risk_officer", "Rita Chan (risk officer)"),
    ("sam", "supervisor", "Sam Wong (supervisor)"),
    ("cora", "cro", "Cora Lee (CRO)"),
    ("tom", "trader", "Tom Ho (trader)"),
    ("olga", "operations", "Olga Lam (operations)"),
    ("abe", "auditor", "Abe Ng (auditor)"),
    ("ada", "administrator", "Ada Yip (administrator)"),
)
DEMO_PASSWORD_SUFFIX = "-demo"


def seed_demo_governance(store: Store) -> None:
    """Users for every role, approval flows, and a history of decided and pending requests."""
    from sqlalchemy import insert, select, text

    from models import schema as S
    from services import auth, changes

    auth.ensure_permissions(store)
    with store.begin() as conn:
        have = set(conn.execute(select(S.users.c.login)).scalars())
        has_flows = conn.execute(select(S.approval_flows.c.id).limit(1)).first() is not None
        if not has_flows:
            conn.execute(insert(S.approval_flows), [
                {"code": "credit.credit_adjust", "kind": "financing_limit", "min_amount": None,
                 "max_amount": 1_000_000.0, "steps": '["supervisor"]'},
                {"code": "credit.credit_adjust.large", "kind": "financing_limit", "min_amount": 1_000_000.0,
                 "max_amount": None, "steps": '["supervisor", "cro"]'},
                {"code": "risk.parameter", "kind": "company_parameter", "min_amount": None, "max_amount": None,
                 "steps": '["supervisor"]'},
            ])
    for login, role, name in DEMO_USERS:
        if login not in have:
            auth.create_user(store, login, role, name, password=login + DEMO_PASSWORD_SUFFIX)
    if store.kind == "postgresql":
        return  # decisions on Postgres are made by real logins; the owner cannot fake them (by design)
    with store.begin() as conn:
        if conn.execute(text("select count(*) from change_requests")).scalar():
            return
        limits = conn.execute(text(
            "select f.account_id, f.amount, a.code from financing_limits f join accounts a on a.id = f.account_id "
            "where f.amount > 0 order by f.account_id limit 8")).all()
    users = {login: auth.User(login, name, role) for login, role, name in DEMO_USERS}
    rita, sam, cora = users["rita"], users["sam"], users["cora"]

    def limit_change(i: int, factor: float, reason: str, floor: float = 0.0) -> int:
        acct_id, amount, code = limits[i]
        new = max(floor, float(round(amount * factor / 50_000) * 50_000))
        if new == amount:  # a request always proposes a real change
            new = amount + (50_000.0 if factor >= 1 else -50_000.0)
        return changes.submit(store, rita, "financing_limit", {"account_id": acct_id}, {"amount": new}, reason,
                              amount=new, context={"account": code, "current_limit": amount})

    if len(limits) >= 6:
        changes.approve(store, sam, limit_change(0, 1.5, "Client pledged additional blue chips"), "collateral checked")
        changes.reject(store, sam, limit_change(1, 3.0, "Client request for IPO financing"),
                       "Concentration too high; resubmit with a lower amount")
        big = limit_change(2, 4.0, "Private banking client, guaranteed by parent", floor=2_000_000.0)
        changes.approve(store, sam, big, "supervisor OK; CRO to confirm")
        limit_change(3, 1.2, "Annual review: modest increase")
        limit_change(4, 0.5, "Reduce exposure after repeated late calls")
    changes.submit(store, rita, "company_parameter", {"name": "call_deadline_days"}, {"value": 2.0},
                   "Align with the revised margin-call policy (T+2)")
    req = changes.submit(store, rita, "company_parameter", {"name": "stale_after_seconds"}, {"value": 10.0},
                         "Fewer stale alarms on thin US names")
    changes.cancel(store, rita, req)
    del cora


DEMO_TRADERS = ("tom", "may.chan", "ken.lau")


def _demo_orders(book: Any, buying_power: np.ndarray, rng: np.random.Generator) -> list[tuple[Any, ...]]:
    """(account, trader, code, side, qty, price or None, seconds after the previous order) of every
    kind: small buys and sells (accept), 4–8× the normal size (prompt), sells of large holdings above
    1,000,000 (approval), a 600,000 order by tom (his specific rule), and rejects (price far from the
    last, buying power, a cash account selling short, 12× the normal size, a duplicate)."""
    from models.book import ACCT_CASH

    b = book
    lot, px = b.lot_size.astype(float), b.price.astype(float)
    trading = np.flatnonzero((b.sec_currency == 0) & ~b.suspended & (px > 0))  # HKD securities
    normal = 50 * lot
    margin = np.flatnonzero((b.acct_type != ACCT_CASH) & ~b.frozen)
    rich = margin[np.argsort(-buying_power[margin], kind="stable")][:40]
    out: list[tuple[Any, ...]] = []
    code = b.sec_codes

    def buy_within(a: int, cap: float, lots_hi: int) -> tuple[int, float] | None:
        for s in rng.permutation(trading)[:40].tolist():
            for lots in range(lots_hi, 0, -1):
                if lots * lot[s] * px[s] <= cap:
                    return s, float(lots * lot[s])
        return None

    for i in range(22):  # accepted buys, a few of them market orders
        a = int(rich[i % len(rich)])
        got = buy_within(a, min(0.4 * buying_power[a], 450_000.0), int(rng.integers(2, 20)))
        if got:
            s, qty = got
            out.append((a, DEMO_TRADERS[i % 3], code[s], "buy", qty, None if i % 5 == 4 else px[s], 40))
    held = np.flatnonzero((b.pos_qty > 0) & np.isin(b.pos_sec, trading) & ~b.frozen[b.pos_acct])
    value = b.pos_qty[held] * px[b.pos_sec[held]]
    small = held[(value > 20_000) & (value < 2_000_000)][:8]
    for k, p in enumerate(small.tolist()):  # accepted sells of part of a holding
        s, q = int(b.pos_sec[p]), float(b.pos_qty[p])
        lots = max(1, int(q / lot[s] // 3))
        if lots * lot[s] * px[s] < 900_000:
            out.append((int(b.pos_acct[p]), DEMO_TRADERS[(k + 1) % 3], code[s], "sell", lots * lot[s], px[s], 55))
    cheap = trading[np.argsort(px[trading] * lot[trading])]
    for k in range(5):  # 4–8× the normal size: the trader confirms
        a = int(rich[k])
        for s in cheap[k::3].tolist():
            qty = float((4 + k) * normal[s])
            if qty * px[s] < min(0.8 * buying_power[a], 950_000.0):
                out.append((a, DEMO_TRADERS[1 + k % 2], code[s], "buy", qty, px[s], 35))
                break
    big = held[(value > 1_100_000)]
    big = big[np.argsort(-value[value > 1_100_000], kind="stable")][:6]
    n_app = 0
    for p in big.tolist():  # above 1,000,000: a four-eyes release
        s, q = int(b.pos_sec[p]), float(b.pos_qty[p])
        qty = min(q, 2.5 * normal[s])
        qty = float(np.floor(qty / lot[s]) * lot[s])
        if qty * px[s] > 1_000_000 and n_app < 4:
            out.append((int(b.pos_acct[p]), DEMO_TRADERS[1 + n_app % 2], code[s], "sell", qty, px[s], 50))
            n_app += 1
    for a in rich[:5].tolist():  # tom's specific rule: a prompt above 500,000
        s = int(trading[0])
        qty = float(np.ceil(560_000 / (lot[s] * px[s])) * lot[s])
        if qty * px[s] < min(0.9 * buying_power[a], 950_000.0) and qty <= 3 * normal[s]:
            out.append((a, "tom", code[s], "buy", qty, px[s], 45))
            break
    s0 = int(trading[0])
    out.append((int(rich[1]), "ken.lau", code[s0], "buy", float(lot[s0]), round(px[s0] * 1.15, 2), 30))
    poor = margin[buying_power[margin] < 20_000]
    if poor.size:
        out.append((int(poor[0]), "may.chan", code[s0], "buy", float(20 * lot[s0]), px[s0], 30))
    cash_accts = np.flatnonzero(b.acct_type == ACCT_CASH)
    if cash_accts.size:
        out.append((int(cash_accts[0]), "tom", code[int(cheap[0])], "sell", float(lot[int(cheap[0])]),
                    px[int(cheap[0])], 30))
    out.append((int(rich[2]), "may.chan", code[int(cheap[1])], "buy", float(12 * normal[int(cheap[1])]),
                px[int(cheap[1])], 30))
    suspended = np.flatnonzero(b.suspended)
    if suspended.size:
        out.append((int(rich[3]), "ken.lau", code[int(suspended[0])], "buy", float(lot[int(suspended[0])]),
                    None, 30))
    rest = [out[i] for i in (rng.permutation(len(out) - 1) + 1).tolist()]
    first = [out[0], (*out[0][:6], 20), *rest] if out else []  # the first order again 20 s later: a duplicate
    return [(b.acct_codes[o[0]], *o[1:]) for o in first]


def seed_demo_pretrade(store: Store, book: Any, seed: int = 7, now: float | None = None) -> int:
    """A morning of pre-trade decisions of every kind, checked by a real engine over the demo book and
    stored as the order-check service stores them (approvals with their release request; on SQLite
    one already released). Also one specific rule, approved: tom's orders above 500,000 prompt."""
    import time

    from services import changes
    from services import pretrade_store as ps
    from services.auth import User
    from services.margin import MarginEngine
    from services.pretrade_orders import Order

    now = time.time() if now is None else now
    if store.kind == "sqlite":  # decisions on PostgreSQL are made by real logins
        rita, sam = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
        rid = ps.propose_rule(store, rita, "Tom — large orders", "TR_ORD_NOTIONAL", {"trader": "tom"}, 500_000.0,
                              "New trader: confirm every order above 500,000", action="prompt")
        changes.approve(store, sam, rid, "agreed for his first month")
    margin = MarginEngine(book)
    eng = ps.build_engine(store, now=now, margin=margin)
    orders = _demo_orders(book, margin.buying_power, np.random.default_rng(seed))
    ts = now - sum(o[6] for o in orders) - 60
    batch: list[Any] = []
    approvals = []
    for n, (acct, trader, code, side, qty, price, gap) in enumerate(orders, start=1):
        ts += gap
        o = Order(acct, trader, code, side, float(qty), None if price is None else float(price),
                  "market" if price is None else "limit", f"DEMO-{n:04d}")
        d = eng.check(o, ts)
        eng.record(d)
        if d.decision == "approval":
            ps.save_decisions(store, batch)
            batch = []
            approvals.append(ps.save_approval(store, d))
        else:
            batch.append(d)
    ps.save_decisions(store, batch)
    if approvals and store.kind == "sqlite" and approvals[0].request_id:
        changes.approve(store, User("sam", "Sam", "supervisor"), approvals[0].request_id, "client confirmed")
    return len(orders)
