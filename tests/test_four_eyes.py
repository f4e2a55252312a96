"""Four-eyes change requests and the audit trail, on SQLite and on PostgreSQL with separate logins."""

from __future__ import annotations

import select
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from services import audit, auth, changes
from services.auth import AuthError
from services.changes import ChangeError, StaleTargetError
from services.notify import ChangeListener, wait_for
from services.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _seed_users(store: Store, suffix: str = "") -> dict[str, auth.User]:
    auth.ensure_permissions(store)
    out = {}
    for login, role in (("rita", "risk_officer"), ("sam", "supervisor"), ("cora", "cro"), ("tom", "trader"),
                        ("abe", "auditor"), ("ada", "administrator")):
        auth.create_user(store, login + suffix, role, login.title(), password=f"{login}-pw")
        out[login] = auth.User(login + suffix, login.title(), role)
    return out


@pytest.fixture
def local(sqlite_url: str) -> Iterator[tuple[Store, dict[str, auth.User]]]:
    st = Store(sqlite_url)
    st.migrate()
    yield st, _seed_users(st)
    st.dispose()


def test_login_hashes_passwords_and_audits_failures(local) -> None:  # type: ignore[no-untyped-def]
    st, _ = local
    with st.begin() as conn:
        h = conn.execute(text("select password_hash from users where login = 'rita'")).scalar()
    assert h.startswith("$argon2") and "rita-pw" not in h
    assert auth.login_local(st, "rita", "rita-pw").role == "risk_officer"
    with pytest.raises(AuthError, match="wrong password"):
        auth.login_local(st, "rita", "nope")
    actions = [r["action"] for r in audit.rows(st, actor="rita")]
    assert actions[:2] == ["login_failed", "login"]


def test_submit_approve_applies_and_audits(local) -> None:  # type: ignore[no-untyped-def]
    st, u = local
    rid = changes.submit(st, u["rita"], "company_parameter", {"name": "force_call_factor"}, {"value": 0.75},
                         "tighten force calls")
    req = changes.get(st, rid)
    assert (req.status, req.before, req.after, req.target_version) == ("pending", {"value": 0.8},
                                                                      {"value": 0.75}, 1)
    assert st.parameters()["force_call_factor"] == 0.8  # nothing applied before approval
    with pytest.raises(AuthError, match="four-eyes"):
        changes.approve(st, u["rita"], rid)
    with pytest.raises(AuthError, match="may not decide"):
        changes.approve(st, u["tom"], rid)
    assert changes.approve(st, u["sam"], rid, "ok") == "approved"
    assert st.parameters()["force_call_factor"] == 0.75
    req = changes.get(st, rid)
    assert (req.status, req.checker) == ("approved", "sam")
    acts = [(r["actor"], r["action"]) for r in reversed(audit.rows(st, entity="change_requests"))]
    assert ("rita", "request") in acts and ("sam", "approve") in acts
    applied = audit.rows(st, entity="company_parameters")[0]
    assert applied["action"] == "apply" and '"value":0.75' in applied["after"]
    assert audit.verify(st).ok


def test_reject_cancel_expire(local) -> None:  # type: ignore[no-untyped-def]
    st, u = local
    key = {"name": "call_deadline_days"}
    r1 = changes.submit(st, u["rita"], "company_parameter", key, {"value": 2.0}, "shorter deadline")
    with pytest.raises(ChangeError, match="needs a comment"):
        changes.reject(st, u["sam"], r1, "  ")
    assert changes.reject(st, u["sam"], r1, "not agreed by committee") == "rejected"
    r2 = changes.submit(st, u["rita"], "company_parameter", key, {"value": 4.0}, "longer")
    with pytest.raises(AuthError, match="only the maker"):
        changes.cancel(st, u["sam"], r2)
    assert changes.cancel(st, u["rita"], r2) == "cancelled"
    with pytest.raises(ChangeError, match="not pending"):
        changes.approve(st, u["sam"], r2)
    r3 = changes.submit(st, u["rita"], "company_parameter", key, {"value": 5.0}, "will expire")
    with st.begin() as conn:
        conn.execute(text("update change_requests set expires_at = '2000-01-01 00:00:00' where id = :i"),
                     {"i": r3})
    assert changes.expire_due(st) == 1
    assert changes.get(st, r3).status == "expired"
    assert st.parameters()["call_deadline_days"] == 3.0
    with pytest.raises(ChangeError, match="needs a reason"):
        changes.submit(st, u["rita"], "company_parameter", key, {"value": 5.0}, "")


def test_stale_approval_names_who_and_when(local) -> None:  # type: ignore[no-untyped-def]
    st, u = local
    key = {"name": "force_call_factor"}
    a = changes.submit(st, u["rita"], "company_parameter", key, {"value": 0.7}, "a")
    b = changes.submit(st, u["rita"], "company_parameter", key, {"value": 0.6}, "b")
    changes.approve(st, u["sam"], a)
    with pytest.raises(StaleTargetError, match=r"changed by rita at \d{4}-\d\d-\d\d .* reload"):
        changes.approve(st, u["sam"], b)
    assert st.parameters()["force_call_factor"] == 0.7
    assert changes.get(st, b).status == "pending"


def test_amount_range_flow_needs_supervisor_then_cro(local) -> None:  # type: ignore[no-untyped-def]
    st, u = local
    with st.begin() as conn:
        conn.execute(text("insert into approval_flows (code, kind, min_amount, max_amount, steps) values "
                          "('credit.credit_adjust', 'company_parameter', 1000000, null, '[\"supervisor\", \"cro\"]')"))
    rid = changes.submit(st, u["rita"], "company_parameter", {"name": "call_deadline_days"}, {"value": 5.0},
                         "big one", amount=2_000_000)
    req = changes.get(st, rid)
    assert (req.flow_code, req.flow_steps) == ("credit.credit_adjust", ["supervisor", "cro"])
    with pytest.raises(AuthError):
        changes.approve(st, u["tom"], rid)
    assert changes.approve(st, u["sam"], rid) == "pending"
    with pytest.raises(AuthError, match=r"may not decide step 2 \(cro\)"):
        changes.approve(st, u["sam"], rid)
    assert st.parameters()["call_deadline_days"] == 3.0
    assert changes.approve(st, u["cora"], rid) == "approved"
    assert st.parameters()["call_deadline_days"] == 5.0


def test_sqlite_audit_is_append_only_and_tampering_is_found(local) -> None:  # type: ignore[no-untyped-def]
    st, u = local
    changes.submit(st, u["rita"], "company_parameter", {"name": "force_call_factor"}, {"value": 0.7}, "x")
    with pytest.raises(IntegrityError, match="append-only"), st.engine.begin() as conn:
        conn.execute(text("update audit_log set actor = 'mallory' where id = 2"))
    with pytest.raises(IntegrityError, match="append-only"), st.engine.begin() as conn:
        conn.execute(text("delete from audit_log where id = 2"))
    assert audit.verify(st).ok
    with st.engine.begin() as conn:  # someone with the file drops the trigger and edits a record
        conn.execute(text("drop trigger audit_log_no_update"))
        conn.execute(text("update audit_log set after = 'nothing to see' where id = 3"))
    res = audit.verify(st)
    assert (res.ok, res.first_bad_id) == (False, 3)
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "audit", "verify", "--db", str(st.url)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "broken at record 3" in r.stderr


def test_sqlite_trigger_refuses_maker_as_checker(local) -> None:  # type: ignore[no-untyped-def]
    st, u = local
    rid = changes.submit(st, u["rita"], "company_parameter", {"name": "force_call_factor"}, {"value": 0.7}, "x")
    with pytest.raises(IntegrityError), st.engine.begin() as conn:
        conn.execute(text("update change_requests set status = 'approved', checker = maker where id = :i"),
                     {"i": rid})


# ---------------------------------------------------------------------------------- PostgreSQL
@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[Store, dict[str, auth.User], str]]:
    owner = Store(pg_url)
    owner.migrate()
    suffix = "_" + uuid.uuid4().hex[:6]
    users = _seed_users(owner, suffix)
    yield owner, users, pg_url
    owner.dispose()


def _as(url: str, login: str) -> Store:
    return Store(url.replace("postgres@", f"{login}@"), password=login.split("_")[0] + "-pw")


@pytest.mark.postgres
def test_postgres_maker_cannot_approve_even_with_raw_sql(pg) -> None:  # type: ignore[no-untyped-def]
    owner, u, url = pg
    maker, checker = _as(url, u["rita"].login), _as(url, u["sam"].login)
    assert auth.login_database(maker).role == "risk_officer"
    rid = changes.submit(maker, u["rita"], "company_parameter", {"name": "force_call_factor"}, {"value": 0.75}, "t")
    assert changes.get(owner, rid).maker == u["rita"].login
    with pytest.raises(AuthError, match="four-eyes"):
        changes.approve(maker, u["rita"], rid)
    for sql in ("update change_requests set status = 'approved', checker = 'x' where id = :i",
                "update company_parameters set value = 0.1 where name = 'force_call_factor'",
                "delete from audit_log where id = 1",
                "update audit_log set actor = 'x' where id = 1",
                "truncate audit_log",
                "insert into audit_log (ts, actor, action, entity, prev_hash, hash) values (now(), 'x', 'x', 'x', 'x', 'y')"):
        with pytest.raises(DBAPIError, match="permission denied"), maker.engine.begin() as conn:
            conn.execute(text(sql), {"i": rid})
    with pytest.raises(DBAPIError, match="four-eyes"), maker.engine.begin() as conn:
        conn.execute(text("select rd_decide(:i, 'approve', 'self', '')"), {"i": rid})
    # a request inserted with someone else's name still belongs to the real login
    with maker.engine.begin() as conn:
        forged = conn.execute(text(
            "insert into change_requests (kind, target_table, target_key, reason, maker, created_at) "
            "values ('company_parameter', 'company_parameters', '{\"name\": \"force_call_factor\"}', 'f', "
            ":m, now()) returning maker"), {"m": u["sam"].login}).scalar()
    assert forged == u["rita"].login
    assert changes.approve(checker, u["sam"], rid, "ok") == "approved"
    assert owner.parameters()["force_call_factor"] == 0.75
    assert audit.verify(owner).ok
    actors = {(r["actor"], r["action"]) for r in audit.rows(owner)}
    assert (u["sam"].login, "approve") in actors and (u["rita"].login, "apply") in actors
    maker.dispose()
    checker.dispose()


@pytest.mark.postgres
def test_postgres_stale_approval_and_tampering_by_owner(pg) -> None:  # type: ignore[no-untyped-def]
    owner, u, url = pg
    maker, checker = _as(url, u["rita"].login), _as(url, u["sam"].login)
    key = {"name": "force_call_factor"}
    a = changes.submit(maker, u["rita"], "company_parameter", key, {"value": 0.7}, "a")
    b = changes.submit(maker, u["rita"], "company_parameter", key, {"value": 0.6}, "b")
    changes.approve(checker, u["sam"], a)
    with pytest.raises(StaleTargetError, match=f"changed by {u['rita'].login} at .* reload"):
        changes.approve(checker, u["sam"], b)
    assert audit.verify(owner).ok
    with owner.engine.begin() as conn:  # the database owner can tamper; verify must find it
        conn.execute(text("alter table audit_log disable trigger audit_log_immutable"))
        conn.execute(text("update audit_log set before = 'x' where id = 2"))
        conn.execute(text("alter table audit_log enable trigger audit_log_immutable"))
    res = audit.verify(owner)
    assert (res.ok, res.first_bad_id) == (False, 2)
    maker.dispose()
    checker.dispose()


@pytest.mark.postgres
def test_postgres_other_workstation_sees_decisions_within_a_second(pg) -> None:  # type: ignore[no-untyped-def]
    owner, u, url = pg
    maker, checker = _as(url, u["rita"].login), _as(url, u["sam"].login)
    seen: list[dict] = []
    listener = ChangeListener(maker, seen.append, poll=0.2)
    listener.start()
    try:
        assert listener.connected.wait(5)
        # the other workstation is a separate process
        code = (f"from services.store import Store; from services import changes, auth\n"
                f"s = Store({str(checker.url.render_as_string(hide_password=False))!r})\n"
                f"rid = changes.submit(s, auth.User({u['sam'].login!r}, 'S', 'supervisor'), 'company_parameter', "
                f"{{'name': 'call_deadline_days'}}, {{'value': 4.0}}, 'from another desk')\n")
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: any(p.get("status") == "pending" for p in seen), 1.5)
        rid = max(p["id"] for p in seen if "id" in p)
        n = len(seen)
        changes.approve(_as(url, u["cora"].login), u["cora"], rid)
        assert wait_for(lambda: any(p.get("status") == "approved" for p in seen[n:]), 1.5)
    finally:
        listener.stop()
        listener.join(5)
    assert not listener.is_alive()
    maker.dispose()
    checker.dispose()


@pytest.mark.postgres
def test_postgres_records_written_alone_chain_from_many_writers_and_survive_a_lost_connection(pg) -> None:  # type: ignore[no-untyped-def]
    """`audit.record` on PostgreSQL: one autocommit statement on the store's own connection (the
    chain's lock never held across a round trip), durable when it returns. Four workstations writing
    at once keep one intact chain, each record under the real login; a connection the server has
    closed while idle is replaced before the next record."""
    owner, u, url = pg
    stores = [_as(url, u[name].login) for name in ("rita", "sam", "rita", "sam")]
    first = len(audit.rows(owner))
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for i in range(25):
                audit.record(stores[k], "ignored", "export", "bench", f"{k}-{i}", "", "x")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = [r for r in audit.rows(owner) if r["entity"] == "bench"]
    assert len(rows) == 100 and len(audit.rows(owner)) == first + 100
    assert {r["actor"] for r in rows} == {u["rita"].login, u["sam"].login}  # the login, not what was passed
    assert {(r["actor"], r["entity_key"]) for r in rows if r["entity_key"].startswith("0-")} == {
        (u["rita"].login, f"0-{i}") for i in range(25)}
    res = audit.verify(owner)
    assert res.ok and res.records == first + 100
    # durable when it returns: the WAL is flushed up to what has been written (a record committed
    # without waiting and nothing after it would leave its commit unflushed for up to 200 ms)
    unflushed = []
    with owner.engine.connect() as c:
        for i in range(20):
            audit.record(stores[1], "ignored", "export", "bench", f"flush-{i}")
            unflushed.append(c.execute(text(
                "select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn())")).scalar())
            c.rollback()
    assert sum(1 for b in unflushed if b == 0) >= 15, unflushed  # other sessions' WAL may interleave
    # the commit did not leave this session's setting changed: later transactions commit synchronously
    conn = stores[0]._driver
    assert conn.execute("show synchronous_commit").fetchone()[0] == "on"
    # the server ends the idle session (a restart would too): the next record opens a new one
    pid = conn.info.backend_pid
    with owner.engine.begin() as c:
        assert c.execute(text("select pg_terminate_backend(:p)"), {"p": pid}).scalar() is True
    for _ in range(50):  # the termination reaches the client's socket
        if conn.closed or select.select([conn.fileno()], [], [], 0.1)[0]:
            break
    rec = audit.record(stores[0], "ignored", "export", "bench", "after-restart")
    assert stores[0]._driver is not conn and stores[0]._driver.info.backend_pid != pid
    assert max(r["id"] for r in audit.rows(owner)) == rec and audit.verify(owner).ok
    for s in stores:
        s.dispose()
    assert all(s._driver is None for s in stores)


@pytest.mark.postgres
def test_postgres_record_on_a_connection_lost_in_use_fails_cleanly_and_the_next_reconnects(pg, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The server ends the store's own connection and the idle check does not see it in time (a
    dropped flow): the record fails with a message naming it, and the next one opens a new session."""
    from services import store as store_module
    from services.store import StoreError

    owner, u, url = pg
    st = _as(url, u["rita"].login)
    audit.record(st, "ignored", "export", "bench", "before")
    conn = st._driver
    with owner.engine.begin() as c:
        c.execute(text("select pg_terminate_backend(:p)"), {"p": conn.info.backend_pid})
    monkeypatch.setattr(store_module, "_readable", lambda fd: False)  # the check misses it
    with pytest.raises(StoreError, match=r"the audit record \(export bench lost\) was not written"):
        audit.record(st, "ignored", "export", "bench", "lost")
    assert st._driver is None and conn.closed
    rec = audit.record(st, "ignored", "export", "bench", "after")
    assert st._driver is not None and st._driver.info.backend_pid != conn.info.backend_pid
    keys = [r["entity_key"] for r in audit.rows(owner) if r["entity"] == "bench"]
    assert "lost" not in keys and {"before", "after"} <= set(keys)
    assert max(r["id"] for r in audit.rows(owner)) == rec and audit.verify(owner).ok
    st.dispose()
