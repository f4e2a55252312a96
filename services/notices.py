"""Margin-call notices to clients (issue 8, "send notice"): templated, kept in an outbox, delivered by a
pluggable sender, each with the snapshot of RISK_METHODS §2 taken when it is sent.

A notice is written in two steps on purpose. First, in one transaction: the notice row (status
``queued``) with the text exactly as the client will read it, the "notice" snapshot of the account,
a ``notice`` event in the call's history and an audit record. Then the sender delivers it and a second
transaction marks it ``sent`` (with where it went) or ``failed`` (with the sender's error). A crash
between the two leaves a queued notice that Resend delivers: never a sent message without a record.

Senders implement `NoticeSender`; the default `EmlSender` writes RFC-822 ``.eml`` files
(`email.message.EmailMessage`) to a folder (``$RISKDESK_NOTICE_FOLDER``, else ``notices/`` under the
RiskDesk home), which a mail gateway or a person can pick up.
"""

from __future__ import annotations

import email.policy
import json
import os
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email.errors import InvalidHeaderDefect
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select, update

from models import schema as S
from models.book import email_address
from services import audit, changes
from services.auth import AuthError, User, permitted
from services.calendar import HK_TZ, RESOURCES
from services.call_work import WORK_KIND, CallWorkError, as_utc, call_info, history_event
from services.store import Store, user_data_dir

TEMPLATES = RESOURCES / "templates"
DEFAULT_TEMPLATE = "margin_call_notice"
DEFAULT_FROM = "RiskDesk margin desk <margin-desk@riskdesk.invalid>"
FIRM = "RiskDesk Securities Limited"
STATUSES = ("queued", "sent", "failed")
MAX_RECIPIENT = 320  # characters of the To field (the outbox column's size)
EMAIL_KIND = "client_email"  # the change request that keeps a typed address as the client's


class NoticeError(CallWorkError):
    """A notice cannot be made or delivered as asked; the message says why."""


# ---------------------------------------------------------------------- templates
def template_names() -> list[str]:
    """The shipped notice templates (resources/templates/*.txt), default first."""
    names = sorted(p.stem for p in TEMPLATES.glob("*.txt"))
    return sorted(names, key=lambda n: n != DEFAULT_TEMPLATE)


def load_template(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]+", name or ""):
        raise NoticeError(f"template name {name!r}: letters, digits and '_' only")
    path = TEMPLATES / f"{name}.txt"
    if not path.is_file():
        raise NoticeError(f"no notice template {name!r} (looked for {path})")
    return path.read_text(encoding="utf-8")


def _money(v: Any) -> str:
    return f"{float(v):,.2f}"


def notice_fields(info: dict[str, Any], snap: dict[str, Any] | None) -> dict[str, str]:
    """The values a template may use: $account $client $client_name $call_amount $deadline $status
    $equity $mm $im $opened $currency $firm."""
    opened = as_utc(info["opened_at"])
    return {
        "account": info["account"], "client": info["client"], "client_name": info["client_name"],
        "call_amount": _money(info["current_amount"]), "deadline": str(info["deadline"]),
        "status": "force call" if info["current_status"] == "force" else "margin call",
        "equity": _money((snap or {}).get("equity", 0.0)), "mm": _money((snap or {}).get("mm", 0.0)),
        "im": _money((snap or {}).get("im", 0.0)),
        "opened": opened.astimezone(HK_TZ).strftime("%Y-%m-%d %H:%M HKT") if opened else "",
        "currency": "HKD", "firm": FIRM,
    }


def render(template_text: str, fields: dict[str, str]) -> tuple[str, str]:
    """(subject, body): the first line ``Subject: …`` is the subject. A placeholder the template
    uses but no field provides is an error naming it (no half-filled notice goes out)."""
    try:
        text = string.Template(template_text).substitute(fields)
    except KeyError as e:
        raise NoticeError(f"the template uses ${e.args[0]}, which a notice does not provide") from None
    except ValueError as e:
        raise NoticeError(f"the template is malformed: {e}") from None
    first, _, rest = text.partition("\n")
    if not first.lower().startswith("subject:"):
        raise NoticeError("a notice template starts with a 'Subject: …' line")
    return first[len("subject:"):].strip(), rest.lstrip("\n")


def default_recipient(info: dict[str, Any]) -> str:
    """``Name <address>`` from the client's e-mail on file; "" when none is on file."""
    addr = str(info.get("client_email") or "")
    if not addr:
        return ""
    return _address(str(info.get("client_name") or ""), addr)


def _address(name: str, addr: str) -> str:
    """``Name <addr>``, the name quoted and escaped where the header needs it (a non-ASCII name stays
    readable here; the message header encodes it)."""
    return str(Address(display_name=name.strip(), addr_spec=addr)) if name.strip() else addr


def validate_recipient(text: str, info: dict[str, Any] | None = None) -> tuple[str, str]:
    """(normalised recipient, "") or ("", message) for the To field (``info``: the call, to name
    its client when no address was given). Exactly one address, as typed: a second address, a group
    or a comment is refused rather than dropped."""
    t = (text or "").strip()
    if not t:
        if info is not None and not info.get("client_email"):
            return "", f"To: client {info['client']} has no e-mail on file; type the address the notice goes to"
        return "", "To: the client's e-mail address is required"
    if "\n" in t or "\r" in t:
        return "", "To: one line only"
    if len(t) > MAX_RECIPIENT:
        return "", f"To: longer than {MAX_RECIPIENT} characters"
    bad = f"To: {t!r} is not one e-mail address (name <user@domain.com>)"
    try:
        header = email.policy.default.header_factory("To", t)
    except Exception:  # the parser's own errors: not an address either
        return "", bad
    groups = header.groups
    if (len(groups) != 1 or groups[0].display_name is not None or len(groups[0].addresses) != 1
            or any(isinstance(d, InvalidHeaderDefect) for d in header.defects)):
        return "", bad
    parsed = groups[0].addresses[0]
    addr = email_address(parsed.addr_spec)
    if not addr or parsed.addr_spec not in t:  # a comment inside the address would be dropped
        return "", bad
    out = _address(parsed.display_name, addr)
    return (out, "") if len(out) <= MAX_RECIPIENT else ("", f"To: longer than {MAX_RECIPIENT} characters")


def preview(store: Store, call_id: int, template: str = DEFAULT_TEMPLATE,
            snapshot_payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """What Send notice would send now (the dialog shows it): subject, body, default recipient."""
    with store.begin() as conn:
        info = call_info(conn, call_id)
    subject, body = render(load_template(template), notice_fields(info, snapshot_payload))
    return {"call": info, "subject": subject, "body": body, "recipient": default_recipient(info)}


# ---------------------------------------------------------------------- senders
class NoticeSender(Protocol):
    """Delivers one notice; returns where it went (a file, a message id). Raise to fail it."""

    channel: str

    def send(self, message: EmailMessage, notice_id: int) -> str: ...


def default_notice_folder() -> Path:
    env = os.environ.get("RISKDESK_NOTICE_FOLDER")
    return Path(env) if env else user_data_dir() / "notices"


class EmlSender:
    """Writes each notice as an RFC-822 ``.eml`` file (CRLF line ends) into ``folder``."""

    channel = "eml"

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder else default_notice_folder()

    def send(self, message: EmailMessage, notice_id: int) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        account = re.sub(r"[^A-Za-z0-9_-]", "_", str(message.get("X-RiskDesk-Account", "")))
        path = self.folder / f"notice-{notice_id:06d}-{account}.eml"
        tmp = path.with_suffix(".eml.tmp")
        tmp.write_bytes(message.as_bytes(policy=email.policy.SMTP))
        os.replace(tmp, path)
        return str(path)


# ---------------------------------------------------------------------- the outbox
@dataclass
class Notice:
    id: int
    call_id: int
    account: str
    recipient: str
    subject: str
    body: str
    call_amount: float
    deadline: date
    status: str
    error: str
    location: str
    attempts: int
    snapshot_id: int | None
    address_request: int | None = None  # the change request to keep the typed address (send_notice)


def _row_notice(r: Any) -> Notice:
    d = r.deadline if isinstance(r.deadline, date) else date.fromisoformat(str(r.deadline))
    return Notice(int(r.id), int(r.call_id), str(r.account), r.recipient, r.subject, r.body,
                  float(r.call_amount), d, r.status, r.error or "", r.location or "", int(r.attempts),
                  r.snapshot_id)


def _notice_row(conn: Connection, notice_id: int) -> Any:
    r = conn.execute(select(S.margin_call_notices, S.accounts.c.code.label("account")).join(
        S.margin_calls, S.margin_calls.c.id == S.margin_call_notices.c.call_id).join(
        S.accounts, S.accounts.c.id == S.margin_calls.c.account_id).where(
        S.margin_call_notices.c.id == notice_id)).first()
    if r is None:
        raise NoticeError(f"notice #{notice_id} does not exist")
    return r


def _message(n: Notice, sender_from: str = DEFAULT_FROM) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender_from
    msg["To"] = n.recipient
    msg["Subject"] = n.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid("notice-" + str(n.id), "riskdesk.invalid")
    msg["X-RiskDesk-Notice"] = str(n.id)
    msg["X-RiskDesk-Call"] = str(n.call_id)
    msg["X-RiskDesk-Account"] = n.account
    msg.set_content(n.body)
    return msg


def _check_permitted(store: Store, user: User) -> None:
    if not permitted(store, user, "request", WORK_KIND):
        raise AuthError(f"{user.login} ({user.role_label}) may not work margin calls")


def send_notice(store: Store, user: User, call_id: int, sender: NoticeSender | None = None,
                recipient: str | None = None, template: str = DEFAULT_TEMPLATE,
                snapshot_payload: dict[str, Any] | None = None,
                snapshot_of: Callable[[str, float], dict[str, Any]] | None = None,
                keep_address: bool = False) -> Notice:
    """Queue a notice for an open call (with its snapshot, history event and audit record), then
    deliver it. ``snapshot_payload`` is the account's snapshot taken by the caller (the live engine,
    under its lock); without it the snapshot is computed from the store's book. With ``keep_address``
    an address other than the one on file also becomes a four-eyes request (kind ``client_email``)
    to keep it as the client's, written with the notice: the returned notice's ``address_request``."""
    _check_permitted(store, user)
    if keep_address and not permitted(store, user, "request", EMAIL_KIND):
        raise NoticeError(f"{user.login} ({user.role_label}) may not ask to change a client's e-mail on file: "
                          "send without keeping the address")
    text = load_template(template)
    now = datetime.now(UTC)
    with store.begin() as conn:
        info = call_info(conn, call_id)
    if info["state"] != "open":
        raise NoticeError(f"call #{call_id} on {info['account']} is {info['state']}: notices go to open calls only")
    snap = snapshot_payload or (snapshot_of or _store_snapshot(store))(info["account"], now.timestamp())
    to, problem = validate_recipient(recipient if recipient is not None else default_recipient(info), info)
    if problem:
        raise NoticeError(problem)
    subject, body = render(text, notice_fields(info, snap))
    with store.begin() as conn:
        info = call_info(conn, call_id)  # re-read inside the transaction: still open?
        if info["state"] != "open":
            raise NoticeError(f"call #{call_id} on {info['account']} was {info['state']} meanwhile")
        snap_id = conn.execute(insert(S.margin_call_snapshots).values(
            call_id=call_id, ts=now, kind="notice", payload=json.dumps(snap, separators=(",", ":"))
        ).returning(S.margin_call_snapshots.c.id)).scalar_one()
        notice_id = conn.execute(insert(S.margin_call_notices).values(
            call_id=call_id, created_at=now, created_by=user.login, template=template, recipient=to,
            subject=subject, body=body, call_amount=round(float(info["current_amount"]), 2), deadline=info["deadline"],
            status="queued", snapshot_id=snap_id).returning(S.margin_call_notices.c.id)).scalar_one()
        history_event(conn, info, "notice", now, f"notice #{notice_id} to {to} by {user.login}", snap)
        audit.append(conn, store.kind, user.login, "queue_notice", "margin_call_notices", str(notice_id), "",
                     json.dumps({"call": call_id, "account": info["account"], "to": to,
                                 "amount": info["current_amount"], "deadline": str(info["deadline"])}))
        request = None
        if keep_address and (addr := parseaddr(to)[1]) != info.get("client_email"):
            request = changes.submit(
                store, user, EMAIL_KIND, {"id": int(info["client_id"])}, {"email": addr},
                f"address typed for margin-call notice #{notice_id}", conn=conn,
                context={"client": f"{info['client']} · {info['client_name']}", "account": info["account"],
                         "notice": f"#{notice_id}"})
    return replace(deliver(store, user, int(notice_id), sender), address_request=request)


def deliver(store: Store, user: User, notice_id: int, sender: NoticeSender | None = None) -> Notice:
    """Hand a queued or failed notice to the sender; record sent (where) or failed (the error)."""
    _check_permitted(store, user)
    sender = sender if sender is not None else EmlSender()
    with store.begin() as conn:
        n = _row_notice(_notice_row(conn, notice_id))
    if n.status == "sent":
        raise NoticeError(f"notice #{notice_id} was already sent ({n.location})")
    try:
        location, error, status = sender.send(_message(n), notice_id), "", "sent"
    except Exception as e:  # any sender failure is the notice's status, not a crash
        location, error, status = "", f"{type(e).__name__}: {e}", "failed"
    now = datetime.now(UTC)
    with store.begin() as conn:
        conn.execute(update(S.margin_call_notices).where(S.margin_call_notices.c.id == notice_id).values(
            status=status, error=error, location=location, channel=getattr(sender, "channel", type(sender).__name__),
            attempts=S.margin_call_notices.c.attempts + 1, sent_at=now if status == "sent" else None))
        audit.append(conn, store.kind, user.login, "notice_" + status, "margin_call_notices", str(notice_id),
                     n.status, json.dumps({"status": status, "location": location, "error": error}))
        return _row_notice(_notice_row(conn, notice_id))


def resend_failed(store: Store, user: User, sender: NoticeSender | None = None,
                  notice_ids: list[int] | None = None) -> list[Notice]:
    """Deliver again every failed (or still queued) notice, or the ones named."""
    with store.begin() as conn:
        q = select(S.margin_call_notices.c.id).where(S.margin_call_notices.c.status.in_(("failed", "queued")))
        if notice_ids is not None:
            q = q.where(S.margin_call_notices.c.id.in_(notice_ids))
        ids = [int(i) for i in conn.execute(q.order_by(S.margin_call_notices.c.id)).scalars()]
    return [deliver(store, user, i, sender) for i in ids]


def outbox(store: Store, status: str | None = None, call_id: int | None = None, limit: int = 5000
           ) -> list[dict[str, Any]]:
    """Notices newest first (optionally of one status or one call), as records for a table."""
    n = S.margin_call_notices
    q = (select(n, S.accounts.c.code.label("account"), S.clients.c.code.label("client"),
                S.clients.c.name.label("client_name"))
         .join(S.margin_calls, S.margin_calls.c.id == n.c.call_id)
         .join(S.accounts, S.accounts.c.id == S.margin_calls.c.account_id)
         .join(S.clients, S.clients.c.id == S.accounts.c.client_id).order_by(n.c.id.desc()).limit(limit))
    if status:
        q = q.where(n.c.status == status)
    if call_id is not None:
        q = q.where(n.c.call_id == call_id)
    with store.begin() as conn:
        rows = conn.execute(q).all()
    return [{**{k: v for k, v in r._mapping.items() if k != "body"}, "body": r.body,
             "created_at": as_utc(r.created_at), "sent_at": as_utc(r.sent_at), "deadline": str(r.deadline)}
            for r in rows]


def _store_snapshot(store: Store) -> Callable[[str, float], dict[str, Any]]:
    """The §2 snapshot computed from the store's book (headless use: no live engine at hand)."""

    def take(account: str, ts: float) -> dict[str, Any]:
        from services.margin import MarginEngine
        from services.margin_calls import snapshot

        book = store.load_book()
        a = book.acct_index.get(account)
        if a is None:
            raise NoticeError(f"account {account} is not in the book")
        return snapshot(MarginEngine(book), a, ts)

    return take
