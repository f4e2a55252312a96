"""Index and security haircuts as four-eyes change requests on a real SQLite store, and their
modification records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from services import changes, haircuts
from services.auth import User, ensure_permissions
from services.demo_store import seed_demo_store
from services.store import Store

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    st = Store(sqlite_url)
    st.migrate()
    seed_demo_store(st, clients=20, seed=3)
    ensure_permissions(st)
    yield st
    st.dispose()


def _index(store: Store, code: str) -> dict[str, Any]:
    return next(r for r in haircuts.index_haircuts(store) if r["code"] == code)


def _stored(store: Store, index_id: int) -> float | None:
    with store.begin() as conn:
        return conn.execute(text("select haircut from index_haircuts where index_id = :i"), {"i": index_id}).scalar()


def test_every_index_listed_with_members_and_no_haircut_yet(store: Store) -> None:
    rows = haircuts.index_haircuts(store)
    with store.begin() as conn:
        members: dict[str, int] = dict(conn.execute(text("select i.code, count(m.security_id) from indices i left join "
                                         "index_members m on m.index_id = i.id group by i.code")).all())
    assert [r["code"] for r in rows] == ["HSI", "HSCI", "OEX", "SPX"]
    assert {r["code"]: r["members"] for r in rows} == members
    assert all(r["haircut"] is None and r["request_id"] is None and r["request"] == "" for r in rows)
    assert {r["code"]: r["level"] for r in rows} == {"HSI": 1, "HSCI": 2, "OEX": 1, "SPX": 2}


def test_index_haircut_insert_then_update_through_four_eyes(store: Store) -> None:
    hsi = _index(store, "HSI")
    rid = haircuts.submit_index_haircut(store, RITA, hsi["id"], 0.15, "SFC review")
    req = changes.get(store, rid)
    assert (req.kind, req.op, req.target_table, req.after) == ("index_haircut", "insert", "index_haircuts",
                                                              {"haircut": 0.15})
    assert _stored(store, hsi["id"]) is None  # nothing applied before approval
    assert _index(store, "HSI")["request"] == f"request #{rid} pending → 0.15"
    with pytest.raises(changes.ChangeError, match=f"#{rid} pending"):
        haircuts.submit_index_haircut(store, RITA, hsi["id"], 0.2, "again")
    changes.approve(store, SAM, rid)
    assert _stored(store, hsi["id"]) == 0.15
    assert _index(store, "HSI")["haircut"] == 0.15

    rid2 = haircuts.submit_index_haircut(store, RITA, hsi["id"], 0.25, "volatility")
    req2 = changes.get(store, rid2)
    assert (req2.op, req2.before, req2.after) == ("update", {"haircut": 0.15}, {"haircut": 0.25})
    changes.approve(store, SAM, rid2)
    assert _stored(store, hsi["id"]) == 0.25


def test_bad_index_haircuts_refused(store: Store) -> None:
    hsi = _index(store, "HSI")
    for bad in (1.2, -0.01, float("nan")):
        with pytest.raises(changes.ChangeError, match="between 0 and 1"):
            haircuts.submit_index_haircut(store, RITA, hsi["id"], bad, "typo")
    with pytest.raises(changes.ChangeError, match="does not exist"):
        haircuts.submit_index_haircut(store, RITA, 999, 0.2, "no such index")
    with store.begin() as conn:
        assert conn.execute(text("select count(*) from change_requests where kind = 'index_haircut'")).scalar() == 0


def test_modification_records_per_target(store: Store) -> None:
    sec = haircuts.security_haircuts(store)[0]
    old = sec["haircut"]
    r1 = haircuts.submit_haircut(store, RITA, sec["id"], 0.5, "first", sec["code"])
    changes.reject(store, SAM, r1, "too high")
    r2 = haircuts.submit_haircut(store, RITA, sec["id"], 0.45, "second", sec["code"])
    changes.approve(store, SAM, r2)
    other = haircuts.security_haircuts(store)[1]
    haircuts.submit_haircut(store, RITA, other["id"], 0.9, "another security", other["code"])

    recs = haircuts.modification_records(store, haircuts.SECURITY_KIND, "security_id")
    mine = recs[sec["id"]]
    assert [(m["id"], m["status"], m["maker"], m["checker"], m["change"]) for m in mine] == [
        (r2, "approved", "rita", "sam", f"{old:g} → 0.45"), (r1, "rejected", "rita", "sam", f"{old:g} → 0.5")]
    assert [m["status"] for m in recs[other["id"]]] == ["pending"]
    snap = haircuts.load_haircuts(store, RITA)
    row = next(r for r in snap.securities if r["id"] == sec["id"])
    assert row["haircut"] == 0.45 and row["request_id"] is None
    assert snap.may_request and snap.may_request_index
