"""Both stores through the migrations, and the book in and out of them."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from models.book import BookError
from services.demo import make_demo_book
from services.demo_store import seed_demo_store
from services.margin import MarginEngine
from services.store import Store, StoreError


def _round_trip(url: str) -> None:
    store = Store(url)
    store.migrate()
    store.migrate()  # idempotent: a second start finds the store at head
    assert store.schema_revision() == "0012"
    assert store.is_empty()
    info = seed_demo_store(store, clients=300, seed=3)
    assert info["accounts"] == 300
    loaded = store.load_book()
    ref = make_demo_book(300, seed=3)
    assert loaded.sec_codes == ref.sec_codes
    assert loaded.n_pos == ref.n_pos
    e1, e2 = MarginEngine(ref), MarginEngine(loaded)
    np.testing.assert_allclose(e1.equity, e2.equity)
    np.testing.assert_allclose(e1.im, e2.im)
    assert (e1.status == e2.status).all()
    params = store.parameters()
    assert params["force_call_factor"] == 0.8 and params["stale_after_seconds"] == 5.0
    store.dispose()


def test_a_local_store_gets_new_default_permissions_when_opened(sqlite_url: str) -> None:
    from services.auth import User, permitted

    store = Store(sqlite_url)
    store.migrate()
    tom = User("tom", "Tom Ho", "trader")
    assert permitted(store, tom, "request", "client_email")
    with store.begin() as conn:  # a store made before the permission existed
        conn.execute(text("delete from role_permissions where kind = 'client_email'"))
    assert not permitted(store, tom, "request", "client_email")
    store.migrate()  # what every start does
    assert permitted(store, tom, "request", "client_email")
    store.dispose()


def test_sqlite_store_round_trip(sqlite_url: str) -> None:
    _round_trip(sqlite_url)
    store = Store(sqlite_url)
    with store.begin() as conn:
        assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
        assert conn.execute(text("pragma foreign_keys")).scalar() == 1


@pytest.mark.postgres
def test_postgres_store_round_trip(pg_url: str) -> None:
    _round_trip(pg_url)


def test_save_is_all_or_nothing(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    store.migrate()
    seed_demo_store(store, clients=50)
    book = make_demo_book(60, seed=9)
    book.pos_sec[0] = 10_000_000  # no such security: the foreign key fails mid-write
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        store.save_book(book)
    assert store.load_book().n_acct == 50  # the old book is intact


def test_unreachable_postgres_is_a_clear_message() -> None:
    store = Store("postgresql://nobody@127.0.0.1:1/x", connect_timeout=2)
    with pytest.raises(StoreError, match="Cannot reach the database server"):
        store.check()


def test_bad_url_is_a_clear_message() -> None:
    with pytest.raises(StoreError, match="unsupported database"):
        Store("mysql://x@y/z")
    assert issubclass(BookError, ValueError)
