"""Bulk financing-limit updates under review (issue 4): a real xlsx becomes an open batch, rows are
edited / removed / restored, and submitting turns the rows left into pending change requests in one
transaction — on a real SQLite file and on PostgreSQL with the app's own logins (whose grants allow
the batch tables but not the limits themselves)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import text

from services import auth, changes
from services import limit_batches as lb
from services.imports import ImportFileError, write_template
from services.store import Store
from tests.test_margin_formulas import _acct, make_book

# M1 limit 500,000 · M2 no limit row yet · M3 limit 1,000,000 · M4 limit 200,000 · C5 a cash account
ACCOUNTS = [_acct("M1", -100_000, limit=500_000), _acct("M2", 0, limit=0), _acct("M3", -50_000, limit=1_000_000),
            _acct("M4", 0, limit=200_000), _acct("C5", 1_000, type_="cash", limit=0)]


def _seed(st: Store) -> dict[str, int]:
    st.migrate()
    st.save_book(make_book(ACCOUNTS, [("M1", "A.HK", 1000)]))
    auth.ensure_permissions(st)
    with st.begin() as conn:
        conn.execute(text("delete from financing_limits where account_id = "
                          "(select id from accounts where code = 'M2')"))  # never credited
        return {c: int(i) for c, i in conn.execute(text("select code, id from accounts"))}


def _limits(st: Store) -> dict[str, float]:
    with st.begin() as conn:
        return {c: float(a) for c, a in conn.execute(text(
            "select a.code, f.amount from financing_limits f join accounts a on a.id = f.account_id"))}


def _pending(st: Store) -> int:
    with st.begin() as conn:
        return int(conn.execute(text("select count(*) from change_requests where status = 'pending'")).scalar() or 0)


def _xlsx(path: Path, rows: list[tuple[Any, ...]]) -> Path:
    write_template("financing-limits", path)
    wb = load_workbook(path)
    for r in rows:
        wb["Data"].append(list(r))
    wb.save(path)
    return path


FILE_ROWS = [("M1", 600_000), ("M2", 250_000), ("M3", 1_000_000), ("NOPE", 5), ("C5", 100), ("M4", -1),
             ("M1", 700_000), ("M4", 300_000)]


def _scenario(maker_store: Store, checker_store: Store, owner: Store, rita: auth.User, sam: auth.User,
              tmp: Path) -> None:
    """The whole review cycle; `owner` only closes an account (an operations change, not a limit)."""
    path = _xlsx(tmp / "limits.xlsx", FILE_ROWS)
    res = lb.create_batch(maker_store, rita, path)
    assert (res.file_name, res.rows, res.valid) == ("limits.xlsx", 8, 4)
    assert [(p["row"], p["column"]) for p in res.problems] == [(5, "account"), (6, "account"), (7, "amount"),
                                                               (8, "account")]
    assert "unknown or closed account 'NOPE'" in res.problems[0]["message"]
    assert "C5 is a cash account" in res.problems[1]["message"]
    assert res.problems[3]["message"] == "duplicate of row 2"
    assert res.batch_id is not None
    bid = res.batch_id
    with pytest.raises(lb.BatchError, match=rf"already batch #{bid} \(open\), uploaded by {rita.login}"):
        lb.create_batch(maker_store, rita, path)

    rows = {r["account"]: r for r in lb.batch_rows(maker_store, bid)}
    assert [(r["row_no"], r["current"], r["amount"], r["change"]) for r in rows.values()] == [
        (2, 500_000.0, 600_000.0, 100_000.0), (3, None, 250_000.0, 250_000.0), (4, 1_000_000.0, 1_000_000.0, 0.0),
        (9, 200_000.0, 300_000.0, 100_000.0)]
    lb.edit_row(maker_store, rita, rows["M3"]["id"], 1_250_000)
    with pytest.raises(lb.BatchError, match="≥ 0"):
        lb.edit_row(maker_store, rita, rows["M3"]["id"], -1)
    lb.remove_row(maker_store, rita, rows["M1"]["id"])
    lb.remove_row(maker_store, rita, rows["M4"]["id"])
    lb.restore_row(maker_store, rita, rows["M4"]["id"])
    (listed,) = lb.batches(maker_store)
    assert (listed["id"], listed["n_rows"], listed["n_kept"], listed["status"]) == (bid, 4, 3, "open")

    # a row the store refuses at submission leaves the batch open and no request behind
    with owner.begin() as conn:
        conn.execute(text("update accounts set closed = :t where code = 'M4'"), {"t": True})
    before = _pending(maker_store)
    with pytest.raises(lb.BatchError, match="row 9: M4 has been closed since the upload"):
        lb.submit_batch(maker_store, rita, bid, "annual credit review")
    assert _pending(maker_store) == before
    assert lb.batches(maker_store)[0]["status"] == "open"
    assert all(r["request_id"] is None for r in lb.batch_rows(maker_store, bid))
    lb.remove_row(maker_store, rita, rows["M4"]["id"])

    with pytest.raises(lb.BatchError, match="give a reason"):
        lb.submit_batch(maker_store, rita, bid, "  ")
    ids = lb.submit_batch(maker_store, rita, bid, "annual credit review")
    assert len(ids) == 2 and _pending(maker_store) == before + 2
    m2, m3 = (changes.get(maker_store, i) for i in ids)
    assert (m2.op, m2.target_key, m2.after, m2.maker) == ("insert", {"account_id": rows["M2"]["account_id"]},
                                                          {"amount": 250_000.0}, rita.login)
    assert (m3.op, m3.before, m3.after) == ("update", {"amount": 1_000_000.0}, {"amount": 1_250_000.0})
    assert m3.context["batch"] == bid and m3.context["row"] == 4 and "batch #" in m3.reason
    after = {r["account"]: r["request_id"] for r in lb.batch_rows(maker_store, bid)}
    assert after == {"M1": None, "M2": ids[0], "M3": ids[1], "M4": None}
    assert lb.batches(maker_store) == [] and lb.batches(maker_store, "submitted")[0]["reason"] == "annual credit review"
    with pytest.raises(lb.BatchError, match="is submitted"):
        lb.edit_row(maker_store, rita, rows["M2"]["id"], 1)
    with pytest.raises(lb.BatchError, match="is submitted"):
        lb.submit_batch(maker_store, rita, bid, "again")

    assert _limits(owner) == {"M1": 500_000.0, "M3": 1_000_000.0, "M4": 200_000.0}  # not yet approved
    for rid in ids:
        assert changes.approve(checker_store, sam, rid, "reviewed") == "approved"
    assert _limits(owner) == {"M1": 500_000.0, "M2": 250_000.0, "M3": 1_250_000.0, "M4": 200_000.0}

    # a discarded batch makes no request and frees its file for a new upload
    other = _xlsx(tmp / "second.xlsx", [("M1", 450_000)])
    second = lb.create_batch(maker_store, rita, other).batch_id
    assert second is not None
    lb.discard_batch(maker_store, rita, second)
    with pytest.raises(lb.BatchError, match="is discarded"):
        lb.submit_batch(maker_store, rita, second, "x")
    assert lb.create_batch(maker_store, rita, other).batch_id not in (None, second)
    assert _pending(maker_store) == before + 0  # both approved; nothing new pending


def test_batch_review_cycle_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    st = Store(sqlite_url)
    _seed(st)
    rita, sam = auth.User("rita", "Rita", "risk_officer"), auth.User("sam", "Sam", "supervisor")
    _scenario(st, st, st, rita, sam, tmp_path)
    st.dispose()


def test_batch_refusals(sqlite_url: str, tmp_path: Path) -> None:
    st = Store(sqlite_url)
    _seed(st)
    tom = auth.User("tom", "Tom", "trader")
    rita = auth.User("rita", "Rita", "risk_officer")
    path = _xlsx(tmp_path / "l.xlsx", [("M1", 1)])
    with pytest.raises(auth.AuthError, match="may not request financing-limit changes"):
        lb.create_batch(st, tom, path)
    bad = tmp_path / "l.csv"
    bad.write_text("account,limit\nM1,5\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="missing column"):
        lb.create_batch(st, rita, bad)
    none_valid = lb.create_batch(st, rita, _xlsx(tmp_path / "n.xlsx", [("NOPE", 1), ("M1", "x")]))
    assert none_valid.batch_id is None and [p["row"] for p in none_valid.problems] == [2, 3]
    assert lb.batches(st, None) == []
    with pytest.raises(lb.BatchError, match="does not exist"):
        lb.batch_rows(st, 99)
    st.dispose()


# ---------------------------------------------------------------------------------- PostgreSQL
@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[Store, dict[str, auth.User], str]]:
    owner = Store(pg_url)
    _seed(owner)
    suffix = "_" + uuid.uuid4().hex[:6]
    users = {}
    for login, role in (("rita", "risk_officer"), ("sam", "supervisor")):
        auth.create_user(owner, login + suffix, role, login.title(), password=f"{login}-pw")
        users[login] = auth.User(login + suffix, login.title(), role)
    yield owner, users, pg_url
    owner.dispose()


@pytest.mark.postgres
def test_batch_review_cycle_on_postgres_with_app_logins(pg: Any, tmp_path: Path) -> None:
    owner, u, url = pg

    def login(user: auth.User) -> Store:
        return Store(url.replace("postgres@", f"{user.login}@"), password=user.login.split("_")[0] + "-pw")

    maker, checker = login(u["rita"]), login(u["sam"])
    try:
        _scenario(maker, checker, owner, u["rita"], u["sam"], tmp_path)
    finally:
        maker.dispose()
        checker.dispose()
