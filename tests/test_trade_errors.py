"""Trade errors (RISK_METHODS §7): L1–L3 severity at every rule boundary, override only with a reason,
review sign-offs per severity (which roles, one person once, never the reporter), closing blocked until
everything is done, the gains policy and error account, and the monthly report checked by hand on a
small set (also read back from the xlsx), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from services import audit, auth
from services import trade_error_report as rep
from services import trade_errors as te
from services.auth import AuthError, User
from services.store import Store

OLGA = User("olga", "Olga", "operations")
TOM = User("tom", "Tom", "trader")
RITA = User("rita", "Rita", "risk_officer")
SAM = User("sam", "Sam", "supervisor")
DAN = User("dan", "Dan", "supervisor")
CORA = User("cora", "Cora", "cro")
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


@pytest.fixture
def store(sqlite_url: str) -> Store:
    st = Store(sqlite_url)
    st.migrate()
    return st


def _inp(pnl: float = -2_000.0, etype: str = "wrong_quantity", desk: str = "HK equities",
         day: date = date(2026, 11, 20), qty: float = 1_000.0, price: float = 50.0, **kw: object) -> te.TradeErrorInput:
    return te.TradeErrorInput(error_type=etype, desk=desk, trade_date=day, est_pnl=pnl,
                              erroneous=te.TradeLeg("M00001", "700.HK", "buy", qty, price),
                              correct=te.TradeLeg("M00001", "700.HK", "buy", qty / 10, price), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- severity rules
@pytest.mark.parametrize(("pnl", "impact", "clients", "large", "level"), [
    (-4_999.99, False, 0, False, "L1"),
    (4_999.99, False, 0, False, "L1"),
    (-5_000.0, False, 0, False, "L2"),
    (-50_000.0, False, 0, False, "L2"),
    (50_000.0, False, 0, False, "L2"),
    (-50_000.01, False, 0, False, "L3"),
    (50_000.01, False, 0, False, "L3"),
    (-100.0, True, 1, False, "L2"),  # a client impacted / notified
    (-100.0, True, 2, False, "L3"),  # several clients hit
    (-100.0, False, 0, True, "L3"),  # wrong side on a large position
])
def test_severity_at_every_rule_boundary(pnl: float, impact: bool, clients: int, large: bool, level: str) -> None:
    assert te.severity(pnl, impact, clients, large)[0] == level


def test_large_position_is_a_wrong_side_of_one_million_or_marked() -> None:
    assert te.is_large_wrong_side("wrong_side", 1_000_000.0, False)
    assert not te.is_large_wrong_side("wrong_side", 999_999.99, False)
    assert te.is_large_wrong_side("wrong_side", 10.0, True)
    assert not te.is_large_wrong_side("wrong_quantity", 5_000_000.0, True)
    assert _inp(-100.0, "wrong_side", qty=20_000, price=50.0).computed()[0] == "L3"  # 1,000,000 notional
    assert _inp(-100.0, "wrong_side", qty=19_999, price=50.0).computed()[0] == "L1"


def test_create_computes_severity_and_audits(store: Store) -> None:
    eid = te.create_ticket(store, OLGA, _inp(-7_500.0), NOW)
    t = te.ticket(store, eid)
    assert (t["severity"], t["effective_severity"], t["status"]) == ("L2", "L2", "open")
    assert t["erroneous"]["qty"] == 1_000.0 and t["correct"]["qty"] == 100.0
    assert t["required_reviews"] == ["supervisor", "desk_head", "compliance"]
    assert [r["action"] for r in audit.rows(store) if r["entity"] == "trade_errors"] == ["report"]


@pytest.mark.parametrize(("kw", "field"), [
    ({"etype": "oops"}, "Type"), ({"desk": " "}, "Desk"), ({"day": date(2026, 12, 30)}, "Trade date"),
    ({"qty": 0.0}, "Erroneous quantity"), ({"price": -1.0}, "Erroneous price"),
    ({"clients_affected": 2}, "Client impact")])
def test_bad_ticket_names_the_field(store: Store, kw: dict[str, object], field: str) -> None:
    with pytest.raises(te.TradeErrorError) as e:
        te.create_ticket(store, OLGA, _inp(**kw), NOW)  # type: ignore[arg-type]
    assert e.value.field == field and te.tickets(store) == []


def test_override_needs_a_reason_and_a_reviewer(store: Store) -> None:
    eid = te.create_ticket(store, OLGA, _inp(-1_000.0), NOW)
    with pytest.raises(te.TradeErrorError, match="needs a reason"):
        te.override_severity(store, SAM, eid, "L3", "  ")
    with pytest.raises(AuthError):
        te.override_severity(store, RITA, eid, "L3", "client is a fund")
    te.override_severity(store, SAM, eid, "L3", "client is a fund: regulator interest")
    t = te.ticket(store, eid)
    assert (t["severity"], t["effective_severity"], t["override_reason"]) == (
        "L1", "L3", "client is a fund: regulator interest")
    assert t["required_reviews"] == ["supervisor", "desk_head", "compliance", "cro"]
    te.override_severity(store, CORA, eid, None, "back to the computed level")
    assert te.ticket(store, eid)["effective_severity"] == "L1"


# ---------------------------------------------------------------------- sign-offs and closing
def _finish(store: Store, eid: int, pnl: float) -> None:
    if pnl < 0:
        te.transfer_to_error_account(store, OLGA, eid)
    te.set_root_cause(store, OLGA, eid, ["ticket keyed twice", "no duplicate check"], "process")
    te.resolve_pnl(store, OLGA, eid, pnl, 0.0, "re-booked", "client" if pnl > 0 else "")


def test_l1_needs_only_a_supervisor(store: Store) -> None:
    eid = te.create_ticket(store, OLGA, _inp(-1_000.0), NOW)
    with pytest.raises(te.TradeErrorError, match="needs no Desk head"):
        te.sign_off(store, DAN, eid, "desk_head")
    _finish(store, eid, -1_000.0)
    with pytest.raises(te.TradeErrorError, match="Supervisor sign-off outstanding"):
        te.close(store, OLGA, eid)
    te.sign_off(store, SAM, eid, "supervisor", "checked")
    te.close(store, OLGA, eid)
    assert te.ticket(store, eid)["status"] == "closed"
    with pytest.raises(te.TradeErrorError, match="closed"):
        te.notify_client(store, OLGA, eid)


def test_l2_and_l3_reviews_one_person_once_never_the_reporter(store: Store) -> None:
    eid = te.create_ticket(store, RITA, _inp(-60_000.0), NOW)  # L3, reported by a risk officer
    with pytest.raises(AuthError, match="may not sign as CRO"):
        te.sign_off(store, SAM, eid, "cro")
    with pytest.raises(AuthError, match="reported trade error"):
        te.sign_off(store, RITA, eid, "compliance")
    with pytest.raises(AuthError, match="may not sign"):
        te.sign_off(store, TOM, eid, "supervisor")
    te.sign_off(store, SAM, eid, "supervisor")
    with pytest.raises(AuthError, match="one person signs once"):
        te.sign_off(store, SAM, eid, "desk_head")
    with pytest.raises(te.TradeErrorError, match="already signed"):
        te.sign_off(store, DAN, eid, "supervisor")
    te.sign_off(store, DAN, eid, "desk_head")
    t = te.ticket(store, eid)
    assert t["missing_reviews"] == ["compliance", "cro"] and t["reviews_text"] == "2/4"
    _finish(store, eid, -61_000.0)
    with pytest.raises(te.TradeErrorError, match="Compliance sign-off, CRO sign-off outstanding"):
        te.close(store, OLGA, eid)
    te.sign_off(store, User("cleo", "Cleo", "risk_officer"), eid, "compliance")
    te.sign_off(store, CORA, eid, "cro")
    te.close(store, SAM, eid)
    assert te.ticket(store, eid)["status"] == "closed"


def test_close_needs_notification_error_account_resolution_and_root_cause(store: Store) -> None:
    eid = te.create_ticket(store, OLGA, _inp(-2_000.0, client_impact=True, clients_affected=1), NOW)  # L2
    assert te.ticket(store, eid)["blockers"] == [
        "Supervisor sign-off", "Desk head sign-off", "Compliance sign-off", "P&L resolution",
        "5-whys root cause", "client notification", "error-account transfer"]
    with pytest.raises(te.TradeErrorError, match="error account first"):
        te.resolve_pnl(store, OLGA, eid, -2_000.0, 0.0, "re-booked")
    te.transfer_to_error_account(store, OLGA, eid, NOW)
    with pytest.raises(te.TradeErrorError, match="exceeds the loss"):
        te.resolve_pnl(store, OLGA, eid, -2_000.0, 2_000.01, "re-booked")
    te.resolve_pnl(store, OLGA, eid, -2_100.0, 500.0, "re-booked; broker refunded 500")
    with pytest.raises(te.TradeErrorError, match="Why 1"):
        te.set_root_cause(store, OLGA, eid, ["", " "], "people")
    te.set_root_cause(store, OLGA, eid, ["a", "b", "c", "d", "e"], "people")
    te.notify_client(store, OLGA, eid, "phoned", NOW)
    for u, role in ((SAM, "supervisor"), (DAN, "desk_head"), (RITA, "compliance")):
        te.sign_off(store, u, eid, role)
    t = te.ticket(store, eid)
    assert t["blockers"] == [] and t["gains_policy"] == "loss_error_account" and t["whys"][4] == "e"
    assert t["client_notified_at"] is not None and t["pnl"] == -2_100.0
    te.close(store, OLGA, eid)


def test_a_gain_needs_a_gains_policy(store: Store) -> None:
    eid = te.create_ticket(store, OLGA, _inp(3_000.0), NOW)
    with pytest.raises(te.TradeErrorError, match="a gain needs a policy"):
        te.resolve_pnl(store, OLGA, eid, 3_000.0, 0.0, "re-booked")
    with pytest.raises(te.TradeErrorError, match="only a loss is recovered"):
        te.resolve_pnl(store, OLGA, eid, 3_000.0, 10.0, "re-booked", "charity")
    te.resolve_pnl(store, OLGA, eid, 3_000.0, 0.0, "re-booked", "charity")
    assert te.ticket(store, eid)["gains_policy"] == "charity"
    assert "error-account transfer" not in te.ticket(store, eid)["blockers"]  # a gain is not moved


# ---------------------------------------------------------------------- the monthly report
def _small_month(store: Store) -> None:
    """Six November errors and one October error; the numbers below are worked out by hand."""
    rows = [  # pnl, type, desk, cause, final, recovery
        (-2_000.0, "wrong_quantity", "HK equities", "people", -2_000.0, 0.0),      # L1
        (-8_000.0, "wrong_quantity", "HK equities", "process", -9_000.0, 1_500.0),  # L2
        (1_200.0, "duplicate", "US equities", "system", 1_000.0, 0.0),             # L1, a gain
        (-70_000.0, "wrong_side", "US equities", "people", None, 0.0),             # L3, not resolved
        (-400.0, "price", "HK equities", None, None, 0.0),                          # L1, not assessed
        (-5_000.0, "wrong_account", "Retail dealing", "people", -4_000.0, 4_000.0),  # L2, fully recovered
    ]
    for pnl, etype, desk, cause, final, recovery in rows:
        eid = te.create_ticket(store, OLGA, _inp(pnl, etype, desk, date(2026, 11, 3)), NOW)
        if cause:
            te.set_root_cause(store, OLGA, eid, ["why"], cause)
        if final is not None:
            if final < 0:
                te.transfer_to_error_account(store, OLGA, eid)
            te.resolve_pnl(store, OLGA, eid, final, recovery, "settled", "client" if final > 0 else "")
    te.create_ticket(store, OLGA, _inp(-100.0, day=date(2026, 10, 30)), NOW)
    rep.set_trade_volume(store, OLGA, date(2026, 11, 17), 2_400)
    rep.set_trade_volume(store, OLGA, date(2026, 10, 1), 2_000)


def test_monthly_report_by_hand(store: Store, tmp_path: Path) -> None:
    _small_month(store)
    r = rep.monthly_report(store, date(2026, 11, 1), trend_months=3)
    s = r.summary
    # gross loss: 2,000 + 9,000 + 70,000 + 400 + 4,000 = 85,400; recovery 1,500 + 4,000; gains 1,000
    assert (s["errors"], s["trades"], s["gross_loss"], s["recovery"], s["net_loss"], s["gains"]) == (
        6, 2_400, 85_400.0, 5_500.0, 79_900.0, 1_000.0)
    assert s["errors_per_1000_trades"] == pytest.approx(2.5)  # 6 / 2,400 × 1,000
    t = r.by_type.set_index("error_type")
    assert t.loc["wrong_quantity", ["errors", "gross_loss", "recovery", "net_loss"]].tolist() == [
        2, 11_000.0, 1_500.0, 9_500.0]
    assert t.loc["wrong_security", "errors"] == 0 and len(t) == 7
    sev = r.by_severity.set_index("level")
    assert sev["errors"].tolist() == [3, 2, 1]
    assert sev.loc["L2", "net_loss"] == 7_500.0  # 9,000 − 1,500 + 4,000 − 4,000
    desk = r.by_desk.set_index("desk")
    assert desk.loc["US equities", ["errors", "gross_loss", "gains"]].tolist() == [2, 70_000.0, 1_000.0]
    assert desk.loc["HK equities", "errors"] == 3 and r.by_desk["desk"].iloc[0] == "HK equities"
    cause = r.by_root_cause.set_index("root_cause")
    assert cause["errors"].tolist() == [3, 1, 1, 0, 1]  # people, process, system, external, not assessed
    assert cause.loc["people", "share_pct"] == pytest.approx(50.0)
    assert r.trend["month"].tolist() == ["2026-09", "2026-10", "2026-11"]
    assert r.trend["errors"].tolist() == [0, 1, 6]
    assert r.trend["errors_per_1000_trades"].tolist()[1:] == pytest.approx([0.5, 2.5])
    assert r.trend["trades"].isna().tolist() == [True, False, False]
    assert rep.monthly_report(store, date(2026, 11, 1), trades=3_000).summary["errors_per_1000_trades"] == 2.0
    path = rep.export_monthly_report(r, tmp_path / "errors.xlsx")
    wb = load_workbook(path, read_only=True)
    summary = {row[0]: row[1] for row in wb["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["Net loss (HKD)"] == 79_900.0 and summary["Errors per 1,000 trades"] == pytest.approx(2.5)
    by_type = list(wb["By type"].iter_rows(values_only=True))
    assert by_type[0][:3] == ("Type code", "Type", "Errors") and by_type[2][:3] == ("wrong_quantity", "Wrong quantity", 2)
    assert len(list(wb["Errors"].iter_rows(values_only=True))) == 7
    wb.close()


def test_month_without_a_trade_count_has_no_rate(store: Store) -> None:
    te.create_ticket(store, OLGA, _inp(-100.0, day=date(2026, 9, 2)), NOW)
    s = rep.monthly_report(store, date(2026, 9, 1)).summary
    assert s["errors"] == 1 and s["trades"] is None and s["errors_per_1000_trades"] != s["errors_per_1000_trades"]


def test_demo_tickets_and_volumes(store: Store) -> None:
    from services.demo_store import seed_demo_governance

    seed_demo_governance(store)
    n = te.seed_trade_errors(store, today=date(2026, 11, 25))
    assert n > 40 and te.seed_trade_errors(store) == 0
    ts = te.tickets(store)
    closed = [t for t in ts if t["status"] == "closed"]
    assert closed and all(t["blockers"] == [] for t in closed)
    assert any(t["status"] == "open" for t in ts)
    assert auth.get_user(store, "dan") is not None
    assert rep.monthly_report(store, date(2026, 10, 1)).summary["trades"] > 0
    assert json.loads(ts[0]["erroneous_trade"])["qty"] > 0


# ---------------------------------------------------------------------- PostgreSQL
@pytest.mark.postgres
def test_postgres_ticket_sign_off_and_report(pg_url: str) -> None:
    st = Store(pg_url)
    st.migrate()
    try:
        eid = te.create_ticket(st, OLGA, _inp(-8_000.0), NOW)
        te.sign_off(st, SAM, eid, "supervisor")
        with pytest.raises(AuthError, match="one person signs once"):
            te.sign_off(st, SAM, eid, "desk_head")
        te.sign_off(st, DAN, eid, "desk_head")
        te.sign_off(st, RITA, eid, "compliance")
        _finish(st, eid, -8_000.0)
        te.close(st, OLGA, eid)
        rep.set_trade_volume(st, OLGA, date(2026, 11, 1), 1_000)
        rep.set_trade_volume(st, OLGA, date(2026, 11, 1), 4_000)  # replaces
        s = rep.monthly_report(st, date(2026, 11, 1)).summary
        assert (s["errors"], s["trades"], s["errors_per_1000_trades"], s["net_loss"], s["closed"]) == (
            1, 4_000, 0.25, 8_000.0, 1)
        assert audit.verify(st).ok
    finally:
        st.dispose()


def test_corrective_action_from_the_root_cause(store: Store) -> None:
    from services import actions

    eid = te.create_ticket(store, OLGA, _inp(-9_000.0), NOW)
    with pytest.raises(actions.ActionError, match="owner"):
        te.add_corrective_action(store, OLGA, eid, "Add a duplicate-order check", " ", date(2026, 12, 15))
    aid = te.add_corrective_action(store, OLGA, eid, "Add a duplicate-order check", "tom", date(2026, 12, 15))
    t = te.ticket(store, eid)
    assert [(a["id"], a["status"], a["owner"]) for a in t["actions"]] == [(aid, "open", "tom")]
    assert te.tickets(store)[0]["actions"][0]["title"] == "Add a duplicate-order check"
    with pytest.raises(AuthError):
        te.add_corrective_action(store, TOM, eid, "x", "tom", date(2026, 12, 15))
