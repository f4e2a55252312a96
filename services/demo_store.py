"""Seed a store with the demo book, its index membership, holidays and demo settings."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.calendar import shipped_holidays
from services.demo import make_demo_book
from services.store import Store

# (code, name, market, level): the index a security belongs to decides its level (RISK_METHODS §4)
DEMO_INDICES = (
    ("HSI", "Hang Seng Index", "HK", 1),
    ("HSCI", "Hang Seng Composite Index", "HK", 2),
    ("OEX", "S&P 100", "US", 1),
    ("SPX", "S&P 500", "US", 2),
)


def seed_demo_store(store: Store, clients: int = 3000, seed: int = 7, positions: int | None = None
                    ) -> dict[str, Any]:
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
    return {"accounts": book.n_acct, "securities": book.n_sec, "positions": book.n_pos}


def ensure_demo_store(store: Store) -> bool:
    """Migrate, and seed the demo book when the store is empty. True when it seeded."""
    store.migrate()
    if store.is_empty():
        seed_demo_store(store)
        return True
    return False


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
