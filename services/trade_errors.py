"""Trade-error tickets (RISK_METHODS §7 "Trade errors"): types, L1–L3 severity, review sign-offs by role,
error-account transfer, client notification, P&L resolution with the gains policy, 5-whys root cause.

Severity from the estimated P&L (negative = loss) and the client impact:
  L3  |P&L| > 50,000, or a wrong side on a large position, or several clients hit (2 or more);
  L2  |P&L| 5,000–50,000 (both ends included), or a client impacted / notified;
  L1  |P&L| < 5,000 with no client impact.
A large position is one whose erroneous trade is worth HKD 1,000,000 or more, or one the reporter
marks as large. A supervisor or the CRO may override the computed level, always with a reason.

Review: every ticket by a supervisor; L2 and L3 also by the desk head and compliance; L3 also by the
CRO (the roles follow the level in force, so an override up asks for more). Who may sign for a review
role is `SIGNER_ROLES`; one person signs one role of a ticket and never their own ticket. A ticket
closes only when every review role has signed, its P&L is resolved, its 5-whys root cause is
recorded, an impacted client has been notified and a loss sits in the error account (losses stay
there; a gain follows the policy recorded on the error).

Tickets are operational records: written directly, each change audited in its own transaction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from models import schema as S
from services import audit
from services.auth import AuthError, User
from services.calendar import HK_TZ
from services.store import Store

ERROR_TYPES = {
    "wrong_security": "Wrong security", "wrong_quantity": "Wrong quantity", "wrong_side": "Wrong side",
    "wrong_account": "Wrong account", "duplicate": "Duplicate", "price": "Price type / limit",
    "stale_execution": "Stale / cancelled execution"}
LEVELS = ("L1", "L2", "L3")
L1_BELOW = 5_000.0  # |P&L| below this (and no client impact) is L1
L3_ABOVE = 50_000.0  # |P&L| above this is L3
LARGE_POSITION_HKD = 1_000_000.0  # a wrong side on a trade at least this large is L3
REVIEW_ROLES = {"L1": ("supervisor",), "L2": ("supervisor", "desk_head", "compliance"),
                "L3": ("supervisor", "desk_head", "compliance", "cro")}
REVIEW_LABELS = {"supervisor": "Supervisor", "desk_head": "Desk head", "compliance": "Compliance", "cro": "CRO"}
SIGNER_ROLES = {"supervisor": ("supervisor", "cro"), "desk_head": ("supervisor", "cro"),
                "compliance": ("risk_officer",), "cro": ("cro",)}  # review role → RiskDesk roles that may sign
ROOT_CAUSES = ("people", "process", "system", "external")
GAINS_POLICIES = {"client": "Gain passed to the client", "error_account": "Gain kept in the error account",
                  "charity": "Gain donated to charity"}
LOSS_POLICY = "Loss borne by the firm in the error account"
REPORT_ROLES = ("trader", "risk_officer", "operations", "supervisor", "cro")
WORK_ROLES = ("risk_officer", "operations", "supervisor", "cro")
OVERRIDE_ROLES = ("supervisor", "cro")


class TradeErrorError(ValueError):
    """A ticket action that is not allowed or input that cannot be used; ``field`` names the form field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}" if field_name else message)
        self.field = field_name
        self.message = message


# ---------------------------------------------------------------------- pure rules
def severity(est_pnl: float, client_impact: bool = False, clients_affected: int = 0,
             large_wrong_side: bool = False) -> tuple[str, str]:
    """(level, the §7 rule that decided it)."""
    size = abs(float(est_pnl))
    if size > L3_ABOVE:
        return "L3", f"|P&L| {size:,.2f} > {L3_ABOVE:,.0f}"
    if large_wrong_side:
        return "L3", "wrong side on a large position"
    if clients_affected >= 2:
        return "L3", f"{clients_affected} clients hit"
    if size >= L1_BELOW:
        return "L2", f"|P&L| {size:,.2f} within {L1_BELOW:,.0f}–{L3_ABOVE:,.0f}"
    if client_impact:
        return "L2", "client impacted (notified)"
    return "L1", f"|P&L| {size:,.2f} < {L1_BELOW:,.0f}, no client impact"


def is_large_wrong_side(error_type: str, notional_hkd: float, marked_large: bool) -> bool:
    return error_type == "wrong_side" and (marked_large or abs(notional_hkd) >= LARGE_POSITION_HKD)


def required_reviews(level: str) -> tuple[str, ...]:
    return REVIEW_ROLES[level]


def may_sign(user: User, review_role: str) -> bool:
    return user.role in SIGNER_ROLES.get(review_role, ())


@dataclass
class TradeLeg:
    """One side of the story: the trade as done (erroneous) or as it should have been (correct)."""

    account: str = ""
    code: str = ""
    side: str = "buy"
    qty: float = 0.0
    price: float = 0.0

    @property
    def notional(self) -> float:
        return abs(float(self.qty) * float(self.price))

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "code": self.code, "side": self.side, "qty": self.qty, "price": self.price}


@dataclass
class TradeErrorInput:
    error_type: str
    desk: str
    trade_date: date
    erroneous: TradeLeg
    est_pnl: float
    correct: TradeLeg | None = None
    client_impact: bool = False
    clients_affected: int = 0
    large_position: bool = False
    description: str = ""
    detected_at: datetime | None = None

    def computed(self) -> tuple[str, str]:
        return severity(self.est_pnl, self.client_impact, self.clients_affected,
                        is_large_wrong_side(self.error_type, self.erroneous.notional, self.large_position))


def validate(inp: TradeErrorInput, today: date | None = None) -> None:
    """Raise `TradeErrorError` naming the first wrong field."""
    today = today or datetime.now(HK_TZ).date()
    if inp.error_type not in ERROR_TYPES:
        raise TradeErrorError("Type", f"one of {', '.join(ERROR_TYPES.values())}")
    if not inp.desk.strip():
        raise TradeErrorError("Desk", "which desk made the error")
    if inp.trade_date > today:
        raise TradeErrorError("Trade date", "cannot be in the future")
    leg = inp.erroneous
    if not leg.account.strip():
        raise TradeErrorError("Erroneous account", "the account the trade was done in")
    if not leg.code.strip():
        raise TradeErrorError("Erroneous code", "the security traded")
    if leg.side not in ("buy", "sell"):
        raise TradeErrorError("Erroneous side", "buy or sell")
    if not (math.isfinite(leg.qty) and leg.qty > 0):
        raise TradeErrorError("Erroneous quantity", "a quantity above 0")
    if not (math.isfinite(leg.price) and leg.price > 0):
        raise TradeErrorError("Erroneous price", "a price above 0")
    if inp.correct is not None and inp.correct.side not in ("buy", "sell"):
        raise TradeErrorError("Correct side", "buy or sell")
    if not math.isfinite(float(inp.est_pnl)):
        raise TradeErrorError("Estimated P&L", "a number (negative for a loss)")
    if inp.clients_affected < 0:
        raise TradeErrorError("Clients affected", "0 or more")
    if inp.clients_affected > 0 and not inp.client_impact:
        raise TradeErrorError("Client impact", "tick it: clients are affected")


# ---------------------------------------------------------------------- tickets
def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _need(user: User, roles: tuple[str, ...], what: str) -> None:
    if user.role not in roles:
        raise AuthError(f"{user.login} ({user.role_label}) may not {what}")


def create_ticket(store: Store, user: User, inp: TradeErrorInput, now: datetime | None = None) -> int:
    """A new open ticket with its computed severity; audited."""
    _need(user, REPORT_ROLES, "report trade errors")
    now = _now(now)
    validate(inp, now.astimezone(HK_TZ).date())
    level, why = inp.computed()
    leg = inp.erroneous
    row = {
        "error_type": inp.error_type, "desk": inp.desk.strip(), "account": leg.account.strip(),
        "code": leg.code.strip(), "trade_date": inp.trade_date, "detected_at": inp.detected_at or now,
        "erroneous_trade": json.dumps(leg.as_dict()),
        "correct_trade": json.dumps(inp.correct.as_dict() if inp.correct else {}),
        "est_pnl": float(inp.est_pnl), "client_impact": bool(inp.client_impact),
        "clients_affected": int(inp.clients_affected),
        "large_wrong_side": is_large_wrong_side(inp.error_type, leg.notional, inp.large_position),
        "severity": level, "description": inp.description.strip(), "status": "open", "created_by": user.login}
    with store.begin() as conn:
        new_id = int(conn.execute(insert(S.trade_errors).values(**row).returning(S.trade_errors.c.id)).scalar_one())
        audit.append(conn, store.kind, user.login, "report", "trade_errors", str(new_id), "",
                     f"{ERROR_TYPES[inp.error_type]} · {inp.desk} · est. P&L {inp.est_pnl:,.2f} · {level} ({why})")
    return new_id


def _ticket_row(conn: Connection, error_id: int, lock: bool = True) -> Any:
    if lock and conn.dialect.name == "postgresql":
        q = select(S.trade_errors).where(S.trade_errors.c.id == error_id).with_for_update()
    else:
        q = select(S.trade_errors).where(S.trade_errors.c.id == error_id)
    r = conn.execute(q).first()
    if r is None:
        raise TradeErrorError("", f"trade error {error_id} does not exist")
    return r


def _open_row(conn: Connection, error_id: int) -> Any:
    r = _ticket_row(conn, error_id)
    if r.status != "open":
        raise TradeErrorError("", f"trade error {error_id} is closed")
    return r


def _set(conn: Connection, error_id: int, **values: Any) -> None:
    conn.execute(update(S.trade_errors).where(S.trade_errors.c.id == error_id).values(
        **values, version=S.trade_errors.c.version + 1))


def effective_severity(r: Any) -> str:
    get = r.get if isinstance(r, dict) else lambda k: getattr(r, k)
    return str(get("severity_override") or get("severity"))


def override_severity(store: Store, user: User, error_id: int, level: str | None, reason: str,
                      now: datetime | None = None) -> None:
    """Set (or with ``level`` None clear) the override; a reason is always needed."""
    _need(user, OVERRIDE_ROLES, "override a trade error's severity")
    if level is not None and level not in LEVELS:
        raise TradeErrorError("Severity", f"one of {', '.join(LEVELS)}")
    if not reason.strip():
        raise TradeErrorError("Reason", "an override needs a reason")
    with store.begin() as conn:
        r = _open_row(conn, error_id)
        before = effective_severity(r)
        _set(conn, error_id, severity_override=level, override_reason=reason.strip(),
             severity_override_by=user.login)
        after = level or r.severity
        audit.append(conn, store.kind, user.login, "override_severity", "trade_errors", str(error_id), before,
                     f"{after} (computed {r.severity}): {reason.strip()}")


def transfer_to_error_account(store: Store, user: User, error_id: int, now: datetime | None = None) -> None:
    _need(user, WORK_ROLES, "move a trade to the error account")
    with store.begin() as conn:
        r = _open_row(conn, error_id)
        if r.error_account_transfer:
            raise TradeErrorError("", f"trade error {error_id} is already in the error account")
        _set(conn, error_id, error_account_transfer=True, error_account_at=_now(now))
        audit.append(conn, store.kind, user.login, "error_account", "trade_errors", str(error_id), "", "transferred")


def notify_client(store: Store, user: User, error_id: int, note: str = "", now: datetime | None = None) -> None:
    _need(user, WORK_ROLES, "record a client notification")
    with store.begin() as conn:
        r = _open_row(conn, error_id)
        if r.client_notified:
            raise TradeErrorError("", f"the client of trade error {error_id} was already notified")
        _set(conn, error_id, client_notified=True, client_notified_at=_now(now))
        audit.append(conn, store.kind, user.login, "notify_client", "trade_errors", str(error_id), "", note)


def set_root_cause(store: Store, user: User, error_id: int, whys: list[str], category: str) -> None:
    """The 5 whys (1 to 5 answers, in order) and the root-cause category of the monthly report."""
    _need(user, WORK_ROLES, "record a root cause")
    answers = [w.strip() for w in whys if w.strip()]
    if not answers:
        raise TradeErrorError("Why 1", "answer at least the first why")
    if len(answers) > 5:
        raise TradeErrorError("Why", "five whys at most")
    if category not in ROOT_CAUSES:
        raise TradeErrorError("Root cause", f"one of {', '.join(ROOT_CAUSES)}")
    with store.begin() as conn:
        r = _open_row(conn, error_id)
        _set(conn, error_id, root_cause=json.dumps(answers), root_cause_category=category)
        audit.append(conn, store.kind, user.login, "root_cause", "trade_errors", str(error_id), r.root_cause,
                     json.dumps({"category": category, "whys": answers}))


def resolve_pnl(store: Store, user: User, error_id: int, final_pnl: float, recovery: float, resolution: str,
                gains_policy: str = "", now: datetime | None = None) -> None:
    """The realised P&L, what was recovered and how it was settled; a gain needs a gains policy, a loss
    must already sit in the error account (losses stay there)."""
    _need(user, WORK_ROLES, "resolve a trade error's P&L")
    if not math.isfinite(float(final_pnl)):
        raise TradeErrorError("Final P&L", "a number (negative for a loss)")
    if not math.isfinite(float(recovery)) or recovery < 0:
        raise TradeErrorError("Recovery", "a number ≥ 0")
    if final_pnl < 0 and recovery > -final_pnl:
        raise TradeErrorError("Recovery", f"{recovery:,.2f} exceeds the loss ({-final_pnl:,.2f})")
    if final_pnl >= 0 and recovery:
        raise TradeErrorError("Recovery", "only a loss is recovered")
    if final_pnl > 0 and gains_policy not in GAINS_POLICIES:
        raise TradeErrorError("Gains policy", f"a gain needs a policy: {', '.join(GAINS_POLICIES.values())}")
    if not resolution.strip():
        raise TradeErrorError("Resolution", "say how the P&L was settled")
    policy = gains_policy if final_pnl > 0 else ("loss_error_account" if final_pnl < 0 else "")
    with store.begin() as conn:
        r = _open_row(conn, error_id)
        if final_pnl < 0 and not r.error_account_transfer:
            raise TradeErrorError("Error account", "move the trade to the error account first: losses stay there")
        _set(conn, error_id, final_pnl=float(final_pnl), recovery=float(recovery), pnl_resolution=resolution.strip(),
             gains_policy=policy, resolved_by=user.login, resolved_at=_now(now))
        audit.append(conn, store.kind, user.login, "resolve", "trade_errors", str(error_id), "",
                     f"final P&L {final_pnl:,.2f}, recovery {recovery:,.2f}, {policy or 'flat'}: {resolution.strip()}")


def sign_off(store: Store, user: User, error_id: int, review_role: str, comment: str = "",
             now: datetime | None = None) -> None:
    """One review role's sign-off: the role must be required by the level in force and the signer allowed
    for it, not the reporter, and not already signing another role of this ticket."""
    if review_role not in REVIEW_ROLES["L3"]:
        raise TradeErrorError("Role", f"one of {', '.join(REVIEW_LABELS.values())}")
    if not may_sign(user, review_role):
        raise AuthError(f"{user.login} ({user.role_label}) may not sign as {REVIEW_LABELS[review_role]}")
    with store.begin() as conn:
        r = _open_row(conn, error_id)
        level = effective_severity(r)
        if review_role not in required_reviews(level):
            raise TradeErrorError("Role", f"a {level} error needs no {REVIEW_LABELS[review_role]} sign-off")
        if r.created_by == user.login:
            raise AuthError(f"{user.login} reported trade error {error_id} and cannot sign it off")
        signed = {s.role: s.signed_by for s in conn.execute(select(S.trade_error_signoffs).where(
            S.trade_error_signoffs.c.error_id == error_id))}
        if review_role in signed:
            raise TradeErrorError("Role", f"{REVIEW_LABELS[review_role]} already signed ({signed[review_role]})")
        if user.login in signed.values():
            mine = next(k for k, v in signed.items() if v == user.login)
            raise AuthError(f"{user.login} already signed trade error {error_id} as {REVIEW_LABELS[mine]}: "
                            "one person signs once")
        try:
            with conn.begin_nested():
                conn.execute(insert(S.trade_error_signoffs).values(
                    error_id=error_id, role=review_role, signed_by=user.login, ts=_now(now), comment=comment.strip()))
        except IntegrityError:
            raise TradeErrorError("Role", f"{REVIEW_LABELS[review_role]} was signed meanwhile") from None
        _set(conn, error_id)
        audit.append(conn, store.kind, user.login, "sign_off", "trade_errors", str(error_id), "",
                     f"{REVIEW_LABELS[review_role]} ({level}) {comment.strip()}".strip())


def add_corrective_action(store: Store, user: User, error_id: int, title: str, owner: str, due: date) -> int:
    """A corrective action (`services.actions`) for what the 5 whys found, committed with its audit record."""
    from services import actions

    _need(user, WORK_ROLES, "open corrective actions")
    with store.begin() as conn:
        _ticket_row(conn, error_id, lock=False)
        return actions.create_action(conn, user, "trade_error", error_id, title, owner, due)


def blockers(t: dict[str, Any]) -> list[str]:
    """What still stops a ticket (as returned by `ticket`) from closing; empty when it can close."""
    out = [f"{REVIEW_LABELS[r]} sign-off" for r in t["missing_reviews"]]
    if t["resolved_at"] is None:
        out.append("P&L resolution")
    if not t["whys"] or not t["root_cause_category"]:
        out.append("5-whys root cause")
    if t["client_impact"] and not t["client_notified"]:
        out.append("client notification")
    pnl = t["final_pnl"] if t["final_pnl"] is not None else t["est_pnl"]
    if pnl < 0 and not t["error_account_transfer"]:
        out.append("error-account transfer")
    return out


def close(store: Store, user: User, error_id: int, now: datetime | None = None) -> None:
    _need(user, WORK_ROLES, "close trade errors")
    with store.begin() as conn:
        _open_row(conn, error_id)
        t = _ticket(conn, error_id)
        left = blockers(t)
        if left:
            raise TradeErrorError("", f"trade error {error_id} cannot close yet: {', '.join(left)} outstanding")
        _set(conn, error_id, status="closed", closed_at=_now(now))
        audit.append(conn, store.kind, user.login, "close", "trade_errors", str(error_id), "open", "closed")


# ---------------------------------------------------------------------- reading
def _decorate(r: dict[str, Any], signoffs: list[dict[str, Any]],
              actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    t = dict(r)
    t["actions"] = actions or []
    t["error_type_label"] = ERROR_TYPES.get(t["error_type"], t["error_type"])
    t["effective_severity"] = effective_severity(t)
    t["erroneous"] = json.loads(t.get("erroneous_trade") or "{}")
    t["correct"] = json.loads(t.get("correct_trade") or "{}")
    t["whys"] = json.loads(t.get("root_cause") or "[]")
    t["signoffs"] = signoffs
    need = required_reviews(t["effective_severity"])
    done = {s["role"] for s in signoffs}
    t["required_reviews"] = list(need)
    t["missing_reviews"] = [x for x in need if x not in done]
    t["pnl"] = t["final_pnl"] if t["final_pnl"] is not None else t["est_pnl"]
    t["blockers"] = blockers(t)
    t["reviews_text"] = f"{len(need) - len(t['missing_reviews'])}/{len(need)}"
    return t


def _ticket(conn: Connection, error_id: int) -> dict[str, Any]:
    r = dict(_ticket_row(conn, error_id, lock=False)._mapping)
    s = S.trade_error_signoffs
    signs = [dict(x._mapping) for x in conn.execute(select(s).where(s.c.error_id == error_id).order_by(s.c.id))]
    from services import actions

    return _decorate(r, signs, actions.actions(conn, source_kind="trade_error", source_id=error_id))


def ticket(store: Store, error_id: int) -> dict[str, Any]:
    """One ticket with its sign-offs, the reviews it still needs and what blocks its closing."""
    with store.begin() as conn:
        return _ticket(conn, error_id)


def tickets(store: Store) -> list[dict[str, Any]]:
    """Every ticket, newest first, decorated as `ticket`."""
    t, s = S.trade_errors, S.trade_error_signoffs
    with store.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.id.desc()))]
        by: dict[int, list[dict[str, Any]]] = {}
        for x in conn.execute(select(s).order_by(s.c.id)):
            by.setdefault(int(x.error_id), []).append(dict(x._mapping))
        from services import actions

        acts: dict[int, list[dict[str, Any]]] = {}
        for a in actions.actions(conn, source_kind="trade_error"):
            acts.setdefault(int(a["source_id"]), []).append(a)
    return [_decorate(r, by.get(int(r["id"]), []), acts.get(int(r["id"]))) for r in rows]


@dataclass
class TradeErrorsSnapshot:
    tickets: list[dict[str, Any]]
    desks: list[str]
    user: User
    may_report: bool
    may_work: bool
    may_override: bool
    may_sign: dict[str, bool] = field(default_factory=dict)


def load_snapshot(store: Store, user: User) -> TradeErrorsSnapshot:
    ts = tickets(store)
    desks = sorted({t["desk"] for t in ts} | {"HK equities", "US equities", "Retail dealing"})
    return TradeErrorsSnapshot(ts, desks, user, user.role in REPORT_ROLES, user.role in WORK_ROLES,
                               user.role in OVERRIDE_ROLES, {r: may_sign(user, r) for r in REVIEW_LABELS})


# ---------------------------------------------------------------------- demo
def seed_trade_errors(store: Store, seed: int = 7, months: int = 12, today: date | None = None) -> int:
    """A year of demo tickets and trade counts (`services.trade_errors_demo`)."""
    from services.trade_errors_demo import seed_demo_trade_errors

    return seed_demo_trade_errors(store, seed, months, today)
