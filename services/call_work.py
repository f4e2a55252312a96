"""Working margin calls (issue 8): deadline adjustment, remarks, exceptions, call history, snapshots.

- A call's deadline changes only through a four-eyes change request of kind ``call_deadline`` on the
  call's row; approval writes the new deadline and the live monitor, which reloads on every approved
  request, adopts it from the store (`CallRepository.load_open`).
- Remarks and exceptions are operational records: written directly, each with a ``remark`` /
  ``exception`` / ``exc_cleared`` event in the call's history and an audit record, in one transaction.
- The history shows each call's state before and after every event (the tracker's events, notices,
  remarks, exceptions and approved deadline changes), derived in order from the stored events.
- The snapshots of RISK_METHODS §2 are listed and exported to xlsx (services/excel.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from models import schema as S
from services import audit, changes
from services.auth import AuthError, User, permitted
from services.calendar import HK_TZ, TradingCalendar
from services.store import Store

DEADLINE_KIND = "call_deadline"
WORK_KIND = "margin_call_work"  # permission to send notices, remark and mark exceptions
REMARK_MAX = 2000
ACCOUNT_TYPES = ("cash", "margin", "intraday")


class CallWorkError(RuntimeError):
    """A call-work action cannot be done as asked; the message is for the user."""


def as_utc(v: Any) -> datetime | None:
    """Stored times as aware UTC (SQLite hands back naive UTC, sometimes text)."""
    if v is None or v == "":
        return None
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return v if v.tzinfo else v.replace(tzinfo=UTC)


def _day(v: Any) -> date:
    return v if isinstance(v, date) and not isinstance(v, datetime) else date.fromisoformat(str(v)[:10])


def call_info(conn: Connection, call_id: int) -> dict[str, Any]:
    """One call with its account and client (raises CallWorkError when there is no such call)."""
    mc = S.margin_calls
    r = conn.execute(select(mc, S.accounts.c.code.label("account"), S.accounts.c.type.label("account_type"),
                            S.clients.c.id.label("client_id"), S.clients.c.code.label("client"),
                            S.clients.c.name.label("client_name"), S.clients.c.email.label("client_email"))
                     .join(S.accounts, S.accounts.c.id == mc.c.account_id)
                     .join(S.clients, S.clients.c.id == S.accounts.c.client_id).where(mc.c.id == call_id)).first()
    if r is None:
        raise CallWorkError(f"margin call #{call_id} does not exist")
    out = dict(r._mapping)
    out["deadline"] = _day(r.deadline)
    return out


def open_call_id(store: Store, account_id: int) -> int | None:
    """The account's open call, if any (the alerts dock asks this for the selected account)."""
    with store.begin() as conn:
        v = conn.execute(select(S.margin_calls.c.id).where(and_(
            S.margin_calls.c.account_id == account_id, S.margin_calls.c.state == "open"))).scalar()
    return None if v is None else int(v)


def call_summary(store: Store, call_id: int | None = None, account_id: int | None = None) -> dict[str, Any] | None:
    """A call (by id, or the account's open call) with its active exception, for the action dialogs;
    None when the account has no open call."""
    with store.begin() as conn:
        if call_id is None:
            call_id = conn.execute(select(S.margin_calls.c.id).where(and_(
                S.margin_calls.c.account_id == account_id, S.margin_calls.c.state == "open"))).scalar()
            if call_id is None:
                return None
        info = call_info(conn, int(call_id))
        x = _active_exception(conn, int(call_id))
        pending = [int(r.id) for r in conn.execute(select(S.change_requests.c.id, S.change_requests.c.target_key)
                                                   .where(S.change_requests.c.kind == DEADLINE_KIND,
                                                          S.change_requests.c.status == "pending"))
                   if json.loads(r.target_key).get("id") == call_id]
    info["exception"] = None if x is None else {"reason": x.reason, "by": x.marked_by, "at": as_utc(x.marked_at)}
    info["pending_deadline_request"] = pending[0] if pending else None
    return info


def history_event(conn: Connection, info: dict[str, Any], kind: str, ts: datetime, detail: str,
                  snap: dict[str, Any] | None = None) -> None:
    """A desk action as an event in the call's history, carrying the call's state at that moment."""
    last = conn.execute(select(S.margin_call_events.c.equity, S.margin_call_events.c.im, S.margin_call_events.c.mm)
                        .where(S.margin_call_events.c.call_id == info["id"])
                        .order_by(S.margin_call_events.c.id.desc()).limit(1)).first()
    eq, im, mm = ((snap["equity"], snap["im"], snap["mm"]) if snap else
                  (last.equity, last.im, last.mm) if last else (0.0, 0.0, 0.0))
    conn.execute(insert(S.margin_call_events).values(
        call_id=info["id"], ts=ts, kind=kind, status=info["current_status"], amount=float(info["current_amount"]),
        equity=float(eq), im=float(im), mm=float(mm), detail=detail))


def _may_work(store: Store, user: User) -> None:
    if not permitted(store, user, "request", WORK_KIND):
        raise AuthError(f"{user.login} ({user.role_label}) may not work margin calls")


# ---------------------------------------------------------------------- deadline (four-eyes)
def validate_deadline(value: Any, current: date, today: date, calendar: TradingCalendar) -> tuple[date | None, str]:
    """(new deadline, "") or (None, message naming the field): a trading day, not before today,
    different from the current deadline."""
    try:
        d = _day(value)
    except (TypeError, ValueError):
        return None, f"New deadline: {value!r} is not a date (YYYY-MM-DD)"
    if d < today:
        return None, f"New deadline: {d} is in the past (today is {today})"
    if not calendar.is_trading_day(d):
        return None, f"New deadline: {d} is not a trading day (weekend or holiday)"
    if d == current:
        return None, f"New deadline: {d} is already the call's deadline"
    return d, ""


def request_deadline(store: Store, user: User, call_id: int, new_deadline: Any, reason: str,
                     calendar: TradingCalendar | None = None, today: date | None = None) -> int:
    """Submit a change request moving an open call's deadline; returns the request id."""
    from services.sessions import load_calendar

    cal = calendar or load_calendar(store)
    today = today or datetime.now(HK_TZ).date()
    with store.begin() as conn:
        info = call_info(conn, call_id)
        pending = [r for r in conn.execute(select(S.change_requests.c.id, S.change_requests.c.target_key).where(
            S.change_requests.c.kind == DEADLINE_KIND, S.change_requests.c.status == "pending"))
            if json.loads(r.target_key).get("id") == call_id]
    if info["state"] != "open":
        raise CallWorkError(f"call #{call_id} on {info['account']} is {info['state']}: only an open call's "
                            "deadline can move")
    if pending:
        raise CallWorkError(f"change request #{pending[0].id} to move this call's deadline is already pending")
    d, problem = validate_deadline(new_deadline, info["deadline"], today, cal)
    if d is None:
        raise CallWorkError(problem)
    return changes.submit(store, user, DEADLINE_KIND, {"id": call_id}, {"deadline": d.isoformat()}, reason,
                          context={"account": info["account"], "client": info["client"],
                                   "client_name": info["client_name"], "call_amount": info["current_amount"],
                                   "current_deadline": info["deadline"].isoformat()})


# ---------------------------------------------------------------------- remarks and exceptions
def add_remark(store: Store, user: User, call_id: int, text: str) -> int:
    _may_work(store, user)
    t = (text or "").strip()
    if not t:
        raise CallWorkError("Remark: write what happened (it cannot be empty)")
    if len(t) > REMARK_MAX:
        raise CallWorkError(f"Remark: {len(t):,} characters; at most {REMARK_MAX:,}")
    now = datetime.now(UTC)
    with store.begin() as conn:
        info = call_info(conn, call_id)
        rid = conn.execute(insert(S.margin_call_remarks).values(call_id=call_id, ts=now, author=user.login, text=t)
                           .returning(S.margin_call_remarks.c.id)).scalar_one()
        history_event(conn, info, "remark", now, f"{user.login}: {t}")
        audit.append(conn, store.kind, user.login, "remark", "margin_calls", str(call_id), "", t)
    return int(rid)


def _active_exception(conn: Connection, call_id: int) -> Any:
    e = S.margin_call_exceptions
    return conn.execute(select(e).where(e.c.call_id == call_id, e.c.cleared_at.is_(None))).first()


def mark_exception(store: Store, user: User, call_id: int, reason: str) -> int:
    """Mark an open call as an exception (e.g. funds in transit confirmed by the bank) with a reason."""
    _may_work(store, user)
    why = (reason or "").strip()
    if not why:
        raise CallWorkError("Reason: say why this call is an exception")
    now = datetime.now(UTC)
    try:
        with store.begin() as conn:
            info = call_info(conn, call_id)
            if info["state"] != "open":
                raise CallWorkError(f"call #{call_id} on {info['account']} is {info['state']}: only open calls "
                                    "are marked as exceptions")
            if _active_exception(conn, call_id) is not None:
                raise CallWorkError(f"call #{call_id} on {info['account']} is already an exception")
            xid = conn.execute(insert(S.margin_call_exceptions).values(
                call_id=call_id, marked_at=now, marked_by=user.login, reason=why)
                .returning(S.margin_call_exceptions.c.id)).scalar_one()
            history_event(conn, info, "exception", now, f"{user.login}: {why}")
            audit.append(conn, store.kind, user.login, "mark_exception", "margin_calls", str(call_id), "", why)
    except IntegrityError:  # another workstation marked it at the same moment
        raise CallWorkError(f"call #{call_id} is already an exception") from None
    return int(xid)


def clear_exception(store: Store, user: User, call_id: int, reason: str) -> None:
    _may_work(store, user)
    why = (reason or "").strip()
    if not why:
        raise CallWorkError("Reason: say why the exception ends")
    now = datetime.now(UTC)
    with store.begin() as conn:
        info = call_info(conn, call_id)
        x = _active_exception(conn, call_id)
        if x is None:
            raise CallWorkError(f"call #{call_id} on {info['account']} is not an exception")
        conn.execute(update(S.margin_call_exceptions).where(S.margin_call_exceptions.c.id == x.id).values(
            cleared_at=now, cleared_by=user.login, clear_reason=why))
        history_event(conn, info, "exc_cleared", now, f"{user.login}: {why}")
        audit.append(conn, store.kind, user.login, "clear_exception", "margin_calls", str(call_id), x.reason, why)


def _call_columns() -> list[Any]:
    mc = S.margin_calls
    return [mc.c.state, mc.c.current_status, mc.c.current_amount, mc.c.deadline,
            mc.c.opened_at, S.accounts.c.code.label("account"), S.accounts.c.type.label("account_type"),
            S.clients.c.code.label("client"), S.clients.c.name.label("client_name")]


def _join_call(q: Any, on: Any) -> Any:
    return (q.join(S.margin_calls, S.margin_calls.c.id == on)
            .join(S.accounts, S.accounts.c.id == S.margin_calls.c.account_id)
            .join(S.clients, S.clients.c.id == S.accounts.c.client_id))


def exceptions(store: Store, active_only: bool = True, limit: int = 5000) -> list[dict[str, Any]]:
    """The exceptions list: each marked call with its account, amount, deadline and reason."""
    e = S.margin_call_exceptions
    q = _join_call(select(e, *_call_columns()).select_from(e), e.c.call_id).order_by(e.c.marked_at.desc())
    if active_only:
        q = q.where(e.c.cleared_at.is_(None))
    with store.begin() as conn:
        rows = conn.execute(q.limit(limit)).all()
    return [{**r._mapping, "marked_at": as_utc(r.marked_at), "cleared_at": as_utc(r.cleared_at),
             "deadline": str(r.deadline), "active": r.cleared_at is None} for r in rows]


def remarks(store: Store, call_id: int) -> list[dict[str, Any]]:
    r_ = S.margin_call_remarks
    with store.begin() as conn:
        rows = conn.execute(select(r_).where(r_.c.call_id == call_id).order_by(r_.c.ts.desc(), r_.c.id.desc())).all()
    return [{**r._mapping, "ts": as_utc(r.ts)} for r in rows]


# ---------------------------------------------------------------------- history
def _bounds(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """Hong Kong calendar days as UTC instants [since 00:00 HKT, until+1 00:00 HKT)."""
    lo = datetime.combine(since, time(0), HK_TZ).astimezone(UTC) if since else None
    hi = datetime.combine(until + timedelta(days=1), time(0), HK_TZ).astimezone(UTC) if until else None
    return lo, hi


def _state_text(s: dict[str, Any]) -> str:
    if not s:
        return "—"
    if s["state"] != "open":
        return s["state"]
    return (f"{s['status']} · {s['amount']:,.2f} · due {s['deadline']}"
            + (" · exception" if s["exception"] else ""))


def call_history(store: Store, call_id: int | None = None, account: str | None = None,
                 since: date | None = None, until: date | None = None, limit: int = 5000) -> list[dict[str, Any]]:
    """Every event of the matching calls with the call's state before and after it, newest first.

    The state (open/met/closed, status, amount, deadline, exception) is replayed from each call's
    first event, so an event in the date window still shows what came before it. Approved deadline
    requests appear as ``deadline`` events at their decision time, by maker → checker."""
    ev = S.margin_call_events
    q = _join_call(select(ev, *_call_columns()).select_from(ev), ev.c.call_id)
    if call_id is not None:
        q = q.where(ev.c.call_id == call_id)
    if account:
        q = q.where(S.accounts.c.code == account.strip().upper())
    lo, hi = _bounds(since, until)
    with store.begin() as conn:
        rows = conn.execute(q.order_by(ev.c.call_id, ev.c.ts, ev.c.id)).all()
        calls = {int(r.call_id) for r in rows}
        moves: dict[int, list[dict[str, Any]]] = {}
        for r in conn.execute(select(S.change_requests).where(S.change_requests.c.kind == DEADLINE_KIND,
                                                              S.change_requests.c.status == "approved")):
            cid = int(json.loads(r.target_key).get("id", -1))
            if cid in calls:
                moves.setdefault(cid, []).append({
                    "ts": as_utc(r.decided_at), "from": json.loads(r.before).get("deadline"),
                    "to": json.loads(r.after).get("deadline"), "by": f"{r.maker} → {r.checker}",
                    "request": int(r.id), "reason": r.reason})
    out: list[dict[str, Any]] = []
    by_call: dict[int, list[Any]] = {}
    for r in rows:
        by_call.setdefault(int(r.call_id), []).append(r)
    for cid, evs in by_call.items():
        first = evs[0]
        dmoves = sorted(moves.get(cid, []), key=lambda m: m["ts"])
        deadline = dmoves[0]["from"] if dmoves else str(first.deadline)
        items: list[tuple[datetime, int, Any]] = [(as_utc(r.ts), 0, r) for r in evs]  # type: ignore[misc]
        items += [(m["ts"], 1, m) for m in dmoves]
        items.sort(key=lambda x: (x[0], x[1]))
        state: dict[str, Any] = {}
        for ts, is_move, x_ in items:
            x: Any = x_
            before = dict(state)
            if is_move:
                state["deadline"] = x["to"]
                rec = {"kind": "deadline", "detail": f"request #{x['request']} by {x['by']}: {x['reason']}"}
            else:
                if x.kind == "open":
                    state = {"state": "open", "deadline": deadline, "exception": False}
                if x.kind in ("met", "closed", "liquidated"):
                    state["state"] = x.kind
                if x.kind == "exception":
                    state["exception"] = True
                elif x.kind == "exc_cleared":
                    state["exception"] = False
                state.update(status=x.status, amount=float(x.amount))
                state.setdefault("state", "open")
                state.setdefault("deadline", deadline)
                state.setdefault("exception", False)
                rec = {"kind": x.kind, "detail": x.detail or ""}
            if (lo and ts < lo) or (hi and ts >= hi):
                continue
            out.append({"call_id": cid, "account": first.account, "client": first.client, "ts": ts, **rec,
                        "before": _state_text(before), "after": _state_text(state),
                        "amount_before": before.get("amount"), "amount_after": state.get("amount"),
                        "status_before": before.get("status", ""), "status_after": state.get("status", ""),
                        "deadline_before": before.get("deadline", ""), "deadline_after": state.get("deadline", "")})
    out.sort(key=lambda h: h["ts"], reverse=True)
    for i, h in enumerate(out[:limit]):
        h["id"] = i
    return out[:limit]


# ---------------------------------------------------------------------- snapshots
def snapshots(store: Store, call_id: int | None = None, account: str | None = None, since: date | None = None,
              until: date | None = None, limit: int = 2000, ids: list[int] | None = None) -> list[dict[str, Any]]:
    """The stored snapshots (trigger, force, notice, eod, end), newest first, with their headline figures."""
    sn = S.margin_call_snapshots
    q = _join_call(select(sn, *_call_columns()).select_from(sn), sn.c.call_id)
    if ids is not None:
        q = q.where(sn.c.id.in_(ids))
    if call_id is not None:
        q = q.where(sn.c.call_id == call_id)
    if account:
        q = q.where(S.accounts.c.code == account.strip().upper())
    lo, hi = _bounds(since, until)
    if lo:
        q = q.where(sn.c.ts >= lo)
    if hi:
        q = q.where(sn.c.ts < hi)
    with store.begin() as conn:
        rows = conn.execute(q.order_by(sn.c.ts.desc(), sn.c.id.desc()).limit(limit)).all()
    out = []
    for r in rows:
        p = json.loads(r.payload)
        out.append({"id": int(r.id), "call_id": int(r.call_id), "account": r.account, "client": r.client,
                    "client_name": r.client_name, "kind": r.kind, "ts": as_utc(r.ts), "status": p.get("status", ""),
                    "equity": p.get("equity"), "im": p.get("im"), "mm": p.get("mm"), "loan": p.get("loan"),
                    "call_amount": p.get("call_amount"), "positions": len(p.get("positions", [])), "payload": p})
    return out


def export_snapshots(store: Store, snapshot_ids: Iterable[int], path: str | Path, actor: str = "system") -> int:
    """Write the snapshots (one row each), their positions and cash to an xlsx; returns the count."""
    from services.excel import write_sheets

    ids = sorted({int(i) for i in snapshot_ids})
    if not ids:
        raise CallWorkError("no snapshot to export: select or filter some first")
    recs = sorted(snapshots(store, ids=ids, limit=len(ids)), key=lambda r: r["id"])
    heads = ["Snapshot", "Call", "Account", "Client", "Client name", "Kind", "Time (HKT)", "Status", "Equity",
             "IM", "MM", "Loan", "Call amount", "Positions"]
    rows = [[r["id"], r["call_id"], r["account"], r["client"], r["client_name"], r["kind"],
             r["ts"].astimezone(HK_TZ).replace(tzinfo=None) if r["ts"] else None, r["status"], r["equity"], r["im"],
             r["mm"], r["loan"], r["call_amount"], r["positions"]] for r in recs]
    pos = [[r["id"], r["account"], p["code"], p["qty"], p["price"], p["mv"], p["im_ratio"], p["mm_ratio"]]
           for r in recs for p in r["payload"].get("positions", [])]
    cash = [[r["id"], r["account"], c, v] for r in recs for c, v in r["payload"].get("cash", {}).items()]
    write_sheets(path, [
        ("Snapshots", heads, rows),
        ("Positions", ["Snapshot", "Account", "Code", "Qty", "Price", "MV (HKD)", "IM ratio", "MM ratio"], pos),
        ("Cash", ["Snapshot", "Account", "Currency", "Amount"], cash)])
    audit.record(store, actor, "export", "margin_call_snapshots", ",".join(map(str, ids[:50])), "", str(path))
    return len(rows)



# ---------------------------------------------------------------------- demo
class _DemoUnreachableGateway:
    """The demo's second channel: a mail gateway that is down, so the outbox shows a failed notice."""

    channel = "smtp"

    def send(self, message: Any, notice_id: int) -> str:
        raise ConnectionRefusedError("mail gateway smtp.riskdesk.invalid:25 refused the connection")


def seed_demo_call_work(store: Store, now: float | None = None) -> int:
    """Open the demo book's margin calls (as the live monitor would on its first recalculation) and
    work some of them: notices (one failed), remarks and exceptions. Returns the calls opened.
    No change requests: the demo's request history stays as services/demo_store.py made it."""
    import time as _time

    import numpy as np

    from services import notices
    from services.auth import User
    from services.margin import MarginEngine
    from services.margin_calls import CallRepository, CallTracker
    from services.sessions import load_calendar

    with store.begin() as conn:
        if conn.execute(select(S.margin_calls.c.id).limit(1)).first() is not None:
            return 0
    book = store.load_book()
    if book.acct_ids is None or book.n_acct == 0:
        return 0
    ts = _time.time() if now is None else now
    engine = MarginEngine(book)
    tracker = CallTracker(book.n_acct, load_calendar(store), int(book.parameter("call_deadline_days")))
    repo = CallRepository(store, book.acct_ids)
    repo.write(tracker.update(engine, np.arange(book.n_acct), ts))
    opened = sorted(repo.call_ids.items(), key=lambda kv: -float(tracker.amount[kv[0]]))
    rita, tom = User("rita", "Rita Chan", "risk_officer"), User("tom", "Tom Ho", "trader")
    from services.margin_calls import snapshot

    for i, (a, call_id) in enumerate(opened[:6]):
        sender = _DemoUnreachableGateway() if i == 4 else None
        typed = None if book.client_email(a) else f"{book.client_codes[a].lower()}@clients.example.com"
        notices.send_notice(store, rita if i % 2 == 0 else tom, call_id, sender=sender, recipient=typed,
                            snapshot_payload=snapshot(engine, a, ts))
    texts = ("Client called: top-up of the full amount by telegraphic transfer today",
             "Left a voicemail; e-mail notice sent again", "Client disputes the valuation of a suspended stock")
    for (_a, call_id), t in zip(opened[:3], texts, strict=False):
        add_remark(store, rita, call_id, t)
    for (_a, call_id), why in zip(opened[1:3], ("Funds in transit, bank confirmation seen (ref TT-2231)",
                                                "Group treasury guarantee on file until month end"), strict=False):
        mark_exception(store, rita, call_id, why)
    return len(opened)


def call_records(store: Store, call_id: int) -> dict[str, Any]:
    """Everything the drill-down shows of one call besides its snapshots: notices, remarks, history."""
    from services import notices

    return {"call_id": call_id, "notices": notices.outbox(store, call_id=call_id), "remarks": remarks(store, call_id),
            "history": call_history(store, call_id=call_id),
            "exceptions": [x for x in exceptions(store, active_only=False) if x["call_id"] == call_id],
            "snapshot_ids": [s["id"] for s in snapshots(store, call_id=call_id, limit=100_000)]}
