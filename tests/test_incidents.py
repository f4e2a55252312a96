"""Incidents and the corrective-action register (RISK_METHODS §7), on SQLite and on PostgreSQL:
response deadlines at their boundaries, allowed and refused transitions with an event per step, the
SEV-1/2 review, close blocked by an unverified action until someone other than its owner verifies it,
root-cause checks, the overdue views, and the demo mix."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from models import schema as S
from services import actions, incidents
from services.actions import ActionError
from services.auth import User
from services.demo_store import seed_demo_governance
from services.incidents import IncidentError
from services.incidents_demo import seed_incidents
from services.store import Store

RITA = User("rita", "Rita", "risk_officer")
SAM = User("sam", "Sam", "supervisor")
OLGA = User("olga", "Olga", "operations")
ABE = User("abe", "Abe", "auditor")
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    st = Store(url)
    st.migrate()
    seed_demo_governance(st)
    yield st
    st.dispose()


def _audit_count(st: Store, entity: str) -> int:
    with st.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(S.audit_log)
                                .where(S.audit_log.c.entity == entity)).scalar_one())


def _events(st: Store, inc: int) -> list[tuple[str, str]]:
    with st.begin() as conn:
        return [(r.state, r.note) for r in conn.execute(
            select(S.incident_events).where(S.incident_events.c.incident_id == inc)
            .order_by(S.incident_events.c.id))]


# ---------------------------------------------------------------------- pure rules
@pytest.mark.parametrize(("sev", "minutes"), [(1, 0), (2, 15), (3, 60), (4, 240)])
def test_response_due_from_detection(sev: int, minutes: int) -> None:
    assert incidents.response_due(T0, sev) == T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(("sev", "minutes"), [(1, 0), (2, 15), (3, 60), (4, 240)])
def test_overdue_boundary_is_strictly_after_due(sev: int, minutes: int) -> None:
    due = incidents.response_due(T0, sev)
    assert not incidents.is_overdue("triage", sev, None, due, T0 + timedelta(minutes=minutes))
    assert incidents.is_overdue("triage", sev, None, due, T0 + timedelta(minutes=minutes, seconds=1))
    # responded, closed or not triaged: never overdue
    late = T0 + timedelta(days=1)
    assert not incidents.is_overdue("communicate", sev, T0 + timedelta(hours=5), due, late)
    assert not incidents.is_overdue("closed", sev, None, due, late)
    assert not incidents.is_overdue("detect", None, None, None, late)


def test_severity_outside_range_refused() -> None:
    with pytest.raises(IncidentError, match="severity: 5 is not SEV-1..4"):
        incidents.response_due(T0, 5)


def test_five_whys_and_fishbone_checks() -> None:
    got = incidents.check_root_cause("five_whys", {"whys": ["a", "b", "", "", ""], "root_cause": "x"})
    assert got["whys"] == ["a", "b"]
    with pytest.raises(IncidentError, match="why 2 is empty but a later why is filled"):
        incidents.check_root_cause("five_whys", {"whys": ["a", "", "c"], "root_cause": "x"})
    with pytest.raises(IncidentError, match="at most five whys, got 6"):
        incidents.check_root_cause("five_whys", {"whys": list("abcdef"), "root_cause": "x"})
    with pytest.raises(IncidentError, match="answer at least why 1"):
        incidents.check_root_cause("five_whys", {"whys": ["", ""], "root_cause": "x"})
    with pytest.raises(IncidentError, match="root cause: state"):
        incidents.check_root_cause("five_whys", {"whys": ["a"], "root_cause": " "})
    fb = incidents.check_root_cause("fishbone", {"branches": {"data": ["stale file", " "]}, "root_cause": "x"})
    assert list(fb["branches"]) == list(incidents.FISHBONE_BRANCHES) and fb["branches"]["data"] == ["stale file"]
    with pytest.raises(IncidentError, match="'weather' is not a branch"):
        incidents.check_root_cause("fishbone", {"branches": {"weather": ["rain"]}, "root_cause": "x"})
    with pytest.raises(IncidentError, match="at least one cause"):
        incidents.check_root_cause("fishbone", {"branches": {"people": [""]}, "root_cause": "x"})


def test_escalation_list_grows_with_severity() -> None:
    whos = {s: [e.who for e in incidents.ESCALATION[s]] for s in (1, 2, 3, 4)}
    assert "CRO" in whos[1] and "CRO" in whos[2] and "CRO" not in whos[3] and "CRO" not in whos[4]
    assert any("regulatory" in w for w in whos[1])
    assert len(whos[1]) > len(whos[2]) > len(whos[3]) > len(whos[4])


# ---------------------------------------------------------------------- store: incidents
def test_triage_sets_deadline_and_overdue_query_at_the_boundary(store: Store) -> None:
    inc = incidents.log_incident(store, OLGA, "Feed stale", "US prices stopped", "olga", "feed, margin",
                                 ["US equities"], detected_at=T0, now=T0 + timedelta(minutes=2))
    due = incidents.triage(store, RITA, inc, 2, now=T0 + timedelta(minutes=3))
    assert due == T0 + timedelta(minutes=15)
    assert incidents.overdue(store, now=T0 + timedelta(minutes=15)) == []
    late = incidents.overdue(store, now=T0 + timedelta(minutes=15, seconds=1))
    assert [r["id"] for r in late] == [inc] and late[0]["overdue"]
    row = incidents.incidents(store, now=T0 + timedelta(minutes=10))[0]
    assert row["systems"] == "feed, margin" and row["desks"] == "US equities"
    assert row["seconds_left"] == pytest.approx(300.0)
    # re-grade to SEV-4: 4 h from detection, no longer overdue at +15 min 1 s
    assert incidents.triage(store, RITA, inc, 4, now=T0 + timedelta(minutes=16)) == T0 + timedelta(hours=4)
    assert incidents.overdue(store, now=T0 + timedelta(minutes=16)) == []
    assert _events(store, inc)[-1] == ("triage", "re-graded SEV-2 → SEV-4")
    # responding (leaving triage) needs a commander, then stops the clock
    with pytest.raises(IncidentError, match="name an incident commander"):
        incidents.advance(store, RITA, inc, "communicate", now=T0 + timedelta(hours=5))
    incidents.set_commander(store, RITA, inc, "sam")
    incidents.advance(store, SAM, inc, "communicate", now=T0 + timedelta(hours=5))
    assert incidents.overdue(store, now=T0 + timedelta(days=1)) == []
    got = incidents.incidents(store, now=T0 + timedelta(days=1))[0]
    assert got["responded_at"] == T0 + timedelta(hours=5) and not got["overdue"]


def test_transitions_allowed_refused_and_timestamped(store: Store) -> None:
    inc = incidents.log_incident(store, OLGA, "Blotter empty", "", "rita", now=T0)
    with pytest.raises(IncidentError, match="cannot move from detected to contain: the next step is triage"):
        incidents.advance(store, RITA, inc, "contain")
    with pytest.raises(IncidentError, match="grade the incident"):
        incidents.advance(store, RITA, inc, "triage")
    incidents.triage(store, RITA, inc, 3, now=T0 + timedelta(minutes=5))
    incidents.set_commander(store, RITA, inc, "rita", now=T0 + timedelta(minutes=6))
    steps = ["communicate", "contain", "resolve", "contain", "resolve", "recover"]
    for k, s in enumerate(steps, start=1):
        incidents.advance(store, RITA, inc, s, note=f"step {k}", now=T0 + timedelta(minutes=10 * k))
    with pytest.raises(IncidentError, match="cannot move from recover to communicate: the next step is "
                                            "post-incident review or closed"):
        incidents.advance(store, RITA, inc, "communicate")
    with pytest.raises(IncidentError, match="state: 'done' is not one of"):
        incidents.advance(store, RITA, inc, "done")
    incidents.close(store, RITA, inc, now=T0 + timedelta(hours=3))  # SEV-3: no review needed
    ev = _events(store, inc)
    assert [s for s, _n in ev] == ["detect", "triage", "triage", *steps, "closed"]
    with store.begin() as conn:
        ts = [r[0] for r in conn.execute(select(S.incident_events.c.ts).where(
            S.incident_events.c.incident_id == inc).order_by(S.incident_events.c.id))]
    assert ts[-1].replace(tzinfo=UTC) == T0 + timedelta(hours=3)
    with pytest.raises(IncidentError, match="the next step is nothing .it is closed."):
        incidents.advance(store, RITA, inc, "review")
    with pytest.raises(IncidentError, match="is closed"):
        incidents.triage(store, RITA, inc, 1)


@pytest.mark.parametrize("sev", [1, 2])
def test_sev1_and_sev2_need_the_review_before_closing(store: Store, sev: int) -> None:
    inc = _to_recover(store, sev)
    with pytest.raises(IncidentError, match=f"SEV-{sev} needs its post-incident review"):
        incidents.close(store, SAM, inc)
    with pytest.raises(IncidentError, match="review: write what happened"):
        incidents.set_review(store, SAM, inc, "  ")
    incidents.advance(store, SAM, inc, "review")
    with pytest.raises(IncidentError, match="needs its post-incident review"):
        incidents.close(store, SAM, inc)
    incidents.set_review(store, SAM, inc, "Failover gap; runbook fixed")
    incidents.close(store, SAM, inc)
    row = [r for r in incidents.incidents(store) if r["id"] == inc][0]
    assert row["state"] == "closed" and row["reviewed_by"] == "sam" and row["closed_at"] is not None


def test_sev3_closes_from_recover_without_review(store: Store) -> None:
    inc = _to_recover(store, 3)
    incidents.close(store, SAM, inc)
    assert incidents.incidents(store)[0]["state"] == "closed"


def _to_recover(store: Store, sev: int) -> int:
    inc = incidents.log_incident(store, OLGA, f"SEV-{sev} test", "", "olga")
    incidents.triage(store, RITA, inc, sev)
    incidents.set_commander(store, RITA, inc, "sam")
    for s in ("communicate", "contain", "resolve", "recover"):
        incidents.advance(store, SAM, inc, s)
    return inc


def test_close_blocked_by_unverified_action_until_another_user_verifies(store: Store) -> None:
    inc = _to_recover(store, 4)
    a1 = incidents.add_action(store, RITA, inc, "Add a date check", "olga", date(2026, 12, 10))
    a2 = incidents.add_action(store, RITA, inc, "Re-issue statements", "rita", date(2026, 12, 5))
    with pytest.raises(IncidentError) as e:
        incidents.close(store, SAM, inc)
    assert f'#{a1} "Add a date check" (open, owner olga)' in str(e.value)
    assert f'#{a2} "Re-issue statements" (open, owner rita)' in str(e.value)
    for a in (a1, a2):
        actions.start(store, OLGA, a)
        actions.complete(store, OLGA, a, "done")
    with pytest.raises(ActionError, match="olga owns this action and cannot verify it"):
        actions.verify(store, OLGA, a1)
    actions.verify(store, SAM, a1, "checked the template test")
    with pytest.raises(IncidentError) as e:
        incidents.close(store, SAM, inc)
    assert f'#{a2} "Re-issue statements" (completed, owner rita)' in str(e.value)
    assert "Add a date check" not in str(e.value)
    actions.verify(store, OLGA, a2)
    incidents.close(store, SAM, inc)
    d = incidents.detail(store, inc)
    assert d["state"] == "closed" and {a["id"]: a["verified_by"] for a in d["actions"]} == {a1: "sam", a2: "olga"}
    assert d["blockers"] == [f"incident #{inc} is already closed"]


def test_writes_are_audited_and_auditors_refused(store: Store) -> None:
    before = _audit_count(store, "incidents")
    inc = incidents.log_incident(store, OLGA, "x", "", "olga")
    incidents.triage(store, RITA, inc, 3)
    incidents.set_notes(store, RITA, inc, containment="switched to backup")
    incidents.set_root_cause(store, RITA, inc, "fishbone", {"branches": {"technology": ["disk full"]},
                                                            "root_cause": "no disk alert"})
    assert _audit_count(store, "incidents") == before + 4
    with pytest.raises(IncidentError, match=r"abe \(Auditor\) may not change incidents"):
        incidents.triage(store, ABE, inc, 2)
    with pytest.raises(IncidentError, match="'nobody' is not an active RiskDesk user"):
        incidents.set_commander(store, RITA, inc, "nobody")
    with pytest.raises(IncidentError, match="title: say what happened"):
        incidents.log_incident(store, OLGA, " ", "", "olga")
    with pytest.raises(IncidentError, match="detected by: name who"):
        incidents.log_incident(store, OLGA, "t", "", "")
    d = incidents.detail(store, inc)
    assert d["containment"] == "switched to backup" and d["root_cause"]["root_cause"] == "no disk alert"


# ---------------------------------------------------------------------- store: the action register
def test_action_register_statuses_overdue_and_db_check(store: Store) -> None:
    today = date(2026, 12, 10)
    a = actions.create_action(store, RITA, "break", 7, "Fix the custodian mapping", "olga", date(2026, 12, 9))
    b = actions.create_action(store, "kri", "kri", 3, "CRO plan", "cora", today)
    c = actions.create_action(store, RITA, "trade_error", 2, "Retrain", "tom", "2026-12-01")
    actions.start(store, OLGA, c)
    actions.complete(store, OLGA, c)
    assert [r["id"] for r in actions.overdue(store, today=today)] == [a]  # due today: not yet; completed: not
    assert [r["id"] for r in actions.overdue(store, today=today + timedelta(days=1))] == [a, b]
    assert actions.actions(store, owner="olga", today=today)[0]["days_overdue"] == 1
    assert [r["id"] for r in actions.actions(store, source_kind="trade_error")] == [c]
    assert [r["id"] for r in actions.actions(store, status="completed")] == [c]
    with pytest.raises(ActionError, match="an action that is open cannot be completed: it can be started"):
        actions.complete(store, RITA, a)
    with pytest.raises(ActionError, match="cannot be started: it can be verified or reopened"):
        actions.start(store, RITA, c)
    with pytest.raises(ActionError, match="reopen: say why"):
        actions.reopen(store, SAM, c, "")
    actions.reopen(store, SAM, c, "training record missing")
    assert actions.get(store, c)["status"] == "in_progress" and "training record missing" in actions.get(store, c)["notes"]
    with pytest.raises(ActionError, match="source: 'x' is not one of"):
        actions.create_action(store, RITA, "x", 1, "t", "o", today)
    with pytest.raises(ActionError, match="due date: '2026-13-01' is not a date"):
        actions.create_action(store, RITA, "audit", 1, "t", "o", "2026-13-01")
    with pytest.raises(ActionError, match="owner: name who owns"):
        actions.create_action(store, RITA, "audit", 1, "t", " ", today)
    with pytest.raises(ActionError, match="was changed by someone else"):
        actions.start(store, OLGA, a, version=99)
    # the database refuses an owner-verified action even when written around the service
    with pytest.raises(IntegrityError), store.begin() as conn:
        conn.execute(update(S.corrective_actions).where(S.corrective_actions.c.id == a)
                     .values(status="verified", verified_by=text("owner")))
    assert actions.get(store, a)["status"] == "open"


def test_create_action_commits_with_the_callers_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        actions.create_action(conn, RITA, "loss_event", 1, "Recover from the vendor", "cora", date(2027, 1, 5))
        raise RuntimeError("the caller's change failed")
    assert actions.actions(store) == []
    with store.begin() as conn:
        aid = actions.create_action(conn, RITA, "loss_event", 1, "Recover from the vendor", "cora", date(2027, 1, 5))
    assert actions.get(store, aid)["created_by"] == "rita"


def test_demo_incidents(store: Store) -> None:
    now = datetime.now(UTC)
    assert seed_incidents(store, now=now) == 7
    assert seed_incidents(store, now=now) == 0
    rows = incidents.incidents(store, now=now)
    over = incidents.overdue(store, now=now)
    assert [(r["severity"], r["state"]) for r in over] == [(2, "triage")]
    closed1 = [r for r in rows if r["severity"] == 1 and r["state"] == "closed"]
    assert len(closed1) == 1 and closed1[0]["review"]
    assert all(a["status"] == "verified" for a in actions.actions(store, source_kind="incident",
                                                                   source_id=closed1[0]["id"]))
    sev4 = [r for r in rows if r["severity"] == 4][0]
    assert "not verified" in incidents.detail(store, sev4["id"])["blockers"][0]
    assert len(actions.overdue(store)) == 1
