"""Credit usage (RISK_METHODS §2): account over-limit, credit groups, company limits; blacklist; the
credit tables are changed only through approved requests (and not at all by app logins on Postgres)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services import auth, changes
from services.credit import blacklisted_accounts, credit_usage
from services.margin import MarginEngine
from services.store import Store
from tests.test_margin_formulas import _acct, make_book


def _store(url: str) -> Store:
    st = Store(url)
    st.migrate()
    # loans: M1 60,000 (limit 50,000 → 10,000 over), M2 30,000 (limit 100,000), M3 none
    book = make_book([_acct("M1", -60_000, limit=50_000), _acct("M2", -30_000, limit=100_000),
                      _acct("M3", 10_000, limit=0)], [("M1", "A.HK", 1000), ("M2", "A.HK", 1000)])
    st.save_book(book)
    auth.ensure_permissions(st)
    return st


def test_account_group_and_company_usage(sqlite_url: str) -> None:
    st = _store(sqlite_url)
    rita, sam = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")
    for kind, key, after in (
            ("credit_group", {"id": 1}, {"name": "Chan family", "limit_amount": 80_000.0}),
            ("credit_group_member", {"group_id": 1, "account_id": 1}, {}),
            ("credit_group_member", {"group_id": 1, "account_id": 2}, {})):
        rid = changes.submit(st, rita, kind, key, after, "family accounts share one line", op="insert")
        assert changes.approve(st, sam, rid) == "approved"
    rid = changes.submit(st, rita, "company_limit", {"dimension": "capital"}, {"amount": 15_000.0}, "test capital")
    changes.approve(st, sam, rid)
    u = credit_usage(MarginEngine(st.load_book()), st)
    assert u.over_limit.tolist() == [10_000.0, 0.0, 0.0]
    assert u.usage[:2].tolist() == [1.2, 0.3] and u.usage[2] == 0.0
    assert u.over_limit_accounts().tolist() == [0]
    (g,) = u.groups
    assert (g.name, g.loan, g.limit, g.over, sorted(g.accounts)) == ("Chan family", 90_000.0, 80_000.0, True,
                                                                      ["M1", "M2"])
    assert u.company["total_loans"] == 90_000.0
    assert u.company["five_x_capital"] == 75_000.0 and u.company["over_five_x_capital"] is True
    assert u.company["over_total_financing"] is False  # default cap 5,000,000,000


def test_blacklist_by_account_and_by_client(sqlite_url: str) -> None:
    st = _store(sqlite_url)
    rita, sam = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")
    subjects: tuple[dict[str, Any], ...] = ({"account_id": 1, "tag": "Credit"}, {"client_id": 2, "tag": "Credit"},
                                            {"account_id": 3, "tag": "Asset Transfer"})
    for after in subjects:
        rid = changes.submit(st, rita, "blacklist", {"id": after.get("account_id", 0) * 10 + after.get("client_id", 0)},
                             after, "compliance", op="insert")
        changes.approve(st, sam, rid)
    assert blacklisted_accounts(st, "Credit") == {"M1", "M2"}
    assert blacklisted_accounts(st, "Asset Transfer") == {"M3"}


@pytest.mark.postgres
def test_credit_tables_are_protected_on_postgres(pg_url: str) -> None:
    import uuid

    owner = _store(pg_url)
    login = "cr_" + uuid.uuid4().hex[:6]
    auth.create_user(owner, login, "risk_officer", password="x")
    app = Store(pg_url.replace("postgres@", f"{login}@"))
    with app.begin() as conn:
        assert conn.execute(text("select amount from company_limits where dimension = 'capital'")).scalar() == 1e9
    for sql in ("update company_limits set amount = 1 where dimension = 'capital'",
                "insert into credit_groups (name, limit_amount) values ('x', 1)",
                "delete from blacklist"):
        with pytest.raises(DBAPIError, match="permission denied"), app.engine.begin() as conn:
            conn.execute(text(sql))
    app.dispose()
    owner.dispose()


def test_create_credited_client_history_and_closed_accounts(sqlite_url: str) -> None:
    st = _store(sqlite_url)
    rita, sam = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")
    from services import credit

    with pytest.raises(changes.ChangeError, match="already credited"):
        credit.create_credited_client(st, rita, "M1", 100_000, "new")
    with st.begin() as conn:
        conn.execute(text("delete from financing_limits where account_id = 3"))
    rid = credit.create_credited_client(st, rita, "M3", 200_000, "new margin client")
    changes.approve(st, sam, rid)
    assert st.load_book().financing_limit.tolist() == [50_000.0, 100_000.0, 200_000.0]
    rid = changes.submit(st, rita, "financing_limit", {"account_id": 1}, {"amount": 80_000.0}, "raise")
    changes.approve(st, sam, rid)
    hist = credit.limit_history(st, "M1")
    assert [(h["before"], h["after"], h["by"]) for h in hist] == [(50_000.0, 80_000.0, "rita")]
    assert [h["account"] for h in credit.limit_history(st)] == ["M3", "M1"]
    with st.begin() as conn:
        conn.execute(text("update accounts set closed = 1 where id = 2"))
    (rid,) = credit.delete_closed_limits(st, rita, "closed accounts clean-up")
    changes.approve(st, sam, rid)
    assert st.load_book().financing_limit.tolist() == [80_000.0, 0.0, 200_000.0]


def test_limit_history_filters_by_client_and_time(sqlite_url: str) -> None:
    from datetime import UTC, datetime

    from services import credit

    st = _store(sqlite_url)
    rita, sam = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")

    def change(acct_id: int, amount: float) -> None:
        rid = changes.submit(st, rita, "financing_limit", {"account_id": acct_id}, {"amount": amount}, "review")
        changes.approve(st, sam, rid)

    change(1, 80_000.0)
    change(2, 120_000.0)
    mid = datetime.now(UTC)
    change(1, 70_000.0)
    changes.submit(st, rita, "financing_limit", {"account_id": 2}, {"amount": 1.0}, "pending: not an event")
    everything = credit.limit_history(st)
    assert [(h["account"], h["before"], h["after"], h["change"]) for h in everything] == [
        ("M1", 50_000.0, 80_000.0, 30_000.0), ("M2", 100_000.0, 120_000.0, 20_000.0),
        ("M1", 80_000.0, 70_000.0, -10_000.0)]
    assert everything[0]["client"] == "CM1" and everything[0]["by"] == "rita"
    assert [h["after"] for h in credit.limit_history(st, search="cm1")] == [80_000.0, 70_000.0]  # client code
    assert [h["after"] for h in credit.limit_history(st, search="m2")] == [120_000.0]
    assert [h["after"] for h in credit.limit_history(st, start=mid)] == [70_000.0]
    assert [h["after"] for h in credit.limit_history(st, end=mid)] == [80_000.0, 120_000.0]
    assert credit.limit_history(st, search="M1", end=mid)[0]["request_id"] is not None


def test_client_financing_by_currency_and_over_limit(sqlite_url: str) -> None:
    from services.credit import client_financing

    st = Store(sqlite_url)
    st.migrate()
    # USD at 7.8. M1: −60,000 HKD and −1,000 USD → loan 67,800 vs limit 50,000 (17,800 over)
    # M2: −30,000 HKD but +5,000 USD (39,000 HKD) → no loan, yet an HKD debit of 30,000
    # M5: −1,000 HKD with no limit → 1,000 over; C4 is a cash account (not client financing)
    st.save_book(make_book([_acct("M1", -60_000, -1_000, limit=50_000), _acct("M2", -30_000, 5_000, limit=100_000),
                            _acct("M3", 10_000, limit=0), _acct("C4", -5_000, type_="cash", limit=0),
                            _acct("M5", -1_000, limit=0)], []))
    f = client_financing(st)
    assert [(c["currency"], c["debit"], c["debit_hkd"], c["accounts"]) for c in f["currencies"]] == [
        ("HKD", 91_000.0, 91_000.0, 3), ("USD", 1_000.0, 7_800.0, 1)]
    assert f["total_debit_hkd"] == 98_800.0
    assert f["currencies"][1]["share"] == pytest.approx(7_800 / 98_800)
    assert f["total_loan_hkd"] == 68_800.0
    assert [(o["account"], o["client"], o["limit"], o["loan"], o["over"]) for o in f["over_limit"]] == [
        ("M1", "CM1", 50_000.0, 67_800.0, 17_800.0), ("M5", "CM5", 0.0, 1_000.0, 1_000.0)]
    assert f["over_limit"][0]["usage"] == pytest.approx(1.356) and f["over_limit"][1]["usage"] is None
