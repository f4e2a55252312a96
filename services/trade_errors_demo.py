"""The demo store's trade errors: a year of tickets (older ones resolved, signed and closed, the last
fortnight's open at every stage) and the monthly trade counts, made through the same severity and review
rules as real tickets."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from models import schema as S
from services import audit
from services.calendar import HK_TZ
from services.store import Store
from services.trade_errors import (
    ERROR_TYPES,
    GAINS_POLICIES,
    ROOT_CAUSES,
    is_large_wrong_side,
    required_reviews,
    severity,
)

DESK_HEAD_DEMO = ("dan", "supervisor", "Dan Lau (desk head)")  # a second supervisor: L2/L3 reviews need two
_DEMO_DESKS = ("HK equities", "US equities", "Retail dealing")
_DEMO_TYPES = (("wrong_quantity", 0.26), ("wrong_security", 0.16), ("wrong_side", 0.12), ("wrong_account", 0.14),
               ("duplicate", 0.12), ("price", 0.14), ("stale_execution", 0.06))


def seed_demo_trade_errors(store: Store, seed: int = 7, months: int = 12, today: date | None = None) -> int:
    """A year of trade-error tickets and monthly trade counts for the demo store: older tickets resolved,
    signed and closed, the recent ones open at every stage. Nothing when tickets exist already."""
    import numpy as np

    from services import auth
    from services.demo_store import DEMO_PASSWORD_SUFFIX

    today = today or datetime.now(HK_TZ).date()
    rng = np.random.default_rng(seed + 113)
    with store.begin() as conn:
        if conn.execute(select(S.trade_errors.c.id).limit(1)).first() is not None:
            return 0
        have = set(conn.execute(select(S.users.c.login)).scalars())
    if DESK_HEAD_DEMO[0] not in have:
        login, role, name = DESK_HEAD_DEMO
        auth.create_user(store, login, role, name, password=login + DEMO_PASSWORD_SUFFIX, actor="demo")
    signer = {"supervisor": "sam", "desk_head": "dan", "compliance": "rita", "cro": "cora"}
    types = [t for t, _ in _DEMO_TYPES]
    p = np.array([w for _, w in _DEMO_TYPES])
    from datetime import timedelta

    n = 0
    with store.begin() as conn:
        for k in range(months + 1):
            y, m = divmod(today.year * 12 + today.month - 1 - k, 12)
            first = date(y, m + 1, 1)
            share = min(1.0, ((today - first).days + 1) / 30)
            conn.execute(insert(S.trade_volumes).values(
                month=first, trades=max(1, int(rng.integers(6_500, 9_500) * share)), entered_by="olga",
                entered_at=datetime.now(UTC)))
        ago = np.concatenate([rng.integers(15, months * 30, size=int(rng.poisson(4.5 * months))),
                              rng.integers(0, 15, size=7)])  # the last fortnight's tickets are still open
        for a in np.sort(ago)[::-1]:
            n += 1
            _seed_one(conn, store, rng, types, p, today - timedelta(days=int(a)), int(a), signer)
        audit.append(conn, store.kind, "demo", "seed", "trade_errors", "", "", f"{n} demo trade errors")
    return n


def _seed_one(conn: Connection, store: Store, rng: Any, types: list[str], p: Any, day: date, age: int,
              signer: dict[str, str]) -> None:
    etype = str(rng.choice(types, p=p / p.sum()))
    qty = float(rng.choice([100, 200, 500, 1000, 2000, 5000, 10000]))
    price = float(round(rng.uniform(5, 400), 2))
    loss = rng.random() < 0.8
    size = float(round(rng.lognormal(8.0, 1.3), 2))
    pnl = -size if loss else size
    impact = rng.random() < 0.18
    clients = int(rng.integers(2, 5)) if impact and rng.random() < 0.25 else (1 if impact else 0)
    acct = f"M{int(rng.integers(1, 3000)):05d}"
    code = str(rng.choice(["700.HK", "5.HK", "1299.HK", "9988.HK", "AAPL.US", "MSFT.US", "388.HK"]))
    side = str(rng.choice(["buy", "sell"]))
    wrong = {"account": acct, "code": code, "side": side, "qty": qty, "price": price}
    right = dict(wrong)
    if etype == "wrong_side":
        right["side"] = "sell" if side == "buy" else "buy"
    elif etype == "wrong_quantity":
        right["qty"] = qty / 10
    elif etype == "wrong_account":
        right["account"] = f"M{int(rng.integers(1, 3000)):05d}"
    elif etype == "wrong_security":
        right["code"] = "5.HK" if code != "5.HK" else "388.HK"
    elif etype == "price":
        right["price"] = round(price * 0.98, 2)
    large = is_large_wrong_side(etype, qty * price, False)
    level, _ = severity(pnl, impact, clients, large)
    detected = min(datetime.now(UTC), datetime(day.year, day.month, day.day, 10 + int(rng.integers(0, 6)), 5,
                                               tzinfo=HK_TZ).astimezone(UTC))
    stage = 5 if age >= 15 else int(rng.integers(0, 5))  # 5 closed; 0..4 how far an open ticket got
    row: dict[str, Any] = {
        "error_type": etype, "desk": str(rng.choice(_DEMO_DESKS)), "account": acct, "code": code, "trade_date": day,
        "detected_at": detected, "erroneous_trade": json.dumps(wrong),
        "correct_trade": json.dumps(right if etype not in ("duplicate", "stale_execution") else {}), "est_pnl": pnl,
        "client_impact": impact, "clients_affected": clients, "large_wrong_side": large, "severity": level,
        "description": f"{ERROR_TYPES[etype]} on {code} for {acct}", "status": "closed" if stage == 5 else "open",
        "created_by": str(rng.choice(["olga", "tom"]))}
    if stage >= 1 and pnl < 0:
        row.update(error_account_transfer=True, error_account_at=detected)
    if stage >= 1 and impact:
        row.update(client_notified=True, client_notified_at=detected)
    if stage >= 2:
        cause = str(rng.choice(ROOT_CAUSES, p=[0.45, 0.3, 0.2, 0.05]))
        row.update(root_cause=json.dumps(["Order keyed from the wrong ticket", "Two tickets open side by side",
                                          "No four-eyes check on large tickets"][: int(rng.integers(1, 4))]),
                   root_cause_category=cause)
    if stage >= 3:
        final = round(pnl * float(rng.uniform(0.85, 1.1)), 2)
        rec = round(-final * float(rng.uniform(0.1, 0.6)), 2) if final < 0 and rng.random() < 0.3 else 0.0
        row.update(final_pnl=final, recovery=rec, resolved_by="olga", resolved_at=detected,
                   pnl_resolution="Corrected and re-booked; P&L settled in the error account" if final < 0
                   else "Corrected and re-booked",
                   gains_policy="loss_error_account" if final < 0 else str(rng.choice(list(GAINS_POLICIES))))
    if stage == 5:
        row["closed_at"] = detected
    new_id = int(conn.execute(insert(S.trade_errors).values(**row).returning(S.trade_errors.c.id)).scalar_one())
    need = required_reviews(level)
    signs = need if stage >= 4 else need[: int(rng.integers(0, len(need)))]
    if signs:
        conn.execute(insert(S.trade_error_signoffs), [
            {"error_id": new_id, "role": r, "signed_by": signer[r], "ts": detected, "comment": ""} for r in signs])
