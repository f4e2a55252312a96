"""Bulk imports (issue 4): template round trip, every bad row named, nothing applied until approved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook

from services import auth, changes
from services.demo_store import seed_demo_store
from services.imports import ImportFileError, apply_rows, validate_file, write_template
from services.store import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(sqlite_url: str) -> Store:
    st = Store(sqlite_url)
    st.migrate()
    seed_demo_store(st, clients=100, seed=1)
    return st


def _fill(path: Path, rows: list[tuple]) -> None:  # type: ignore[type-arg]
    wb = load_workbook(path)
    for r in rows:
        wb["Data"].append(list(r))
    wb.save(path)


def test_template_has_headers_instructions_and_validations(tmp_path: Path) -> None:
    p = tmp_path / "t.xlsx"
    write_template("short-margin", p)
    wb = load_workbook(p)
    assert [c.value for c in wb["Data"][1]] == ["code", "im_ratio", "mm_ratio"]
    assert "Instructions" in wb.sheetnames
    rules = wb["Data"].data_validations.dataValidation
    assert any(r.operator == "greaterThanOrEqual" and r.formula1 == "1" for r in rules)


def test_round_trip_names_bad_rows_and_applies_only_through_approval(store: Store, tmp_path: Path) -> None:
    p = tmp_path / "stock.xlsx"
    write_template("stock-margin", p)
    book = store.load_book()
    i700 = book.sec_index["700.HK"]
    no_ratio = int(np.flatnonzero(np.isnan(book.long_im))[0])
    new_code = book.sec_codes[no_ratio]
    _fill(p, [("700.HK", 0.45, 0.35), ("NOPE.HK", 0.5, 0.4), ("5.HK", 1.2, 0.3), ("388.HK", 0.3, 0.4),
              (new_code, "60%", 0.5), ("700.HK", 0.5, 0.4), (None, None, None), ("1.HK", "", 0.2)])
    rep = validate_file(store, "stock-margin", p)
    assert rep.rows == 7  # the blank line is not a row
    assert [(e["row"], e["column"]) for e in rep.errors] == [
        (3, "code"), (4, "im_ratio"), (5, "mm_ratio"), (7, "code"), (9, "im_ratio")]
    assert "unknown security code 'NOPE.HK'" in rep.errors[0]["message"]
    assert [r for r, _ in rep.valid_rows] == [2, 6]
    assert store.load_book().long_im[i700] == book.long_im[i700]  # nothing applied by checking
    rita = auth.User("rita", "Rita", "risk_officer")
    apply_rows(store, rita, rep, "quarterly review")
    assert len(rep.request_ids) == 2
    assert store.load_book().long_im[i700] == book.long_im[i700]  # still nothing before approval
    sam = auth.User("sam", "Sam", "supervisor")
    for rid in rep.request_ids:
        assert changes.approve(store, sam, rid) == "approved"
    after = store.load_book()
    assert (after.long_im[i700], after.long_mm[i700]) == (0.45, 0.35)
    assert (after.long_im[no_ratio], after.long_mm[no_ratio]) == (0.6, 0.5)  # a new setting was inserted
    again = validate_file(store, "stock-margin", p)
    assert again.already_imported and "rita" in again.already_imported


def test_cli_import_dry_run_json_and_unreadable_file(store: Store, tmp_path: Path) -> None:
    p = tmp_path / "limits.csv"
    p.write_text("account,amount\nM000002,500000\nM999999,1\nM000003,-5\n", encoding="utf-8")
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "import", "financing-limits", str(p), "--db",
                        str(store.url), "--dry-run", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["kind"], out["rows"], out["valid"], out["applied"]) == ("financing-limits", 3, 1, False)
    assert [(e["row"], e["column"]) for e in out["errors"]] == [(3, "account"), (4, "amount")]
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "import", "haircuts", str(tmp_path / "x.xlsx"),
                        "--db", str(store.url), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot read the file" in r.stderr and r.stdout == ""
    bad = tmp_path / "bad.csv"
    bad.write_text("code,wrong\n700.HK,1\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="missing column"):
        validate_file(store, "haircuts", bad)


def test_trading_limit_import_overwrites_same_type_and_blacklist_import(store: Store, tmp_path: Path) -> None:
    from services.credit import blacklisted_accounts

    rita, sam = auth.User("rita", "Rita", "risk_officer"), auth.User("sam", "Sam", "supervisor")
    p = tmp_path / "tl.csv"
    p.write_text("account,limit_type,amount\nM000002,daily_buy,1000000\nM000003,order_notional,200000\n"
                 "M000002,weekly,5\n", encoding="utf-8")
    rep = apply_rows(store, rita, validate_file(store, "trading-limits", p), "desk limits")
    assert [(e["row"], e["column"]) for e in rep.errors] == [(4, "limit_type")]
    for rid in rep.request_ids:
        changes.approve(store, sam, rid)
    p.write_text("account,limit_type,amount\nM000002,daily_buy,750000\n", encoding="utf-8")
    rep = apply_rows(store, rita, validate_file(store, "trading-limits", p), "cut")
    assert changes.get(store, rep.request_ids[0]).op == "update"
    changes.approve(store, sam, rep.request_ids[0])
    from sqlalchemy import text

    with store.begin() as conn:
        rows = conn.execute(text("select account_id, limit_type, amount from client_trading_limits "
                                 "order by id")).all()
    assert [tuple(r) for r in rows] == [(2, "daily_buy", 750_000.0), (3, "order_notional", 200_000.0)]
    a1, a2 = [c for c in store.load_book().acct_codes if c not in ("M000002", "M000003")][:2]
    b = tmp_path / "bl.csv"
    b.write_text(f"account,tag,remark\n{a1},Credit,late payer\n{a2},Asset Transfer,\n", encoding="utf-8")
    rep = validate_file(store, "blacklist", b)
    assert rep.errors == []
    rep = apply_rows(store, rita, rep, "compliance list")
    for rid in rep.request_ids:
        changes.approve(store, sam, rid)
    assert blacklisted_accounts(store, "Credit") == {a1}
    assert blacklisted_accounts(store, "Asset Transfer") == {a2}


def test_client_margin_import_by_account_and_group_takes_priority_in_the_engine(store: Store,
                                                                                  tmp_path: Path) -> None:
    from services.margin import MarginEngine

    rita, sam = auth.User("rita", "Rita", "risk_officer"), auth.User("sam", "Sam", "supervisor")
    book = store.load_book()
    e = MarginEngine(book)
    a = int(np.flatnonzero((book.acct_type == 1) & (np.diff(e.acct_start) > 0))[0])
    acct = book.acct_codes[a]
    lo = int(e.acct_start[a])
    sec = book.sec_codes[int(book.pos_sec[lo])]
    side = "long" if book.pos_qty[lo] > 0 else "short"
    im, mm = (0.9, 0.8) if side == "long" else (2.0, 1.9)
    p = tmp_path / "cm.csv"
    p.write_text("account,client_group,code,stock_group,side,im_ratio,mm_ratio\n"
                 f"{acct},,{sec},,{side},{im},{mm}\n"
                 f",VIP,,HSI Core,long,0.2,0.1\n"
                 f"{acct},VIP,{sec},,long,0.5,0.4\n"
                 f",NoSuchGroup,{sec},,long,0.5,0.4\n"
                 f"{acct},,{sec},,long,1.5,0.4\n", encoding="utf-8")
    rep = validate_file(store, "client-margin", p)
    assert [(e_["row"], e_["column"]) for e_ in rep.errors] == [(4, "account"), (5, "client_group"), (6, "im_ratio")]
    rep = apply_rows(store, rita, rep, "client review")
    for rid in rep.request_ids:
        assert changes.approve(store, sam, rid) == "approved"
    e2 = MarginEngine(store.load_book())
    p2 = e2.positions_of(a)
    assert (p2["im_ratio"][0], p2["mm_ratio"][0], int(p2["source"][0])) == (im, mm, 0)  # client beats stock


def test_index_members_import_sets_levels(store: Store, tmp_path: Path) -> None:
    rita, sam = auth.User("rita", "Rita", "risk_officer"), auth.User("sam", "Sam", "supervisor")
    book = store.load_book()
    l3 = [c for c, lv, m in zip(book.sec_codes, book.level.tolist(), book.sec_market.tolist(), strict=True)
          if lv == 3 and book.markets[m] == "HK"][:2]
    p = tmp_path / "im.csv"
    p.write_text(f"index,code\nHSI,{l3[0]}\nHSCI,{l3[1]}\nHSI,700.HK\nNOPE,{l3[0]}\n", encoding="utf-8")
    rep = validate_file(store, "index-members", p)
    assert [(e["row"], e["column"]) for e in rep.errors] == [(4, "code"), (5, "index")]
    assert "already in HSI" in rep.errors[0]["message"]
    for rid in apply_rows(store, rita, rep, "index rebalance").request_ids:
        changes.approve(store, sam, rid)
    after = store.load_book()
    assert after.level[after.sec_index[l3[0]]] == 1 and after.level[after.sec_index[l3[1]]] == 2


def test_credit_groups_xlsx_round_trip_new_and_existing_groups(store: Store, tmp_path: Path) -> None:
    from sqlalchemy import text

    from services import credit_groups
    from services.credit import credit_usage
    from services.margin import MarginEngine

    rita, sam = auth.User("rita", "Rita", "risk_officer"), auth.User("sam", "Sam", "supervisor")
    book = store.load_book()
    margin = [c for c, t in zip(book.acct_codes, book.acct_type.tolist(), strict=True) if t == 1]
    cash = next(c for c, t in zip(book.acct_codes, book.acct_type.tolist(), strict=True) if t == 0)
    m = margin[:7]
    rid = credit_groups.submit_new_group(store, rita, "Existing", 500_000, "set up")
    changes.approve(store, sam, rid)
    gid = changes.get(store, rid).target_key["id"]
    changes.approve(store, sam, credit_groups.submit_add_member(store, rita, gid, m[6], "set up"))

    p = tmp_path / "groups.xlsx"
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "template", "credit-groups", "--out", str(p)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [c.value for c in load_workbook(p)["Data"][1]] == ["group_name", "account", "group_limit"]
    _fill(p, [("Chan family", m[0], 2_000_000), ("Chan family", m[1], None), ("Existing", m[2], 900_000),
              ("Wong", m[3], None), ("Chan family", cash, None), ("Chan family", m[0], None),
              ("Existing", m[4], "abc"), ("Lee", "NOPE", 1), ("Existing", m[6], None),
              ("Chan family", m[5], 1_500_000)])
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "import", "credit-groups", str(p), "--db",
                        str(store.url), "--dry-run", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["kind"], out["rows"], out["valid"], out["applied"]) == ("credit-groups", 10, 3, False)
    assert [(e["row"], e["column"], e["value"]) for e in out["errors"]] == [
        (5, "group_limit", None), (6, "account", cash), (7, "account", m[0]), (8, "group_limit", "abc"),
        (9, "account", "NOPE"), (10, "account", m[6]), (11, "group_limit", 1_500_000)]
    msgs = [e["message"] for e in out["errors"]]
    assert msgs[0] == "“Wong” is a new group: give its limit (on its first row)"
    assert "cash account" in msgs[1] and msgs[2] == "duplicate of row 2" and msgs[3] == "not a number"
    assert msgs[5] == f"{m[6]} is already in credit group “Existing”"
    assert msgs[6] == "differs from 2,000,000.00 given for “Chan family” on an earlier row"

    with store.begin() as conn:
        before = conn.execute(text("select count(*) from credit_group_members")).scalar()
    rep = apply_rows(store, rita, validate_file(store, "credit-groups", p), "group review")
    reqs = [changes.get(store, i) for i in rep.request_ids]
    assert [(q.kind, q.op) for q in reqs] == [
        ("credit_group", "insert"), ("credit_group_member", "insert"), ("credit_group_member", "insert"),
        ("credit_group", "update"), ("credit_group_member", "insert")]
    assert reqs[0].after == {"name": "Chan family", "limit_amount": 2_000_000.0}
    assert reqs[3].before == {"limit_amount": 500_000.0} and reqs[3].after == {"limit_amount": 900_000.0}
    assert reqs[1].target_key["group_id"] == reqs[0].target_key["id"] and reqs[1].context["new_group"] is True
    with store.begin() as conn:
        assert conn.execute(text("select count(*) from credit_group_members")).scalar() == before  # not applied
    for q in reqs:
        assert changes.approve(store, sam, q.id) == "approved"
    groups = {g.name: (g.limit, sorted(g.accounts)) for g in
              credit_usage(MarginEngine(store.load_book()), store).groups}
    assert groups == {"Chan family": (2_000_000.0, sorted(m[:2])), "Existing": (900_000.0, sorted([m[2], m[6]]))}
    again = validate_file(store, "credit-groups", p)
    assert again.already_imported and "rita" in again.already_imported


def test_financing_limit_import_inserts_a_first_limit_and_applies_all_or_nothing(store: Store,
                                                                                  tmp_path: Path) -> None:
    from sqlalchemy import text

    rita = auth.User("rita", "Rita", "risk_officer")
    with store.begin() as conn:
        (a, la), (b, _lb) = conn.execute(text(
            "select a.code, f.amount from accounts a join financing_limits f on f.account_id = a.id "
            "where a.type = 'margin' order by a.id limit 2")).all()
        conn.execute(text("delete from financing_limits where account_id = (select id from accounts where code = :c)"),
                     {"c": b})
        pending = conn.execute(text("select count(*) from change_requests where status = 'pending'")).scalar()
    p = tmp_path / "fl.csv"
    p.write_text(f"account,amount\n{a},{la + 1000}\n{b},300000\n", encoding="utf-8")
    rep = validate_file(store, "financing-limits", p)
    assert rep.errors == [] and len(rep.valid_rows) == 2
    with store.begin() as conn:  # the second account closes between the check and the submission
        conn.execute(text("update accounts set closed = 1 where code = :c"), {"c": b})
    with pytest.raises(changes.ChangeError, match=f"row 3: '{b}' is no longer in the store"):
        apply_rows(store, rita, rep, "limits")
    with store.begin() as conn:
        assert conn.execute(text("select count(*) from change_requests where status = 'pending'")).scalar() == pending
        conn.execute(text("update accounts set closed = 0 where code = :c"), {"c": b})
    rep = apply_rows(store, rita, validate_file(store, "financing-limits", p), "limits")
    first, second = (changes.get(store, i) for i in rep.request_ids)
    assert (first.op, first.before, first.after) == ("update", {"amount": la}, {"amount": la + 1000})
    assert (second.op, second.after) == ("insert", {"amount": 300_000.0})  # a first limit for the account


def test_limit_rules_template_round_trip_names_bad_rows(store: Store, tmp_path: Path) -> None:
    from services import pretrade_store as ps

    p = tmp_path / "rules.xlsx"
    write_template("limit-rules", p)
    acct = store.load_book().acct_codes[0]
    _fill(p, [("VIP qty", "CL_ORD_QTY", acct, None, None, None, 50_000, "reject"),
              ("700 daily", "SEC_DAY_QTY", None, "700.HK", None, None, 1_000_000, None),
              ("desk pair", "MULTI_DAY_QTY", acct, "700.HK", None, None, 200_000, None),
              ("bad code", "NOPE", acct, None, None, None, 1, None),
              ("wrong subject", "CL_ORD_QTY", None, "700.HK", None, None, 1, None),
              ("one subject", "MULTI_DAY_QTY", acct, None, None, None, 1, None),
              ("company", "CO_DAY_NOTIONAL", acct, None, None, None, 1, None),
              ("negative", "CL_ORD_QTY", acct, None, None, None, -5, None),
              ("bad action", "CL_ORD_QTY", acct, None, None, None, 5, "block")])
    rep = validate_file(store, "limit-rules", p)
    assert [r for r, _ in rep.valid_rows] == [2, 3, 4]
    assert [(e["row"], e["column"]) for e in rep.errors] == [
        (5, "limit_code"), (6, "account"), (7, "limit_code"), (8, "limit_code"), (9, "threshold"), (10, "action")]
    assert "unknown limit code 'NOPE'" in rep.errors[0]["message"]
    apply_rows(store, auth.User("rita", "Rita", "risk_officer"), rep, "desk limits")
    sam = auth.User("sam", "Sam", "supervisor")
    for rid in rep.request_ids:
        changes.approve(store, sam, rid)
    rules = {r.name: r for r in ps.limit_rules(store)}
    assert (rules["VIP qty"].account, rules["VIP qty"].threshold, rules["VIP qty"].action) == (acct, 50_000.0,
                                                                                               "reject")
    assert (rules["desk pair"].account, rules["desk pair"].security) == (acct, "700.HK")
    assert rules["700 daily"].action is None  # the code's own action applies
