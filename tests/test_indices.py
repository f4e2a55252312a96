"""Index management (issue 6): the presets file, "Initialise" proposing only the missing presets as
four-eyes requests (user indices untouched, idempotent before and after approval), index and
membership requests round-tripping to the derived stock level (RISK_METHODS §4), and the stock level
weighting with its level declines, hand-computed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from services import auth, changes, level_weighting
from services import indices as idx
from services.margin import MarginEngine
from services.store import Store
from tests.test_margin_formulas import _acct, make_book

RITA, SAM = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")
PRESET_LEVELS = {"HSI": 1, "HSCEI": 1, "HSTECH": 2, "HSLI": 2, "HSMI": 2, "SPX": 1, "NDX": 1, "DJI": 1, "RUI": 2}


def _book() -> Any:
    # M1: 1,000 A.HK @100 (level 1) and 1,000 N.HK @50 (level 3), cash −60,000; M2: 1,000 U.US @10 × 7.8
    # (level 1); C1 is a cash account (its 1,000 A.HK is not margin collateral)
    return make_book([_acct("M1", -60_000), _acct("M2", 0), _acct("C1", 0, type_="cash")],
                     [("M1", "A.HK", 1000), ("M1", "N.HK", 1000), ("M2", "U.US", 1000), ("C1", "A.HK", 1000)])


@pytest.fixture
def st(sqlite_url: str) -> Store:
    s = Store(sqlite_url)
    s.migrate()
    # HSI holds A.HK (security index 0); the store marks save_book indices as presets
    s.save_book(_book(), indices=[{"id": 1, "code": "HSI", "name": "Hang Seng Index", "market": "HK", "level": 1,
                                   "members": [0]}])
    auth.ensure_permissions(s)
    return s


def _rows(st: Store) -> dict[str, dict[str, Any]]:
    with st.begin() as conn:
        return {r.code: dict(r._mapping) for r in conn.execute(text("select * from indices"))}


def _level(st: Store, code: str) -> int:
    book = st.load_book()
    return int(book.level[book.sec_index[code]])


def _approve_all(st: Store, ids: list[int]) -> None:
    for i in ids:
        assert changes.approve(st, SAM, i, "ok") == "approved"


# ---------------------------------------------------------------------- presets
def test_presets_file_lists_the_main_hk_and_us_indices_with_their_levels(tmp_path: Path) -> None:
    presets = idx.load_presets()
    assert {p.code: p.level for p in presets} == PRESET_LEVELS
    assert {p.market for p in presets} == {"HK", "US"}
    doc = json.loads(idx.PRESETS_PATH.read_text(encoding="utf-8"))
    assert "Level 1" in doc["choice_of_levels"] and "Level 2" in doc["choice_of_levels"]  # the choice documented
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"indices": [{"code": "X", "name": "X", "market": "HK", "level": 1},
                                           {"code": "Y", "name": "Y", "market": "HK", "level": 4}]}))
    with pytest.raises(ValueError, match=r"indices\[1\]\.level"):
        idx.load_presets(bad)
    bad.write_text(json.dumps({"indices": [{"code": "X", "name": "X", "market": "HK", "level": 1}] * 2}))
    with pytest.raises(ValueError, match="listed twice"):
        idx.load_presets(bad)


def test_validate_index() -> None:
    assert idx.validate_index(" hsi ", "Hang Seng Index", "hk", "1") == (
        {"code": "HSI", "name": "Hang Seng Index", "market": "HK", "level": 1}, "")
    assert "Level must be 1, 2 or 3" in idx.validate_index("X", "X", "HK", 4)[1]
    assert "market code" in idx.validate_index("X", "X", "Hong Kong", 1)[1]
    assert "Enter the index name" in idx.validate_index("X", " ", "HK", 1)[1]
    assert "letters, digits" in idx.validate_index("X Y", "X", "HK", 1)[1]


def test_initialise_inserts_only_missing_presets_leaves_user_indices_alone_and_is_idempotent(st: Store) -> None:
    # the desk renamed the HSI preset and added an index of its own — both through four-eyes
    mine = idx.submit_new_index(st, RITA, "MYIDX", "Desk watch list", "HK", 2, "our own list")
    rename = idx.submit_index_update(st, RITA, 1, "HSI (desk name)", "HK", 1, "clearer name")
    _approve_all(st, [mine, rename])
    before = _rows(st)
    assert before["MYIDX"]["preset"] in (0, False) and before["HSI"]["name"] == "HSI (desk name)"

    ids = idx.initialise_presets(st, RITA)
    reqs = [changes.get(st, i) for i in ids]
    assert sorted(r.after["code"] for r in reqs) == sorted(set(PRESET_LEVELS) - {"HSI"})
    assert all(r.kind == "index" and r.op == "insert" and r.status == "pending" and r.after["preset"] is True
               for r in reqs)
    assert len({r.target_key["id"] for r in reqs}) == len(reqs)  # one new id each
    assert _rows(st) == before  # nothing applied before a checker approves
    assert idx.initialise_presets(st, RITA) == []  # pending presets are not proposed twice
    assert idx.missing_presets(st) == []

    _approve_all(st, ids)
    after = _rows(st)
    assert {c: r["level"] for c, r in after.items() if c in PRESET_LEVELS} == PRESET_LEVELS
    assert after["HSI"] == before["HSI"] and after["MYIDX"] == before["MYIDX"]  # untouched
    assert idx.initialise_presets(st, RITA) == []  # idempotent after approval too
    assert len(_rows(st)) == len(PRESET_LEVELS) + 1


def test_initialise_is_refused_for_a_user_who_may_not_request(st: Store) -> None:
    with pytest.raises(auth.AuthError):
        idx.initialise_presets(st, auth.User("abe", "A", "auditor"))
    assert idx.missing_presets(st) and _rows(st).keys() == {"HSI"}


# ---------------------------------------------------------------------- membership and levels
def test_membership_request_round_trip_changes_the_derived_level(st: Store) -> None:
    assert _level(st, "N.HK") == 3 and _level(st, "A.HK") == 1  # in no index → 3 once indices exist
    add = idx.submit_member(st, RITA, 1, "n.hk", "now an HSI constituent")
    req = changes.get(st, add)
    assert (req.kind, req.op, req.context["security"]) == ("index_member", "insert", "N.HK")
    assert _level(st, "N.HK") == 3  # pending: no change yet
    with pytest.raises(changes.ChangeError, match="already has change request"):
        idx.submit_member(st, RITA, 1, "N.HK", "again")
    snap = idx.load_indices(st, RITA)
    pending = next(m for m in snap.members[1] if m["code"] == "N.HK")
    assert not pending["member"] and pending["request"] == f"request #{add} pending (add)"

    changes.approve(st, SAM, add, "checked")
    assert _level(st, "N.HK") == 1
    snap = idx.load_indices(st, RITA)
    sec = next(s for s in snap.securities if s["code"] == "N.HK")
    assert sec["level"] == 1 and sec["indices"] == "HSI"
    with pytest.raises(changes.ChangeError, match="already in HSI"):
        idx.submit_member(st, RITA, 1, "N.HK", "again")

    out = idx.submit_member(st, RITA, 1, "N.HK", "dropped from the index", remove=True)
    changes.approve(st, SAM, out, "ok")
    assert _level(st, "N.HK") == 3
    with pytest.raises(changes.ChangeError, match="not in HSI"):
        idx.submit_member(st, RITA, 1, "N.HK", "x", remove=True)
    with pytest.raises(changes.ChangeError, match="unknown security"):
        idx.submit_member(st, RITA, 1, "NOPE.HK", "x")


def test_index_level_change_and_delete_move_member_levels(st: Store) -> None:
    up = idx.submit_index_update(st, RITA, 1, "Hang Seng Index", "HK", 2, "reclassify")
    assert changes.get(st, up).after == {"level": 2}  # only what changes
    with pytest.raises(changes.ChangeError, match="already has change request"):
        idx.submit_index_delete(st, RITA, 1, "gone")
    changes.approve(st, SAM, up, "ok")
    assert _level(st, "A.HK") == 2
    with pytest.raises(changes.ChangeError, match="nothing to change"):
        idx.submit_index_update(st, RITA, 1, "Hang Seng Index", "HK", 2, "same")
    gone = idx.submit_index_delete(st, RITA, 1, "no longer used")
    changes.approve(st, SAM, gone, "ok")
    with st.begin() as conn:
        assert conn.execute(text("select count(*) from index_members")).scalar() == 0  # members went with it
    assert _rows(st) == {}


def test_an_index_with_a_haircut_is_not_deleted(st: Store) -> None:
    from services.haircuts import submit_index_haircut

    changes.approve(st, SAM, submit_index_haircut(st, RITA, 1, 0.3, "SFC test haircut"), "ok")
    with pytest.raises(changes.ChangeError, match="index haircut"):
        idx.submit_index_delete(st, RITA, 1, "no longer used")


def test_derived_levels_agree_with_the_book_loader(st: Store) -> None:
    mine = idx.submit_new_index(st, RITA, "L2", "Level two", "US", 2, "test")
    changes.approve(st, SAM, mine, "ok")
    iid = int(changes.get(st, mine).target_key["id"])
    changes.approve(st, SAM, idx.submit_member(st, RITA, iid, "U.US", "member"), "ok")
    changes.approve(st, SAM, idx.submit_member(st, RITA, iid, "A.HK", "member of both"), "ok")
    book = st.load_book()
    with st.begin() as conn:
        derived = idx.derived_levels(conn)
        ids: dict[str, int] = {c: int(i) for c, i in conn.execute(text("select code, id from securities")).all()}
    assert {c: derived[ids[c]] for c in book.sec_codes} == {c: int(book.level[i]) for i, c in enumerate(book.sec_codes)}
    assert {c: int(book.level[i]) for i, c in enumerate(book.sec_codes)} == {
        "A.HK": 1, "U.US": 2, "N.HK": 3, "I.HK": 3}


# ---------------------------------------------------------------------- level weighting
def test_level_weighting_and_declines_hand_computed() -> None:
    engine = MarginEngine(_book())
    w = level_weighting.compute_weighting(engine)
    # margin longs: level 1 A.HK 100,000 + U.US 78,000; level 3 N.HK 50,000 (C1's A.HK is a cash account)
    assert w.market_value.tolist() == pytest.approx([178_000.0, 0.0, 50_000.0])
    assert float(w.share.sum()) == pytest.approx(1.0)
    assert w.share.tolist() == pytest.approx([178 / 228, 0.0, 50 / 228])
    assert w.securities.tolist() == [2, 0, 1]
    names = [d["scenario"] for d in w.declines]
    assert names == ["SFC level declines", "Level 1 −15%", "Level 2 −25%", "Level 3 −50%"]
    by = {d["scenario"]: d for d in w.declines}
    # before: M1 E 90,000, IM 100,000, MM 90,000 → warning. Level declines: A.HK 85,000, N.HK 25,000:
    # E 50,000, IM 42,500 + 25,000 = 67,500, MM 34,000 + 25,000 = 59,000, FC 47,200 → call 17,500 (new)
    assert (by["SFC level declines"]["accounts_in_call"], by["SFC level declines"]["new_calls"]) == (1, 1)
    assert by["SFC level declines"]["total_call_amount"] == pytest.approx(17_500.0)
    # level 1 alone: E 75,000, IM 92,500, MM 84,000, FC 67,200 → call 17,500
    assert by["Level 1 −15%"]["total_call_amount"] == pytest.approx(17_500.0)
    # level 2 alone moves nothing; level 3 alone: E 65,000 = MM 65,000 → warning, no call
    assert by["Level 2 −25%"]["accounts_in_call"] == 0 and by["Level 3 −50%"]["accounts_in_call"] == 0
    calls = level_weighting.simulate(engine, w.scenarios[0])
    assert [(c["account"], c["status"], c["before"], c["new"]) for c in calls] == [("M1", "call", "warning", True)]
    assert calls[0]["call_amount"] == pytest.approx(17_500.0) and calls[0]["equity"] == pytest.approx(50_000.0)


def test_level_decline_scenarios_come_from_the_shipped_file() -> None:
    scs = level_weighting.level_decline_scenarios()
    assert scs[0].shocks == [("level:1", -0.15), ("level:2", -0.25), ("level:3", -0.5)]
    assert [s.shocks for s in scs[1:]] == [[("level:1", -0.15)], [("level:2", -0.25)], [("level:3", -0.5)]]
    empty = MarginEngine(make_book([_acct("M1", 0)], []))
    w = level_weighting.compute_weighting(empty)
    assert w.share.tolist() == [0.0, 0.0, 0.0] and np.all(w.market_value == 0)
