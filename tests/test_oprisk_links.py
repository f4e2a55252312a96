"""Operational-risk gaps closed after issue 7: who may import reconciliation files and work breaks
(traders and auditors refused, naming their role, nothing written), the reconciliation view limited to
unresolved breaks plus the recently resolved ones, and a loss event linked to its incident (stored,
listed in the register and in the incident's detail). SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from models import schema as S
from services import breaks, incidents, recon, recon_sources
from services import loss_events as le
from services.auth import User
from services.demo_store import seed_demo_governance
from services.store import Store

RITA = User("rita", "Rita", "risk_officer")
SAM = User("sam", "Sam", "supervisor")
CORA = User("cora", "Cora", "cro")
OLGA = User("olga", "Olga", "operations")
TOM = User("tom", "Tom", "trader")
ABE = User("abe", "Abe", "auditor")
AS_OF = date(2026, 12, 29)  # a Tuesday


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    st = Store(url)
    st.migrate()
    seed_demo_governance(st)
    yield st
    st.dispose()


def _files(tmp_path: Path, n: int = 6) -> tuple[Path, Path]:
    """Our file with ``n`` positions; theirs differs by 10 shares on each: ``n`` breaks."""
    ours, theirs = tmp_path / "ours.csv", tmp_path / "theirs.csv"
    rows = [(f"M{i}", "700.HK", 100 * (i + 1)) for i in range(n)]
    ours.write_text("account,code,qty,trade_date\n" + "".join(f"{a},{c},{q},2026-12-24\n" for a, c, q in rows))
    theirs.write_text("account,code,qty\n" + "".join(f"{a},{c},{q - 10}\n" for a, c, q in rows))
    return ours, theirs


def _import(st: Store, tmp_path: Path, n: int = 6) -> list[dict]:  # type: ignore[type-arg]
    ours, theirs = _files(tmp_path, n)
    breaks.record_breaks(st, recon.reconcile_files("position", ours, theirs, AS_OF), ours, theirs, AS_OF, OLGA)
    return breaks.breaks(st, "unresolved", AS_OF)


def _count(st: Store, table: str) -> int:
    with st.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(S.metadata.tables[table])).scalar_one())


# ---------------------------------------------------------------------- roles on breaks
@pytest.mark.parametrize("who", [TOM, ABE], ids=["trader", "auditor"])
def test_trader_and_auditor_may_not_work_breaks(store: Store, tmp_path: Path, who: User) -> None:
    rows = _import(store, tmp_path)
    b = int(rows[0]["id"])
    audits = _count(store, "audit_log")
    role = who.role_label
    for call in (lambda: breaks.assign(store, b, "olga", who), lambda: breaks.investigate(store, b, who),
                 lambda: breaks.resolve(store, b, who, "late file", "")):
        with pytest.raises(breaks.BreakError, match=rf"^{who.login} \({role}\) may not work reconciliation "
                                                    r"breaks: .*Operations, Risk officer, Supervisor or CRO"):
            call()
    after = {r["id"]: r for r in breaks.breaks(store, None, AS_OF)}
    assert (after[b]["status"], after[b]["assignee"], after[b]["version"]) == ("open", None, rows[0]["version"])
    assert _count(store, "audit_log") == audits  # nothing written


@pytest.mark.parametrize("who", [OLGA, RITA, SAM, CORA], ids=["operations", "risk_officer", "supervisor", "cro"])
def test_desk_roles_work_a_break_to_resolution(store: Store, tmp_path: Path, who: User) -> None:
    b = int(_import(store, tmp_path)[0]["id"])
    breaks.assign(store, b, "olga", who)
    breaks.investigate(store, b, who)
    breaks.resolve(store, b, who, "custodian booked late", "matched next day")
    (r,) = [x for x in breaks.breaks(store, "resolved", AS_OF) if x["id"] == b]
    assert (r["assignee"], r["resolved_by"], r["root_cause"]) == ("olga", who.login, "custodian booked late")


def test_import_refused_for_a_trader_before_any_file_is_read(store: Store, tmp_path: Path) -> None:
    ours, theirs = _files(tmp_path)
    m = {"account": "account", "code": "code", "qty": "qty"}
    with pytest.raises(breaks.BreakError, match=r"^tom \(Trader\) may not import reconciliation files"):
        recon_sources.run_import(store, TOM, "position", "HKSCC", str(tmp_path / "missing.csv"), str(theirs),
                                 AS_OF, m, m)
    with pytest.raises(breaks.BreakError, match=r"^abe \(Auditor\) may not record reconciliation imports"):
        breaks.record_breaks(store, recon.reconcile_files("position", ours, theirs, AS_OF), ours, theirs, AS_OF, ABE)
    assert _count(store, "recon_imports") == 0 and _count(store, "recon_breaks") == 0
    assert _count(store, "recon_sources") == 0  # no mapping saved either
    run = recon_sources.run_import(store, OLGA, "position", "HKSCC", str(ours), str(theirs), AS_OF, m, m)
    assert run.new and len(run.result.breaks) == 6
    with store.begin() as conn:
        assert conn.execute(select(S.recon_imports.c.imported_by)).scalar_one() == "olga"


# ---------------------------------------------------------------------- the view's size
def _resolve_at(st: Store, ids: list[int], at: datetime) -> None:
    for i in ids:
        breaks.resolve(st, i, OLGA, "late booking", "")
    with st.begin() as conn:
        conn.execute(update(S.recon_breaks).where(S.recon_breaks.c.id.in_(ids)).values(resolved_at=at))


def test_view_holds_unresolved_and_only_recently_resolved_breaks(store: Store, tmp_path: Path) -> None:
    ids = [int(r["id"]) for r in _import(store, tmp_path, n=8)]
    now = datetime.combine(AS_OF, datetime.min.time(), UTC) + timedelta(hours=9)
    _resolve_at(store, ids[:3], now - timedelta(days=45))  # long ago: left out
    _resolve_at(store, ids[3:4], now - timedelta(days=31))  # 31 days before 09:00 on as-of: left out
    _resolve_at(store, ids[4:5], datetime.combine(AS_OF - timedelta(days=30), datetime.min.time(), UTC))  # edge: in
    _resolve_at(store, ids[5:6], now - timedelta(days=2))
    v = recon_sources.load_view(store, AS_OF)
    got = {int(r["id"]): r["status"] for r in v.breaks}
    assert set(got) == set(ids[4:])  # two still open, two resolved in the last 30 days
    assert [got[i] for i in ids[6:]] == ["open", "open"]
    assert (v.resolved_shown, v.resolved_total) == (2, 6)
    assert v.resolved_text == "showing resolved breaks of the last 30 days (2 of 6 resolved in all)"
    # the row cap keeps the most recently resolved
    v1 = recon_sources.load_view(store, AS_OF, resolved_limit=1)
    assert {int(r["id"]) for r in v1.breaks if r["status"] == "resolved"} == {ids[5]}
    assert len(v1.breaks) == 3 and [r["id"] for r in v1.breaks] == sorted(r["id"] for r in v1.breaks)
    # every break is still there for the KRIs and the headless reads
    assert len(breaks.breaks(store, None, AS_OF)) == 8


# ---------------------------------------------------------------------- loss event ↔ incident
def _loss(incident_id: int | None, gross: float = 60_000.0) -> le.LossEventInput:
    at = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    return le.LossEventInput("Business Disruption & System Failures", "Trading & Sales", "system", date(2026, 11, 30),
                             at, gross, 10_000.0, "HKD", description="orders re-keyed after the router outage",
                             incident_id=incident_id)


def test_loss_event_linked_to_an_incident_round_trip(store: Store) -> None:
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    inc = incidents.log_incident(store, RITA, "Order router outage", "router down 10 min", "rita",
                                 detected_at=now - timedelta(days=1), now=now)
    other = incidents.log_incident(store, RITA, "Price feed stale", "", "rita", detected_at=now, now=now)
    a = le.record_loss_event(store, RITA, _loss(inc), now=now)
    b = le.record_loss_event(store, RITA, _loss(inc, 25_000.0), now=now)
    le.record_loss_event(store, RITA, _loss(None), now=now)
    with store.begin() as conn:
        assert conn.execute(select(S.loss_events.c.incident_id).where(S.loss_events.c.id == a)).scalar_one() == inc
        trail = conn.execute(select(S.audit_log.c.after).where(S.audit_log.c.entity == "loss_events",
                                                               S.audit_log.c.entity_key == str(a))).scalar_one()
    assert trail.endswith(f" · incident #{inc}")
    snap = le.load_snapshot(store, RITA, today=date(2026, 12, 1))
    by_id = {int(e["id"]): e for e in snap.events}
    assert by_id[a]["incident"] == f"#{inc} Order router outage (detected)" and by_id[b]["incident"] == by_id[a]["incident"]
    assert [e["incident"] for e in snap.events if e["incident_id"] is None] == [""]
    assert [r["id"] for r in snap.incidents] == [other, inc]  # the picker: newest first
    d = incidents.detail(store, inc)
    assert [x["id"] for x in d["loss_events"]] == [a, b]
    assert [x["net_hkd"] for x in d["loss_events"]] == [50_000.0, 15_000.0]  # gross − recoveries
    assert incidents.detail(store, other)["loss_events"] == []


def test_loss_event_for_a_missing_incident_names_the_field(store: Store) -> None:
    with pytest.raises(le.LossEventError, match=r"^Incident: #999 does not exist") as e:
        le.record_loss_event(store, RITA, _loss(999))
    assert e.value.field == "Incident" and _count(store, "loss_events") == 0


def test_picker_lists_open_and_recently_closed_incidents(store: Store) -> None:
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    ids = [incidents.log_incident(store, RITA, f"incident {i}", "", "rita", detected_at=now - timedelta(days=200 - i),
                                  now=now) for i in range(3)]
    with store.begin() as conn:  # one closed 91 days ago, one 89 days ago, one still open
        for i, days in ((ids[0], 91), (ids[1], 89)):
            conn.execute(update(S.incidents).where(S.incidents.c.id == i)
                         .values(state="closed", closed_at=now - timedelta(days=days)))
        got = [r["id"] for r in incidents.linkable(conn, now)]
    assert got == [ids[2], ids[1]]
    assert incidents.label({"id": 7, "title": "Feed down", "severity": 2, "state": "closed"}) == \
        "#7 SEV-2 Feed down (closed)"
