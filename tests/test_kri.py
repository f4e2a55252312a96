"""KRIs (RISK_METHODS §7): colour at every threshold boundary, trend, the 5-business-day amber
auto-escalation, the investigation / CRO tasks opened once, readings entered and imported with bad
rows named, values computed from the store's records with their drill-down, commentary, threshold
edits as change requests, and the demo history."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert, select, text

from models import schema as S
from services import kri
from services.auth import User
from services.demo_store import seed_demo_governance, seed_demo_kris
from services.store import Store

RITA = User("rita", "Rita", "risk_officer")
TOM = User("tom", "Tom", "trader")
NOW = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(sqlite_url: str) -> Store:
    st = Store(sqlite_url)
    st.migrate()
    seed_demo_governance(st)
    return st


@pytest.mark.parametrize(("value", "want"), [
    (1.99, "green"), (2.0, "amber"), (4.99, "amber"), (5.0, "red"), (9.0, "red"), (None, "")])
def test_colour_higher_worse_boundaries(value: float | None, want: str) -> None:
    assert kri.colour(value, "higher_worse", 2.0, 5.0) == want  # NIGO_RATE: amber 2, red 5


@pytest.mark.parametrize(("value", "want"), [
    (95.01, "green"), (95.0, "amber"), (90.01, "amber"), (90.0, "red"), (80.0, "red")])
def test_colour_lower_worse_boundaries(value: float, want: str) -> None:
    assert kri.colour(value, "lower_worse", 95.0, 90.0) == want  # STP_RATE: amber 95, red 90


def test_colours_vectorised_agree_with_colour() -> None:
    v = np.array([1.99, 2.0, 4.99, 5.0, np.nan])
    assert kri.colours(v, "higher_worse", 2.0, 5.0).tolist() == ["green", "amber", "amber", "red", ""]
    assert kri.colours(np.array([95.01, 95.0, 90.0]), "lower_worse", 95.0, 90.0).tolist() == ["green", "amber", "red"]


def test_trend_from_the_last_readings() -> None:
    assert kri.trend([1.0, 2.0]) == "up" and kri.ARROWS["up"] == "↑"
    assert kri.trend([3.0, 2.0, 1.0]) == "down"
    assert kri.trend([5.0, 2.0, 2.0]) == "flat"
    assert kri.trend([2.0]) == ""


def test_threshold_order_checked() -> None:
    kri.check_thresholds("higher_worse", 2.0, 5.0)
    kri.check_thresholds("lower_worse", 95.0, 90.0)
    with pytest.raises(kri.KriError, match="red .5. must be above amber .5."):
        kri.check_thresholds("higher_worse", 5.0, 5.0)
    with pytest.raises(kri.KriError, match="must be below amber"):
        kri.check_thresholds("lower_worse", 90.0, 95.0)


def _bdays(end: date, n: int) -> list[date]:
    """n consecutive HK business days ending ``end``."""
    hol = kri._holidays()
    d = np.busday_offset(np.datetime64(end, "D"), np.arange(-(n - 1), 1), roll="backward", holidays=hol)
    return d.astype(date).tolist()  # type: ignore[no-any-return]


def test_amber_five_business_days_is_amber_six_is_red_across_weekend_and_holiday() -> None:
    # Fri 18 Dec … Tue 29 Dec 2026: 25 Dec a holiday, 26–27 a weekend
    days = _bdays(date(2026, 12, 29), 7)
    assert np.busday_count(days[0], days[-1], holidays=kri._holidays()) == 6
    k = {"code": "NIGO_RATE", "name": "NIGO", "unit": "%", "direction": "higher_worse", "amber": 2.0, "red": 5.0,
         "source": "entered"}
    five = kri.status_of(k, np.array(days, "datetime64[D]"), np.array([1.0, 1.5, 3, 3, 3, 3, 3]))
    assert (five.streak, five.raw, five.colour, five.escalated) == (5, "amber", "amber", False)
    six = kri.status_of(k, np.array(days, "datetime64[D]"), np.array([1.0, 3, 3, 3, 3, 3, 3]))
    assert (six.streak, six.raw, six.colour, six.escalated) == (6, "amber", "red", True)
    # a missing business day breaks the run: six amber readings with a gap are not six consecutive days
    gap = days[:3] + days[4:]
    broken = kri.status_of(k, np.array(gap, "datetime64[D]"), np.array([3.0, 3, 3, 3, 3, 3]))
    assert broken.streak == 3 and broken.colour == "amber"


def _reading(store: Store, code: str, day: date, value: float) -> None:
    with store.begin() as conn:
        conn.execute(insert(S.kri_readings).values(kri_code=code, day=day, value=value, source="entered"))


def test_green_to_amber_opens_one_investigation_due_in_24h(store: Store) -> None:
    d = _bdays(date(2026, 12, 18), 3)
    _reading(store, "NIGO_RATE", d[0], 1.0)
    assert kri.enter_reading(store, RITA, "NIGO_RATE", d[1], 2.0, now=NOW) != []
    got = kri.tasks(store)
    assert [(t["kri_code"], t["kind"]) for t in got] == [("NIGO_RATE", "investigation")]
    assert got[0]["due_at"].replace(tzinfo=UTC) - got[0]["opened_at"].replace(tzinfo=UTC) == timedelta(hours=24)
    assert kri.sync_tasks(store, "rita", now=NOW) == []  # idempotent
    assert kri.enter_reading(store, RITA, "NIGO_RATE", d[2], 2.5, now=NOW) == []  # amber → amber: nothing new
    with store.begin() as conn:
        assert conn.execute(text("select count(*) from corrective_actions")).scalar() == 0
        assert conn.execute(text("select count(*) from audit_log where entity = 'kri_tasks'")).scalar() == 1


def test_red_opens_cro_escalation_with_action_plan_due_in_48h_once(store: Store) -> None:
    d = _bdays(date(2026, 12, 18), 2)
    _reading(store, "STP_RATE", d[0], 97.0)
    kri.enter_reading(store, RITA, "STP_RATE", d[1], 90.0, now=NOW)  # lower is worse: 90 is red
    got = kri.tasks(store)
    assert [(t["kri_code"], t["kind"]) for t in got] == [("STP_RATE", "cro_escalation")]
    assert got[0]["due_at"].replace(tzinfo=UTC) - NOW == timedelta(hours=48)
    with store.begin() as conn:
        acts = conn.execute(select(S.corrective_actions)).all()
    assert len(acts) == 1 and acts[0].source_kind == "kri" and acts[0].source_id == got[0]["id"]
    assert acts[0].owner == "cora" and acts[0].due_date == date(2026, 12, 23)
    kri.enter_reading(store, RITA, "STP_RATE", d[1], 89.0, now=NOW)  # still red: nothing more
    assert len(kri.tasks(store)) == 1
    kri.close_task(store, RITA, got[0]["id"], "plan agreed")
    assert kri.tasks(store) == []


def test_sixth_amber_day_auto_escalates_to_cro(store: Store) -> None:
    days = _bdays(date(2026, 12, 29), 7)
    _reading(store, "SETTLE_FAIL", days[0], 0.5)
    for d in days[1:6]:
        kri.enter_reading(store, RITA, "SETTLE_FAIL", d, 2.0, now=NOW)  # amber from 1.0
    assert [t["kind"] for t in kri.tasks(store)] == ["investigation"]
    kri.enter_reading(store, RITA, "SETTLE_FAIL", days[6], 2.0, now=NOW)
    assert sorted(t["kind"] for t in kri.tasks(store)) == ["cro_escalation", "investigation"]
    (st,) = kri.statuses(store, ["SETTLE_FAIL"])
    assert (st.raw, st.colour, st.escalated, st.streak) == ("amber", "red", True, 6)


def test_entry_permissions_and_computed_refused(store: Store) -> None:
    with pytest.raises(kri.KriError, match="may not enter"):
        kri.enter_reading(store, TOM, "NIGO_RATE", date(2026, 12, 1), 1.0)
    with pytest.raises(kri.KriError, match="computed"):
        kri.enter_reading(store, RITA, "OPEN_INCIDENTS", date(2026, 12, 1), 1.0)
    with pytest.raises(kri.KriError, match="unknown KRI"):
        kri.enter_reading(store, RITA, "NOPE", date(2026, 12, 1), 1.0)


def test_import_names_bad_rows_and_stores_nothing(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("kri_code,day,value\nNIGO_RATE,2026-12-01,1.5\nFOO,2026-12-01,1\n"
                   "STP_RATE,2026-13-01,97\nSTP_RATE,2026-12-02,abc\n")
    with pytest.raises(kri.KriError) as e:
        kri.import_readings(store, RITA, bad)
    msg = str(e.value)
    assert "row 3: unknown KRI 'FOO'" in msg and "row 4: day '2026-13-01' is not a date" in msg
    assert "row 5: value 'abc' is not a number" in msg
    with store.begin() as conn:
        assert conn.execute(text("select count(*) from kri_readings")).scalar() == 0
    good = tmp_path / "good.xlsx"
    pd.DataFrame({"kri_code": ["nigo_rate", "STP_RATE"], "day": ["2026-12-01", "2026-12-01"],
                  "value": [1.5, 96.0]}).to_excel(good, index=False)
    assert kri.import_readings(store, RITA, good) == 2
    assert kri.import_readings(store, RITA, good) == 2  # re-import replaces, never duplicates
    with store.begin() as conn:
        assert conn.execute(text("select count(*) from kri_readings")).scalar() == 2
    missing = tmp_path / "m.csv"
    missing.write_text("code,value\nX,1\n")
    with pytest.raises(kri.KriError, match="missing column.s. kri_code, day"):
        kri.import_readings(store, RITA, missing)


def test_computed_values_and_drilldown(store: Store) -> None:
    as_of = date(2026, 12, 29)
    now = datetime(2026, 12, 29, 8, tzinfo=UTC)
    with store.begin() as conn:
        conn.execute(insert(S.incidents), [
            {"title": t, "detected_by": "olga", "detected_at": now, "state": s, "created_by": "olga"}
            for t, s in (("feed down", "contain"), ("late file", "closed"), ("ems freeze", "detect"))])
        conn.execute(insert(S.trade_errors), [
            {"error_type": "quantity", "trade_date": as_of, "detected_at": now, "est_pnl": p, "severity": "L1",
             "status": s, "created_by": "tom"}
            for p, s in ((-12_000.0, "open"), (-3_500.5, "open"), (8_000.0, "open"), (-50_000.0, "closed"))])
        # breaks: item dates 6 and 5 business days before 29 Dec (holiday 25, weekend 26–27)
        b = [{"kind": "position", "key": k, "type": "mismatch", "field": "qty", "item_date": d,
              "first_seen": now, "last_seen": now, "status": st}
             for k, d, st in (("A/1", date(2026, 12, 18), "open"), ("A/2", date(2026, 12, 21), "open"),
                              ("A/3", date(2026, 12, 1), "resolved"), ("A/4", date(2026, 12, 17), "assigned"))]
        conn.execute(insert(S.recon_breaks), b)
        conn.execute(insert(S.recon_imports), [
            {"kind": "position", "ours_sha256": "a", "theirs_sha256": "b", "as_of": as_of, "imported_by": "olga",
             "imported_at": now - timedelta(hours=1), "matched": 10, "auto_resolved": 0, "breaks": 10},
            {"kind": "position", "ours_sha256": "c", "theirs_sha256": "d", "as_of": as_of, "imported_by": "olga",
             "imported_at": now, "matched": 995, "auto_resolved": 3, "breaks": 5}])
    v, recs = kri.drilldown(store, "OPEN_INCIDENTS", as_of)
    assert v == 2 and {r["title"] for r in recs} == {"feed down", "ems freeze"}
    v, recs = kri.drilldown(store, "ERROR_ACCOUNT", as_of)
    assert v == pytest.approx(15_500.5) and len(recs) == 2
    v, recs = kri.drilldown(store, "AGED_BREAKS", as_of)
    assert v == 2 and {r["key"] for r in recs} == {"A/1", "A/4"}  # 6 and 7 business days; A/2 is 5
    v, recs = kri.drilldown(store, "BREAK_RATE", as_of)
    assert v == pytest.approx(0.5) and recs[0]["matched"] == 995  # 5 / (995 + 5) × 100, the latest import
    v, recs = kri.drilldown(store, "MARGIN_CALLS", as_of)
    assert v == 0 and recs == []
    with pytest.raises(kri.KriError, match="not computed"):
        kri.drilldown(store, "STP_RATE", as_of)
    got = kri.compute_all(store, "rita", as_of, now=now)
    assert got == {"OPEN_INCIDENTS": 2.0, "AGED_BREAKS": 2.0, "MARGIN_CALLS": 0.0,
                   "ERROR_ACCOUNT": pytest.approx(15_500.5), "BREAK_RATE": pytest.approx(0.5)}
    st = {s.code: s for s in kri.statuses(store)}
    assert st["BREAK_RATE"].colour == "amber" and st["OPEN_INCIDENTS"].colour == "green"
    assert kri.compute_all(store, "rita", as_of, now=now) == got  # same day again: replaced, not doubled
    with store.begin() as conn:
        assert conn.execute(text("select count(*) from kri_readings")).scalar() == 5


def test_commentary_only_for_amber_and_red(store: Store) -> None:
    _reading(store, "NIGO_RATE", date(2026, 12, 1), 1.0)
    _reading(store, "NIGO_RATE", date(2026, 12, 2), 3.0)
    with pytest.raises(kri.KriError, match="green .* commentary is for amber and red"):
        kri.set_comment(store, RITA, "NIGO_RATE", date(2026, 12, 1), "fine")
    kri.set_comment(store, RITA, "NIGO_RATE", date(2026, 12, 2), "new broker onboarding; cleared by Friday")
    (st,) = kri.statuses(store, ["NIGO_RATE"])
    assert st.comment == "new broker onboarding; cleared by Friday"
    with pytest.raises(kri.KriError, match="no reading"):
        kri.set_comment(store, RITA, "NIGO_RATE", date(2026, 12, 3), "x")


def test_threshold_edit_is_a_change_request(store: Store) -> None:
    from services import changes

    rid = kri.propose_thresholds(store, RITA, "NIGO_RATE", 2.5, 6.0, "fewer false ambers")
    req = changes.get(store, rid)
    assert (req.kind, req.target_key, req.after, req.status) == ("kri", {"code": "NIGO_RATE"},
                                                                  {"amber": 2.5, "red": 6.0}, "pending")
    with pytest.raises(kri.KriError, match="must be above amber"):
        kri.propose_thresholds(store, RITA, "NIGO_RATE", 6.0, 2.5, "x")
    (row,) = [k for k in kri.catalogue(store) if k["code"] == "NIGO_RATE"]
    assert (row["amber"], row["red"]) == (2.0, 5.0)  # unchanged until approved


def test_demo_history_two_years_fast_and_every_state(store: Store) -> None:
    t0 = time.perf_counter()
    n = seed_demo_kris(store)
    assert time.perf_counter() - t0 < 0.3 * 3  # 0.3 s target; slack for a shared CI core
    assert n > 12 * 490  # ~250 business days a year
    sts = {s.code: s for s in kri.statuses(store)}
    assert len(sts) == 12 and all(len(s.values) == 30 for s in sts.values())
    assert sts["NIGO_RATE"].colour == "red"
    assert sts["SETTLE_FAIL"].escalated and sts["SETTLE_FAIL"].colour == "red"
    assert sts["STP_RATE"].colour == "amber"
    assert {s.colour for s in sts.values()} == {"green", "amber", "red"}
    kinds = sorted((t["kri_code"], t["kind"]) for t in kri.tasks(store))
    assert kinds == [("NIGO_RATE", "cro_escalation"), ("SETTLE_FAIL", "cro_escalation"),
                     ("STP_RATE", "investigation")]
