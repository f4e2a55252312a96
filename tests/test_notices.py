"""Working margin calls on real stores: notices (template, outbox, .eml file, snapshot, failing sender),
deadline adjustment through four eyes reaching the live monitor, remarks, exceptions, the call history
with each call's state before and after, and the snapshots exported to xlsx.

The book: M1 holds 1,000 A.HK at 100 (IM 50 %, MM 40 %) with cash −65,000, so E = 35,000,
IM = 50,000, MM = 40,000: a margin call of IM − E = 15,000.00. M2 is safe.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from models import schema as S
from services import audit, auth, call_work, changes, notices
from services.auth import AuthError
from services.calendar import HK_TZ, TradingCalendar, shipped_holidays
from services.live import LiveMonitor
from services.margin import MarginEngine
from services.margin_calls import CallRepository, CallTracker
from services.store import Store
from tests.test_four_eyes import _as, _seed_users
from tests.test_margin_formulas import _acct, make_book

CAL = TradingCalendar(d for d, _ in shipped_holidays())


def _book() -> Any:
    m1 = {**_acct("M1", -65_000), "client_name": "Chan Tai Man", "client_email": "chan.tai.man@example.hk"}
    return make_book([m1, _acct("M2", 500_000)], [("M1", "A.HK", 1000), ("M2", "A.HK", 1000)])


def _open_call(store: Store) -> tuple[int, date]:
    """Open M1's call as the live monitor does (tracker + repository), at the current time."""
    store.save_book(_book())
    book = store.load_book()
    engine = MarginEngine(book)
    tracker = CallTracker(book.n_acct, CAL, 3)
    assert book.acct_ids is not None
    repo = CallRepository(store, book.acct_ids)
    repo.write(tracker.update(engine, np.arange(book.n_acct), datetime.now(HK_TZ).timestamp()))
    assert list(repo.call_ids) == [0]
    deadline = CAL.add_trading_days(datetime.now(HK_TZ).date(), 3)
    return repo.call_ids[0], deadline


@pytest.fixture
def local(sqlite_url: str) -> Iterator[tuple[Store, dict[str, auth.User], int, date]]:
    st = Store(sqlite_url)
    st.migrate()
    users = _seed_users(st)
    call_id, deadline = _open_call(st)
    yield st, users, call_id, deadline
    st.dispose()


class BrokenGateway:
    channel = "smtp"

    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: EmailMessage, notice_id: int) -> str:
        self.calls += 1
        raise ConnectionRefusedError("gateway down")


def _check_notice(store: Store, user: auth.User, call_id: int, deadline: date, folder: Path) -> None:
    n = notices.send_notice(store, user, call_id, sender=notices.EmlSender(folder))
    assert n.status == "sent" and n.attempts == 1 and n.error == ""
    assert n.call_amount == 15_000.0 and n.deadline == deadline
    assert "15,000.00" in n.subject and str(deadline) in n.subject and "M1" in n.subject
    assert n.body.startswith("Dear Chan Tai Man,") and f"Settle by (deadline):  {deadline}" in n.body
    assert "Equity:                HKD 35,000.00" in n.body and "HKD 40,000.00" in n.body
    # the .eml file: a real RFC-822 message with the same text
    path = Path(n.location)
    assert path.parent == folder and path.name == f"notice-{n.id:06d}-M1.eml"
    raw = path.read_bytes()
    assert b"\r\n" in raw  # CRLF line ends
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["To"] == "Chan Tai Man <chan.tai.man@example.hk>" and msg["X-RiskDesk-Call"] == str(call_id)
    assert msg["Subject"] == n.subject
    assert "HKD 15,000.00" in msg.get_body().get_content()  # type: ignore[union-attr]
    # in the outbox, with the snapshot taken at send and a notice event in the history
    box = notices.outbox(store)
    assert [(r["id"], r["status"], r["account"], r["call_amount"]) for r in box] == [(n.id, "sent", "M1", 15_000.0)]
    with store.begin() as conn:
        snap = conn.execute(select(S.margin_call_snapshots).where(
            S.margin_call_snapshots.c.id == n.snapshot_id)).one()
    assert snap.kind == "notice" and snap.call_id == call_id
    snaps = call_work.snapshots(store, call_id=call_id)
    assert [s["kind"] for s in snaps] == ["notice", "trigger"]
    assert (snaps[0]["equity"], snaps[0]["im"], snaps[0]["mm"], snaps[0]["call_amount"]) == (
        35_000.0, 50_000.0, 40_000.0, 15_000.0)
    assert snaps[0]["payload"]["positions"][0] == {"code": "A.HK", "qty": 1000.0, "price": 100.0, "mv": 100_000.0,
                                                   "im_ratio": 0.5, "mm_ratio": 0.4}
    hist = call_work.call_history(store, call_id=call_id)
    assert [h["kind"] for h in hist] == ["notice", "open"]
    assert hist[1]["before"] == "—" and hist[1]["after"] == f"call · 15,000.00 · due {deadline}"
    assert audit.verify(store).ok


def test_notice_rendered_sent_to_eml_with_snapshot(local: Any, tmp_path: Path) -> None:
    store, u, call_id, deadline = local
    _check_notice(store, u["tom"], call_id, deadline, tmp_path / "out")


def test_failing_sender_marks_failed_then_resend(local: Any, tmp_path: Path) -> None:
    store, u, call_id, _deadline = local
    gw = BrokenGateway()
    n = notices.send_notice(store, u["rita"], call_id, sender=gw)
    assert (n.status, n.error, n.location, n.attempts) == ("failed", "ConnectionRefusedError: gateway down", "", 1)
    assert gw.calls == 1
    # the failed notice is kept with its snapshot; a resend through a working sender delivers it
    assert notices.outbox(store, status="failed")[0]["id"] == n.id
    again = notices.resend_failed(store, u["rita"], notices.EmlSender(tmp_path))
    assert [(x.id, x.status, x.attempts, x.error) for x in again] == [(n.id, "sent", 2, "")]
    assert Path(again[0].location).is_file()
    assert notices.resend_failed(store, u["rita"], notices.EmlSender(tmp_path)) == []  # nothing left to resend
    with pytest.raises(notices.NoticeError, match="already sent"):
        notices.deliver(store, u["rita"], n.id, notices.EmlSender(tmp_path))
    assert {r["action"] for r in audit.rows(store)} >= {"queue_notice", "notice_failed", "notice_sent"}


def test_notice_refusals(local: Any, tmp_path: Path) -> None:
    store, u, call_id, _deadline = local
    with pytest.raises(AuthError):
        notices.send_notice(store, u["abe"], call_id, sender=notices.EmlSender(tmp_path))  # auditor
    with pytest.raises(notices.NoticeError, match="not one e-mail address"):
        notices.send_notice(store, u["rita"], call_id, recipient="Chan Tai Man", sender=notices.EmlSender(tmp_path))
    with pytest.raises(notices.NoticeError, match=r"\$nickname"):
        notices.render("Subject: x $nickname\nbody", {"account": "M1"})
    with pytest.raises(notices.NoticeError, match="Subject"):
        notices.render("Dear $account", {"account": "M1"})
    assert notices.outbox(store) == []  # nothing half-written
    assert notices.validate_recipient(" a@b.hk ") == ("a@b.hk", "")
    assert "not one e-mail address" in notices.validate_recipient("Chan, Tai Man <a@b.hk>")[1]  # two addresses?
    assert notices.validate_recipient('"Chan, Tai Man" <a@b.hk>') == ('"Chan, Tai Man" <a@b.hk>', "")
    assert "not one e-mail address" in notices.validate_recipient("a@b")[1]
    # a second address, a group or a comment is refused, never dropped on the way to the header
    for typed in ("x@y.com, z@w.com", "a@b.com; c@d.com", "a@b.com <c@d.com>", "a:b@c.com", "a(b)@c.com",
                  "grp: a@b.com;", "陳@example.hk", "Chan <" + "x" * 320 + "@example.hk>"):
        assert notices.validate_recipient(typed)[0] == "", typed
    assert notices.validate_recipient("J. Smith <j@s.com>") == ('"J. Smith" <j@s.com>', "")  # quoted as needed
    assert notices.validate_recipient("陳大文 <chan@例え.jp>") == ("陳大文 <chan@xn--r8jz45g.jp>", "")
    assert notices.template_names()[0] == "margin_call_notice" and "margin_call_reminder" in notices.template_names()


def test_notice_to_a_client_with_no_email_on_file_needs_the_address_typed(local: Any, tmp_path: Path) -> None:
    store, u, call_id, _deadline = local
    assert notices.preview(store, call_id)["recipient"] == "Chan Tai Man <chan.tai.man@example.hk>"
    with store.begin() as conn:
        conn.execute(S.clients.update().where(S.clients.c.code == "CM1").values(email=""))
    assert notices.preview(store, call_id)["recipient"] == ""
    with pytest.raises(notices.NoticeError, match="client CM1 has no e-mail on file"):
        notices.send_notice(store, u["rita"], call_id, sender=notices.EmlSender(tmp_path))
    assert notices.outbox(store) == []
    n = notices.send_notice(store, u["rita"], call_id, recipient="Chan Tai Man <ctm@example.hk>",
                            sender=notices.EmlSender(tmp_path))
    assert (n.status, n.recipient) == ("sent", "Chan Tai Man <ctm@example.hk>")


def test_a_typed_address_is_kept_only_through_four_eyes(local: Any, tmp_path: Path) -> None:
    store, u, call_id, _deadline = local
    with store.begin() as conn:
        conn.execute(S.clients.update().where(S.clients.c.code == "CM1").values(email=""))
    n = notices.send_notice(store, u["tom"], call_id, recipient="Chan Tai Man <ctm@example.hk>",
                            sender=notices.EmlSender(tmp_path), keep_address=True)
    assert n.status == "sent" and n.address_request is not None
    req = changes.get(store, n.address_request)
    assert (req.kind, req.maker, req.status, req.target_table) == ("client_email", "tom", "pending", "clients")
    assert (req.before, req.after) == ({"email": ""}, {"email": "ctm@example.hk"})
    assert req.context["notice"] == f"#{n.id}" and req.context["account"] == "M1"
    assert notices.preview(store, call_id)["recipient"] == ""  # nothing kept until a checker approves
    with pytest.raises(AuthError, match="four-eyes"):
        changes.approve(store, u["tom"], n.address_request)
    assert changes.approve(store, u["sam"], n.address_request, "called the client to confirm") == "approved"
    assert notices.preview(store, call_id)["recipient"] == "Chan Tai Man <ctm@example.hk>"
    # the address on file again: nothing to keep
    again = notices.send_notice(store, u["tom"], call_id, sender=notices.EmlSender(tmp_path), keep_address=True)
    assert again.address_request is None and again.recipient == "Chan Tai Man <ctm@example.hk>"
    # a maker who may not ask for it is told so before anything is written
    with store.begin() as conn:
        conn.execute(S.role_permissions.delete().where(S.role_permissions.c.kind == "client_email"))
    before = len(notices.outbox(store))
    with pytest.raises(notices.NoticeError, match="may not ask to change a client's e-mail"):
        notices.send_notice(store, u["tom"], call_id, recipient="x@example.hk", sender=notices.EmlSender(tmp_path),
                            keep_address=True)
    assert len(notices.outbox(store)) == before
    assert audit.verify(store).ok


def test_deadline_needs_approval_by_someone_else_and_reaches_the_monitor(local: Any) -> None:
    store, u, call_id, deadline = local
    mon = LiveMonitor(store, store.load_book(), calendar=CAL)
    mon.start()
    try:
        assert mon.flush_writes()
        assert bool(mon.tracker.open[0]) and mon.tracker.deadline[0] == np.datetime64(deadline, "D")
        today = datetime.now(HK_TZ).date()
        # bad dates are refused with the field named; nothing is submitted
        with pytest.raises(call_work.CallWorkError, match="New deadline: .* in the past"):
            call_work.request_deadline(store, u["rita"], call_id, today - timedelta(days=1), "x", CAL)
        saturday = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
        with pytest.raises(call_work.CallWorkError, match="not a trading day"):
            call_work.request_deadline(store, u["rita"], call_id, saturday, "x", CAL)
        with pytest.raises(call_work.CallWorkError, match="already the call's deadline"):
            call_work.request_deadline(store, u["rita"], call_id, deadline, "x", CAL)
        new = CAL.add_trading_days(deadline, 2)
        rid = call_work.request_deadline(store, u["tom"], call_id, new, "Client's TT arrives Friday", CAL)
        with pytest.raises(call_work.CallWorkError, match=f"#{rid} .* already pending"):
            call_work.request_deadline(store, u["rita"], call_id, new, "again", CAL)
        with store.begin() as conn:
            assert call_work.call_info(conn, call_id)["deadline"] == deadline  # not before approval
        with pytest.raises(AuthError, match="four-eyes"):
            changes.approve(store, u["tom"], rid)
        with pytest.raises(AuthError):
            changes.approve(store, u["rita"], rid)  # a risk officer is not a checker
        reloads = mon.parameter_reloads
        assert changes.approve(store, u["sam"], rid, "TT confirmed") == "approved"
        with store.begin() as conn:
            assert call_work.call_info(conn, call_id)["deadline"] == new
        _wait(lambda: mon.parameter_reloads > reloads)
        assert mon.tracker.deadline[0] == np.datetime64(new, "D")
        assert not mon.tracker.long_standing(deadline + timedelta(days=1))[0]  # no longer past its deadline
        hist = call_work.call_history(store, call_id=call_id)
        assert hist[0]["kind"] == "deadline" and hist[0]["deadline_before"] == str(deadline)
        assert hist[0]["deadline_after"] == str(new) and f"{u['tom'].login} → {u['sam'].login}" in hist[0]["detail"]
        assert hist[0]["after"] == f"call · 15,000.00 · due {new}"
    finally:
        mon.stop()


def _wait(cond: Any, timeout: float = 10.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_remarks_exceptions_and_history_before_after(local: Any) -> None:
    store, u, call_id, deadline = local
    with pytest.raises(call_work.CallWorkError, match="Remark: .* empty"):
        call_work.add_remark(store, u["rita"], call_id, "   ")
    with pytest.raises(call_work.CallWorkError, match="at most 2,000"):
        call_work.add_remark(store, u["rita"], call_id, "x" * 2001)
    call_work.add_remark(store, u["rita"], call_id, "Client called, TT today")
    call_work.add_remark(store, u["tom"], call_id, "TT reference received")
    rem = call_work.remarks(store, call_id)
    assert [(r["author"], r["text"]) for r in rem] == [(u["tom"].login, "TT reference received"),
                                                       (u["rita"].login, "Client called, TT today")]
    with pytest.raises(call_work.CallWorkError, match="Reason"):
        call_work.mark_exception(store, u["rita"], call_id, "")
    with pytest.raises(call_work.CallWorkError, match="not an exception"):
        call_work.clear_exception(store, u["rita"], call_id, "nothing to clear")
    call_work.mark_exception(store, u["rita"], call_id, "Funds in transit")
    with pytest.raises(call_work.CallWorkError, match="already an exception"):
        call_work.mark_exception(store, u["tom"], call_id, "again")
    ex = call_work.exceptions(store)
    assert [(e["account"], e["reason"], e["current_amount"], e["deadline"]) for e in ex] == [
        ("M1", "Funds in transit", 15_000.0, str(deadline))]
    call_work.clear_exception(store, u["sam"], call_id, "Funds arrived")
    assert call_work.exceptions(store) == []
    assert [e["clear_reason"] for e in call_work.exceptions(store, active_only=False)] == ["Funds arrived"]
    call_work.mark_exception(store, u["rita"], call_id, "Second look")  # may be marked again after clearing
    hist = call_work.call_history(store, account="m1")
    kinds = [h["kind"] for h in reversed(hist)]
    assert kinds == ["open", "remark", "remark", "exception", "exc_cleared", "exception"]
    by_kind = {h["kind"]: h for h in hist}
    base = f"call · 15,000.00 · due {deadline}"
    assert (by_kind["exc_cleared"]["before"], by_kind["exc_cleared"]["after"]) == (base + " · exception", base)
    assert hist[0]["after"] == base + " · exception" and hist[0]["detail"] == f"{u['rita'].login}: Second look"
    # the date filter keeps the replayed state: today only → same rows; yesterday only → none
    today = datetime.now(HK_TZ).date()
    assert len(call_work.call_history(store, since=today, until=today)) == len(hist)
    assert call_work.call_history(store, until=today - timedelta(days=1)) == []
    assert call_work.call_history(store, account="M2") == []
    with pytest.raises(AuthError):
        call_work.add_remark(store, u["abe"], call_id, "auditor's note")


def test_snapshots_export_xlsx(local: Any, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    store, u, call_id, _deadline = local
    notices.send_notice(store, u["rita"], call_id, sender=notices.EmlSender(tmp_path))
    snaps = call_work.snapshots(store, account="M1")
    out = tmp_path / "snapshots.xlsx"
    assert call_work.export_snapshots(store, [s["id"] for s in snaps], out, u["rita"].login) == 2
    wb = load_workbook(out)
    assert wb.sheetnames == ["Snapshots", "Positions", "Cash"]
    rows = list(wb["Snapshots"].values)
    assert rows[0][:8] == ("Snapshot", "Call", "Account", "Client", "Client name", "Kind", "Time (HKT)", "Status")
    assert sorted(r[5] for r in rows[1:]) == ["notice", "trigger"]
    assert all(r[8:13] == (35_000, 50_000, 40_000, 65_000, 15_000) for r in rows[1:])
    assert list(wb["Positions"].values)[1][2:6] == ("A.HK", 1000, 100, 100_000)
    assert list(wb["Cash"].values)[1][2:] == ("HKD", -65_000)
    with pytest.raises(call_work.CallWorkError, match="no snapshot"):
        call_work.export_snapshots(store, [], out)


def test_demo_seed_works_calls(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.demo_store import seed_demo_store

    monkeypatch.setenv("RISKDESK_NOTICE_FOLDER", str(tmp_path / "notices"))
    st = Store(sqlite_url)
    st.migrate()
    seed_demo_store(st, clients=100, pretrade=False)
    with st.begin() as conn:
        assert conn.execute(select(S.margin_calls.c.id).where(S.margin_calls.c.state == "open")).all()[6:]
    box = notices.outbox(st)
    assert len(box) == 6 and [r["status"] for r in box].count("failed") == 1
    assert len(list((tmp_path / "notices").glob("*.eml"))) == 5
    assert len(call_work.exceptions(st)) == 2
    assert call_work.seed_demo_call_work(st) == 0  # once only
    st.dispose()


# ---------------------------------------------------------------------------------- PostgreSQL
@pytest.mark.postgres
def test_postgres_notice_and_deadline_four_eyes(pg_url: str, tmp_path: Path) -> None:
    owner = Store(pg_url)
    owner.migrate()
    u = _seed_users(owner, "_" + uuid.uuid4().hex[:6])
    call_id, deadline = _open_call(owner)
    maker, checker = _as(pg_url, u["rita"].login), _as(pg_url, u["sam"].login)
    try:
        _check_notice(maker, u["rita"], call_id, deadline, tmp_path)
        call_work.add_remark(maker, u["rita"], call_id, "called")
        call_work.mark_exception(maker, u["rita"], call_id, "funds in transit")
        new = CAL.add_trading_days(deadline, 1)
        rid = call_work.request_deadline(maker, u["rita"], call_id, new, "TT tomorrow", CAL)
        with pytest.raises(AuthError, match="four-eyes"):
            changes.approve(maker, u["rita"], rid)
        assert changes.approve(checker, u["sam"], rid, "ok") == "approved"
        with owner.begin() as conn:
            assert call_work.call_info(conn, call_id)["deadline"] == new
        kinds = [h["kind"] for h in call_work.call_history(owner, call_id=call_id)]
        assert kinds == ["deadline", "exception", "remark", "notice", "open"]
        # a typed address kept as the client's: applied by the database's decision function on approval
        n = notices.send_notice(maker, u["rita"], call_id, recipient="ctm@example.hk",
                                sender=notices.EmlSender(tmp_path), keep_address=True)
        assert n.address_request is not None
        with pytest.raises(AuthError, match="four-eyes"):
            changes.approve(maker, u["rita"], n.address_request)
        assert changes.approve(checker, u["sam"], n.address_request, "confirmed") == "approved"
        with owner.begin() as conn:
            assert conn.execute(select(S.clients.c.email).where(S.clients.c.code == "CM1")).scalar_one() == \
                "ctm@example.hk"
        assert audit.verify(owner).ok
    finally:
        maker.dispose()
        checker.dispose()
        owner.dispose()
