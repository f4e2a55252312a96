"""Loss events (RISK_METHODS §7): reporting route and due time at every threshold boundary, regulatory
duties from the notification matrix at its boundaries, net loss and HKD figures, field-named refusals
with nothing written, matrix edits only through four-eyes requests, chart aggregations checked by hand,
the demo year, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import func, insert, select

from models import schema as S
from services import audit, auth, changes
from services import loss_events as le
from services.auth import AuthError, User
from services.store import Store

RITA = User("rita", "Rita", "risk_officer")
SAM = User("sam", "Sam", "supervisor")
TOM = User("tom", "Tom", "trader")
FOUND = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)  # 10:30 Hong Kong time
NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
EDPM = "Execution, Delivery & Process Management"


def _store(url: str) -> Store:
    st = Store(url)
    st.migrate()
    auth.ensure_permissions(st)
    with st.begin() as conn:
        conn.execute(insert(S.currencies), [
            {"code": "HKD", "fx_rate": 1.0, "is_base": True, "updated_at": NOW},
            {"code": "USD", "fx_rate": 7.8, "is_base": False, "updated_at": NOW}])
    return st


@pytest.fixture
def store(sqlite_url: str) -> Store:
    return _store(sqlite_url)


def _inp(gross: float = 20_000.0, **kw: object) -> le.LossEventInput:
    base: dict[str, object] = dict(event_type=EDPM, business_line="Trading & Sales", cause="process",
                                   occurred_on=date(2026, 11, 18), discovered_at=FOUND, gross_loss=gross,
                                   recoveries=0.0, description="buy-in after a late settlement instruction")
    base.update(kw)
    return le.LossEventInput(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- routing
@pytest.mark.parametrize(("gross", "level", "who"), [
    (0.0, 0, ()),
    (10_000.0, 0, ()),
    (10_000.01, 1, ("Department head",)),
    (50_000.0, 1, ("Department head",)),
    (50_000.01, 2, ("Department head", "CRO")),
    (100_000.0, 2, ("Department head", "CRO")),
    (100_000.01, 3, ("Department head", "CRO", "Senior management and Risk Committee")),
    (500_000.0, 3, ("Department head", "CRO", "Senior management and Risk Committee")),
    (500_000.01, 4, ("Department head", "CRO", "Senior management and Risk Committee", "Board")),
])
def test_route_at_every_threshold(gross: float, level: int, who: tuple[str, ...]) -> None:
    r = le.reporting_route(gross, FOUND)
    assert (r.level, r.recipients) == (level, who)
    assert r.due_at == (FOUND + timedelta(hours=24) if level else None)
    assert r.assess_regulatory is (level == 4)
    assert r.text == ("Loss register only" if not level else
                      f"{', '.join(who)} within 24 h" + ("; assess regulatory notification" if level == 4 else ""))


def test_near_miss_stays_in_the_register() -> None:
    assert le.reporting_route(900_000.0, FOUND, near_miss=True).level == 0


# ---------------------------------------------------------------------- duties (the seeded matrix)
@pytest.mark.parametrize(("etype", "gross", "duties"), [
    ("External Fraud", 100_000.0, []),
    ("External Fraud", 100_000.01, [(3, 720)]),
    ("Internal Fraud", 0.01, [(2, 720)]),  # minimum 0: every internal fraud
    ("Business Disruption & System Failures", 5_000.0, [(5, 24)]),
    (EDPM, 500_000.0, []),
    (EDPM, 500_000.01, [(1, 24), (4, 24)]),  # the '*' board rule and the type's own
    ("Internal Fraud", 600_000.0, [(1, 24), (2, 720)]),  # earliest due first
    ("Damage to Physical Assets", 400_000.0, []),
])
def test_duty_from_the_matrix_at_its_boundaries(store: Store, etype: str, gross: float,
                                                duties: list[tuple[int, int]]) -> None:
    with store.begin() as conn:
        rules = le.matrix_rules(conn)
    got = le.regulatory_duties(rules, etype, gross, FOUND)
    assert [(d.rule_id, int((d.due_at - FOUND).total_seconds() // 3600)) for d in got] == duties  # type: ignore[operator]
    assert le.regulatory_duties(rules, etype, gross, FOUND, near_miss=True) == []


# ---------------------------------------------------------------------- recording
def test_record_computes_net_hkd_route_and_duty(store: Store) -> None:
    inp = _inp(80_000.0, recoveries=20_000.0, currency="USD", event_type="External Fraud",
               business_line="Retail Brokerage", cause="external", accounted_on=date(2026, 11, 21))
    assert inp.net_loss == 60_000.0
    eid = le.record_loss_event(store, RITA, inp, NOW)
    df = le.events_frame(store)
    row = df[df["id"] == eid].iloc[0]
    assert (row["gross_hkd"], row["net_loss"], row["net_hkd"]) == (624_000.0, 60_000.0, 468_000.0)
    assert row["reporting_route"].endswith("Board within 24 h; assess regulatory notification")
    assert pd.Timestamp(row["report_due_at"]).tz_localize(None) == pd.Timestamp(datetime(2026, 11, 21, 2, 30))
    assert row["regulatory_duty"] == ("Board notified; assess regulatory notification; "
                                      "FINRA 4530(b)-style statistical report")
    assert row["discovered_on"] == date(2026, 11, 20) and row["accounted_on"] == date(2026, 11, 21)
    recs = [r for r in audit.rows(store) if r["entity"] == "loss_events"]
    assert recs[-1]["action"] == "record" and recs[-1]["entity_key"] == str(eid)


@pytest.mark.parametrize(("kw", "field", "text"), [
    ({"recoveries": 25_000.0}, "Recoveries", "exceed the gross loss"),
    ({"discovered_at": datetime(2026, 11, 17, 2, 0, tzinfo=UTC)}, "Discovered", "before the occurrence"),
    ({"near_miss": True}, "Gross loss", "near miss has no loss"),
    ({"gross_loss": 0.0}, "Gross loss", "needs a loss above 0"),
    ({"gross_loss": -5.0}, "Gross loss", "≥ 0"),
    ({"currency": "JPY"}, "Currency", "no rate"),
    ({"event_type": "Bad luck"}, "Event type", "not a Basel event type"),
    ({"accounted_on": date(2026, 11, 1)}, "Accounted", "before the occurrence"),
    ({"occurred_on": date(2026, 12, 31)}, "Occurred", "future"),
    ({"description": "  "}, "Description", "what happened"),
])
def test_bad_input_names_the_field_and_writes_nothing(store: Store, kw: dict[str, object], field: str,
                                                      text: str) -> None:
    with pytest.raises(le.LossEventError, match=text) as e:
        le.record_loss_event(store, RITA, _inp(**kw), NOW)  # type: ignore[arg-type]
    assert e.value.field == field
    with store.begin() as conn:
        assert conn.execute(select(func.count()).select_from(S.loss_events)).scalar() == 0


def test_a_trader_may_not_record(store: Store) -> None:
    with pytest.raises(AuthError):
        le.record_loss_event(store, TOM, _inp(), NOW)


# ---------------------------------------------------------------------- the matrix through four-eyes
def test_matrix_edits_apply_only_on_approval(store: Store) -> None:
    for login, role in (("rita", "risk_officer"), ("sam", "supervisor")):
        auth.create_user(store, login, role, login, password=login + "-pw")
    rid = le.propose_rule(store, RITA, 3, "External Fraud", 20_000.0, "FINRA 4530(b)-style statistical report",
                          720, "report smaller frauds")
    with store.begin() as conn:
        assert le.pending_rule_requests(conn) == {3: f"request #{rid} pending (update)"}
        rules = le.matrix_rules(conn)
    assert le.regulatory_duties(rules, "External Fraud", 30_000.0, FOUND) == []  # not yet
    with pytest.raises(AuthError, match="four-eyes"):
        changes.approve(store, RITA, rid)
    assert changes.approve(store, SAM, rid, "ok") == "approved"
    eid = le.record_loss_event(store, RITA, _inp(30_000.0, event_type="External Fraud"), NOW)
    assert le.events_frame(store).set_index("id").loc[eid, "regulatory_duty"] == "FINRA 4530(b)-style statistical report"
    new = le.propose_rule(store, RITA, None, "Damage to Physical Assets", 250_000.0, "Insurer and regulator told",
                          48, "new duty")
    assert changes.get(store, new).op == "insert" and changes.get(store, new).target_key == {"id": 7}
    changes.approve(store, SAM, new, "ok")
    gone = le.propose_rule_delete(store, RITA, 7, "not needed after all")
    changes.approve(store, SAM, gone, "ok")
    with store.begin() as conn:
        by_id = {r["id"]: r for r in le.matrix_rules(conn)}
    assert sorted(by_id) == [1, 2, 3, 4, 5, 6] and by_id[3]["min_amount"] == 20_000.0


@pytest.mark.parametrize(("args", "field"), [
    (("Bad", 0.0, "x", 24), "Event type"), (("*", -1.0, "x", 24), "Above (HKD)"),
    (("*", 0.0, " ", 24), "Duty"), (("*", 0.0, "x", 0), "Due (hours)")])
def test_bad_rule_is_refused_before_a_request(store: Store, args: tuple, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(le.LossEventError) as e:
        le.propose_rule(store, RITA, 1, *args, "r")  # type: ignore[call-arg]
    assert e.value.field == field
    assert changes.listing(store, kind="notification_rule") == []


# ---------------------------------------------------------------------- aggregations
def _small_set(store: Store) -> None:
    for gross, rec, etype, line, cause, day in (
            (20_000.0, 5_000.0, EDPM, "Trading & Sales", "process", date(2026, 9, 3)),
            (60_000.0, 0.0, "External Fraud", "Retail Brokerage", "external", date(2026, 11, 2)),
            (10_000.0, 10_000.0, EDPM, "Retail Brokerage", "people", date(2026, 11, 9)),
            (0.0, 0.0, "Business Disruption & System Failures", "Trading & Sales", "system", date(2026, 11, 10))):
        at = datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)
        le.record_loss_event(store, RITA, _inp(gross, recoveries=rec, event_type=etype, business_line=line,
                                               cause=cause, occurred_on=day, discovered_at=at,
                                               near_miss=gross == 0.0), NOW)


def test_breakdowns_and_trend_by_hand(store: Store) -> None:
    _small_set(store)
    df = le.events_frame(store)
    by_type = le.breakdown(df, "event_type", le.EVENT_TYPES).set_index("event_type")
    assert by_type.loc[EDPM, ["events", "gross_hkd", "net_hkd"]].tolist() == [2, 30_000.0, 15_000.0]
    assert by_type.loc["External Fraud", "net_hkd"] == 60_000.0
    assert by_type.loc["Internal Fraud", "events"] == 0 and len(by_type) == 7
    assert by_type.loc["Business Disruption & System Failures", "near_misses"] == 1
    by_line = le.breakdown(df, "business_line")
    assert by_line["business_line"].tolist() == ["Retail Brokerage", "Trading & Sales"]  # largest net first
    assert by_line["net_hkd"].tolist() == [60_000.0, 15_000.0]
    by_cause = le.breakdown(df, "cause", le.CAUSES).set_index("cause")
    assert by_cause["events"].tolist() == [1, 1, 1, 1]
    tr = le.monthly_trend(df, date(2026, 11, 25), months=4)
    assert [str(m) for m in tr["month"]] == ["2026-08", "2026-09", "2026-10", "2026-11"]
    assert tr["events"].tolist() == [0, 1, 0, 3] and tr["near_misses"].tolist() == [0, 0, 0, 1]
    assert tr["gross_hkd"].tolist() == [0.0, 20_000.0, 0.0, 70_000.0]
    assert tr["net_hkd"].tolist() == [0.0, 15_000.0, 0.0, 60_000.0]


def test_empty_store_has_empty_charts(store: Store) -> None:
    snap = le.load_snapshot(store, RITA, date(2026, 11, 25))
    assert snap.events == [] and len(snap.trend) == 12 and int(snap.trend["events"].sum()) == 0
    assert snap.by_type["events"].sum() == 0 and snap.may_record and snap.may_request


def test_demo_year_is_routed_by_the_same_rules(store: Store) -> None:
    n = le.seed_loss_events(store, today=date(2026, 11, 25))
    assert n == 72 and le.seed_loss_events(store) == 0
    df = le.events_frame(store)
    assert df["discovered_on"].min() >= date(2025, 11, 30)
    for r in df.itertuples():
        at = r.discovered_at if r.discovered_at.tzinfo else r.discovered_at.replace(tzinfo=UTC)
        assert r.reporting_route == le.reporting_route(r.gross_hkd, at, r.near_miss).text
    assert df["near_miss"].sum() > 0 and (df["currency"] == "USD").any()


# ---------------------------------------------------------------------- PostgreSQL
@pytest.mark.postgres
def test_postgres_record_and_matrix_request(pg_url: str) -> None:
    owner = _store(pg_url)
    sfx = "_" + uuid.uuid4().hex[:6]
    rita, sam = User("rita" + sfx, "Rita", "risk_officer"), User("sam" + sfx, "Sam", "supervisor")
    auth.create_user(owner, rita.login, "risk_officer", "Rita", password="rita-pw")
    auth.create_user(owner, sam.login, "supervisor", "Sam", password="sam-pw")
    maker = Store(pg_url.replace("postgres@", f"{rita.login}@"), password="rita-pw")
    checker = Store(pg_url.replace("postgres@", f"{sam.login}@"), password="sam-pw")
    try:
        eid = le.record_loss_event(maker, rita, _inp(120_000.0, recoveries=20_000.0), NOW)
        row = le.events_frame(owner).set_index("id").loc[eid]
        assert (row["net_hkd"], row["reporting_route"]) == (
            100_000.0, "Department head, CRO, Senior management and Risk Committee within 24 h")
        rid = le.propose_rule(maker, rita, 4, EDPM, 100_000.0, "Early-warning notice", 24, "lower it")
        assert changes.approve(checker, sam, rid, "ok") == "approved"
        eid2 = le.record_loss_event(maker, rita, _inp(120_000.0), NOW)
        assert le.events_frame(owner).set_index("id").loc[eid2, "regulatory_duty"] == "Early-warning notice"
        assert audit.verify(owner).ok
    finally:
        maker.dispose()
        checker.dispose()
        owner.dispose()


def test_corrective_action_for_a_loss_event(store: Store) -> None:
    from services import actions

    eid = le.record_loss_event(store, RITA, _inp(), NOW)
    aid = le.add_corrective_action(store, RITA, eid, "Automate settlement instruction cut-off alerts", "olga",
                                   date(2026, 12, 20))
    assert [a["id"] for a in actions.actions(store, source_kind="loss_event", source_id=eid)] == [aid]
    snap = le.load_snapshot(store, RITA, date(2026, 11, 25))
    assert snap.events[0]["actions"] == "1 action, 1 not verified"
    with pytest.raises(le.LossEventError, match="does not exist"):
        le.add_corrective_action(store, RITA, 999, "x", "olga", date(2026, 12, 20))
    with pytest.raises(AuthError):
        le.add_corrective_action(store, TOM, eid, "x", "olga", date(2026, 12, 20))


def test_report_state_and_mark_reported(store: Store) -> None:
    due = FOUND + timedelta(hours=24)
    assert le.report_state(None, None, NOW) == ""
    assert le.report_state(due, None, due) == "due"  # at the due time, not yet overdue
    assert le.report_state(due, None, due + timedelta(seconds=1)) == "overdue"
    assert le.report_state(due, due + timedelta(hours=5), NOW) == "reported"
    small = le.record_loss_event(store, RITA, _inp(9_000.0), NOW)
    with pytest.raises(le.LossEventError, match="nobody to report to"):
        le.mark_reported(store, RITA, small)
    eid = le.record_loss_event(store, RITA, _inp(60_000.0), NOW)
    le.mark_reported(store, RITA, eid, "emailed department head and CRO", NOW)
    with pytest.raises(le.LossEventError, match="already reported"):
        le.mark_reported(store, RITA, eid)
    ev = {e["id"]: e for e in le.load_snapshot(store, RITA, date(2026, 11, 25)).events}
    assert ev[eid]["report_state"] == "reported" and ev[eid]["reported_by"] == "rita"
    assert ev[small]["report_state"] == ""
    assert [r["after"] for r in audit.rows(store) if r["action"] == "reported"] == [
        "Department head, CRO within 24 h: emailed department head and CRO"]
