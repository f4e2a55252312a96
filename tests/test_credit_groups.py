"""Credit groups (issue 4): create, rename, change the limit, add and remove accounts — each a
four-eyes request that changes the group's usage only once approved — with the refusals a maker
sees (empty, duplicate or already-proposed names, negative limits, cash or already-grouped accounts)."""

from __future__ import annotations

import pytest

from services import auth, changes
from services import credit_groups as cg
from services.changes import ChangeError
from services.credit import credit_usage
from services.margin import MarginEngine
from services.store import Store
from tests.test_margin_formulas import _acct, make_book

RITA, SAM = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")


@pytest.fixture
def st(sqlite_url: str) -> Store:
    s = Store(sqlite_url)
    s.migrate()
    # loans: M1 60,000 · M2 30,000 · M3 none · C4 a cash account
    s.save_book(make_book([_acct("M1", -60_000, limit=50_000), _acct("M2", -30_000, limit=100_000),
                           _acct("M3", 10_000, limit=0), _acct("C4", -5_000, type_="cash", limit=0)],
                          [("M1", "A.HK", 1000), ("M2", "A.HK", 1000)]))
    auth.ensure_permissions(s)
    return s


def _groups(st: Store) -> dict[str, tuple[float, float, list[str]]]:
    u = credit_usage(MarginEngine(st.load_book()), st)
    return {g.name: (g.limit, g.loan, sorted(g.accounts)) for g in u.groups}


def test_inline_checks() -> None:
    taken = ["Chan family", "Wong group"]
    assert cg.group_name_problem("  ", taken) == "Give the group a name."
    assert cg.group_name_problem("chan FAMILY ", taken) == "A credit group named “chan FAMILY” already exists."
    assert cg.group_name_problem("Chan Family", taken, own="Chan family") == ""  # renaming within itself
    assert cg.group_name_problem("Lee", taken) == ""
    assert "at most 64" in cg.group_name_problem("x" * 65, taken)
    assert cg.parse_group_limit("1,500,000") == (1_500_000.0, "")
    assert cg.parse_group_limit("-1") == (None, "A group limit must be ≥ 0.")
    assert cg.parse_group_limit("abc")[1] == "“abc” is not a number."
    assert cg.parse_group_limit("nan")[0] is None and cg.parse_group_limit("")[0] is None
    assert cg.parse_group_limit("0") == (0.0, "")


def test_create_rename_members_through_approval(st: Store) -> None:
    rid = cg.submit_new_group(st, RITA, " Chan family ", 80_000, "family accounts share one line")
    req = changes.get(st, rid)
    assert (req.kind, req.op, req.after, req.amount) == ("credit_group", "insert",
                                                         {"name": "Chan family", "limit_amount": 80_000.0}, 80_000.0)
    with pytest.raises(ChangeError, match=f"#{rid} already proposes a credit group named “Chan family”"):
        cg.submit_new_group(st, RITA, "CHAN family", 1, "twice")
    assert _groups(st) == {}  # nothing until approved
    changes.approve(st, SAM, rid)
    gid = req.target_key["id"]
    with pytest.raises(ChangeError, match="already exists"):
        cg.submit_new_group(st, RITA, "chan family", 1, "twice")
    with pytest.raises(ChangeError, match="≥ 0"):
        cg.submit_new_group(st, RITA, "Lee", -5, "negative")

    for code in ("M1", "M2"):
        changes.approve(st, SAM, cg.submit_add_member(st, RITA, gid, code, "same beneficial owner"))
    assert _groups(st) == {"Chan family": (80_000.0, 90_000.0, ["M1", "M2"])}  # 60,000 + 30,000 > 80,000
    (g,) = credit_usage(MarginEngine(st.load_book()), st).groups
    assert g.over and g.id == gid
    with pytest.raises(ChangeError, match="C4 is a cash account"):
        cg.submit_add_member(st, RITA, gid, "C4", "x")
    with pytest.raises(ChangeError, match="M1 is already in credit group “Chan family”$"):
        cg.submit_add_member(st, RITA, gid, "M1", "x")
    with pytest.raises(ChangeError, match="unknown account 'M9'"):
        cg.submit_add_member(st, RITA, gid, "M9", "x")
    pending = cg.submit_add_member(st, RITA, gid, "M3", "x")
    with pytest.raises(ChangeError, match=f"#{pending} already adds M3"):
        cg.submit_add_member(st, RITA, gid, "M3", "x")
    changes.cancel(st, RITA, pending)

    # rename and raise the limit in one request carrying only what changed
    rid = cg.submit_group_change(st, RITA, gid, "Chan & Lee family", 120_000, "cousins joined")
    req = changes.get(st, rid)
    assert (req.op, req.before, req.after) == ("update", {"name": "Chan family", "limit_amount": 80_000.0},
                                               {"name": "Chan & Lee family", "limit_amount": 120_000.0})
    changes.approve(st, SAM, rid)
    assert _groups(st) == {"Chan & Lee family": (120_000.0, 90_000.0, ["M1", "M2"])}
    rid = cg.submit_group_change(st, RITA, gid, "Chan & Lee family", 70_000, "cut")
    assert changes.get(st, rid).after == {"limit_amount": 70_000.0}
    changes.cancel(st, RITA, rid)
    with pytest.raises(ChangeError, match="nothing to change"):
        cg.submit_group_change(st, RITA, gid, "Chan & Lee family", 120_000, "same")

    changes.approve(st, SAM, cg.submit_remove_member(st, RITA, gid, "M1", "left the family line"))
    assert _groups(st) == {"Chan & Lee family": (120_000.0, 30_000.0, ["M2"])}
    with pytest.raises(ChangeError, match="M1 is not a member"):
        cg.submit_remove_member(st, RITA, gid, "M1", "again")
    tom = auth.User("tom", "T", "trader")
    with pytest.raises(auth.AuthError):
        cg.submit_new_group(st, tom, "Traders", 1, "x")
