"""Setting records (issue 4): pending until effective, Sync, Cancel sync, expiry to 100%, all four-eyes,
and the engine's priority client > stock > default follows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from services import auth, changes, ratio_settings
from services.margin import MarginEngine
from services.store import Store
from tests.test_margin_formulas import _acct, make_book

RITA, SAM = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")


@pytest.fixture
def store(sqlite_url: str) -> Store:
    st = Store(sqlite_url)
    st.migrate()
    st.save_book(make_book([_acct("M1", -20_000)], [("M1", "A.HK", 1000)]))  # A.HK long 0.5 / 0.4
    auth.ensure_permissions(st)
    return st


def _im(store: Store) -> float:
    return float(MarginEngine(store.load_book()).im[0])


def test_future_setting_is_pending_then_sync_brings_it_in_force(store: Store) -> None:
    later = datetime.now(UTC) + timedelta(days=2)
    rid = ratio_settings.propose(store, RITA, "A.HK", "long", 0.6, 0.5, "tighten from Tuesday", later)
    assert _im(store) == 50_000.0  # nothing before approval
    changes.approve(store, SAM, rid)
    assert _im(store) == 50_000.0  # approved but not yet effective
    rec = [r for r in ratio_settings.records(store, "A.HK") if r.table == "long"]
    assert [(r.state, r.im_ratio) for r in rec] == [("pending", 0.6), ("in force", 0.5)]
    # at the effective time it applies without anything having to run
    assert store.load_book(as_of=later + timedelta(minutes=1)).long_im[0] == 0.6
    s = ratio_settings.sync(store, RITA, rec[0].id)
    changes.approve(store, SAM, s)
    assert _im(store) == 60_000.0
    assert [r.state for r in ratio_settings.records(store, "A.HK") if r.table == "long"] == [
        "in force", "superseded"]


def test_cancel_sync_revokes_and_expiry_means_100_percent(store: Store) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    rid = ratio_settings.propose(store, RITA, "A.HK", "long", 0.3, 0.2, "looser", later)
    changes.approve(store, SAM, rid)
    pending = ratio_settings.records(store, "A.HK")[0]
    changes.approve(store, SAM, ratio_settings.cancel_sync(store, RITA, pending.id))
    assert ratio_settings.records(store, "A.HK")[0].state == "revoked"
    assert store.load_book(as_of=later + timedelta(days=1)).long_im[0] == 0.5  # a revoked one never applies
    soon = datetime.now(UTC) + timedelta(hours=1)
    rid = ratio_settings.propose(store, RITA, "A.HK", "long", 0.45, 0.35, "until noon", expires_at=soon)
    changes.approve(store, SAM, rid)
    assert _im(store) == 45_000.0
    # after it expires the stock is not marginable in that table (100%), not back to the old record
    book = store.load_book(as_of=soon + timedelta(minutes=1))
    assert MarginEngine(book).im[0] == 100_000.0


def test_bad_settings_are_refused_with_the_reason(store: Store) -> None:
    with pytest.raises(changes.ChangeError, match="between 0 and 1"):
        ratio_settings.propose(store, RITA, "A.HK", "long", 1.2, 0.3, "x")
    with pytest.raises(changes.ChangeError, match="from 1 up"):
        ratio_settings.propose(store, RITA, "A.HK", "short", 0.9, 0.8, "x")
    with pytest.raises(changes.ChangeError, match="must not exceed"):
        ratio_settings.propose(store, RITA, "A.HK", "long", 0.3, 0.4, "x")
    with pytest.raises(changes.ChangeError, match="unknown security"):
        ratio_settings.propose(store, RITA, "NOPE", "long", 0.3, 0.2, "x")
    with store.begin() as conn:
        assert conn.execute(text("select count(*) from change_requests")).scalar() == 0


@pytest.mark.postgres
def test_setting_records_through_postgres_enforcement(pg_url: str) -> None:
    import uuid

    owner = Store(pg_url)
    owner.migrate()
    owner.save_book(make_book([_acct("M1", -20_000)], [("M1", "A.HK", 1000)]))
    auth.ensure_permissions(owner)
    sfx = uuid.uuid4().hex[:6]
    auth.create_user(owner, f"rs_m_{sfx}", "risk_officer", password="x")
    auth.create_user(owner, f"rs_c_{sfx}", "supervisor", password="x")
    maker = Store(pg_url.replace("postgres@", f"rs_m_{sfx}@"))
    checker = Store(pg_url.replace("postgres@", f"rs_c_{sfx}@"))
    later = datetime.now(UTC) + timedelta(days=2)
    rid = ratio_settings.propose(maker, RITA, "A.HK", "long", 0.6, 0.5, "tighten", later)
    assert changes.approve(checker, SAM, rid) == "approved"
    assert _im(owner) == 50_000.0
    rec = [r for r in ratio_settings.records(owner, "A.HK") if r.table == "long"][0]
    assert rec.state == "pending"
    assert rec.effective_from is not None and abs((rec.effective_from - later).total_seconds()) < 1
    changes.approve(checker, SAM, ratio_settings.sync(maker, RITA, rec.id))
    assert _im(owner) == 60_000.0
    for s in (maker, checker, owner):
        s.dispose()
