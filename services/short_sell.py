"""Short-sell status (issue 4): sellable, prohibited (manual), or auto-prohibited by the lending inventory.

The manual status and the two thresholds are a risk parameter (`short_sell_rules`, four-eyes). The
inventory moves with the lending desk; as it does, a sellable security whose inventory falls below
the closure threshold is auto-prohibited, and an auto-prohibited one recovers only when inventory is
back at or above the recovery threshold (recovery ≥ closure, so the status does not flap around one
level). Every automatic transition is kept in `short_sell_history`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from services import changes
from services.auth import User
from services.store import Store


@dataclass
class ShortSellStatus:
    code: str
    manual: str  # sellable | prohibited
    closure: float | None
    recovery: float | None
    inventory: float | None
    auto_prohibited: bool

    @property
    def effective(self) -> str:
        if self.manual == "prohibited":
            return "prohibited"
        return "auto-prohibited" if self.auto_prohibited else "sellable"


def propose_rule(store: Store, user: User, code: str, status: str, closure: float | None,
                 recovery: float | None, reason: str) -> int:
    """A four-eyes request to set a security's manual status and thresholds (validated first)."""
    if status not in ("sellable", "prohibited"):
        raise changes.ChangeError(f"status must be sellable or prohibited, got {status!r}")
    for name, v in (("closure threshold", closure), ("recovery threshold", recovery)):
        if v is not None and v < 0:
            raise changes.ChangeError(f"the {name} must be ≥ 0, got {v:g}")
    if closure is not None and recovery is not None and recovery < closure:
        raise changes.ChangeError(f"the recovery threshold ({recovery:g}) must be at least the closure "
                                  f"threshold ({closure:g})")
    with store.begin() as conn:
        sid = conn.execute(text("select id from securities where code = :c"), {"c": code}).scalar()
        if sid is None:
            raise changes.ChangeError(f"unknown security code {code!r}")
        exists = conn.execute(text("select 1 from short_sell_rules where security_id = :s"), {"s": sid}).first()
    after = {"status": status, "closure_threshold": closure, "recovery_threshold": recovery}
    return changes.submit(store, user, "short_sell_rule", {"security_id": int(sid)}, after, reason,
                          op="update" if exists else "insert", context={"code": code})


def update_inventory(store: Store, inventory: dict[str, float], now: datetime | None = None
                     ) -> list[tuple[str, str, float]]:
    """Record new inventory levels and apply the thresholds; returns (code, event, inventory) moves."""
    now = now or datetime.now(UTC)
    moves: list[tuple[str, str, float]] = []
    with store.begin() as conn:
        rows = {r.code: r for r in conn.execute(text(
            "select s.id, s.code, r.status, r.closure_threshold, r.recovery_threshold, i.qty, i.auto_prohibited "
            "from securities s left join short_sell_rules r on r.security_id = s.id "
            "left join lending_inventory i on i.security_id = s.id where s.code in :codes").bindparams(
                _expanding("codes")), {"codes": list(inventory)})}
        for code, qty in inventory.items():
            r = rows.get(code)
            if r is None:
                raise changes.ChangeError(f"unknown security code {code!r}")
            auto = bool(r.auto_prohibited)
            new_auto = auto
            if r.status != "prohibited" and r.closure_threshold is not None:
                if not auto and qty < r.closure_threshold:
                    new_auto = True
                elif auto and r.recovery_threshold is not None and qty >= r.recovery_threshold:
                    new_auto = False
            if r.qty is None:
                conn.execute(text("insert into lending_inventory (security_id, qty, auto_prohibited, changed_at) "
                                  "values (:s, :q, :a, :t)"), {"s": r.id, "q": qty, "a": new_auto, "t": now})
            else:
                conn.execute(text("update lending_inventory set qty = :q, auto_prohibited = :a, changed_at = :t "
                                  "where security_id = :s"), {"s": r.id, "q": qty, "a": new_auto, "t": now})
            if new_auto != auto:
                event = "auto_prohibit" if new_auto else "auto_recover"
                detail = (f"inventory {qty:g} below closure {r.closure_threshold:g}" if new_auto else
                          f"inventory {qty:g} at or above recovery {r.recovery_threshold:g}")
                conn.execute(text("insert into short_sell_history (security_id, ts, event, inventory, detail) "
                                  "values (:s, :t, :e, :q, :d)"), {"s": r.id, "t": now, "e": event, "q": qty,
                                                                    "d": detail})
                moves.append((code, event, qty))
    return moves


def statuses(store: Store) -> dict[str, ShortSellStatus]:
    with store.begin() as conn:
        rows = conn.execute(text(
            "select s.code, coalesce(r.status, 'sellable') as status, r.closure_threshold, r.recovery_threshold, "
            "i.qty, coalesce(i.auto_prohibited, false) as auto from securities s "
            "left join short_sell_rules r on r.security_id = s.id "
            "left join lending_inventory i on i.security_id = s.id")).all()
    return {r.code: ShortSellStatus(r.code, r.status, r.closure_threshold, r.recovery_threshold, r.qty,
                                    bool(r.auto)) for r in rows}


def history(store: Store, code: str) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "select h.ts, h.event, h.inventory, h.detail from short_sell_history h join securities s "
            "on s.id = h.security_id where s.code = :c order by h.id"), {"c": code})]


def _expanding(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)
