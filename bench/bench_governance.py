"""approval.round_trip, audit.append and audit.verify_1m (issue 3).

- approval.round_trip: submit → approve → applied on PostgreSQL, two separate logins, median.
- audit.append: records/s on PostgreSQL with 4 concurrent writers (processes) keeping one chain,
  each record durable in a transaction of its own (`audit.record`, as logins and exports are
  written), vs one writer. Also printed: the same four writers appending one record per
  BEGIN … COMMIT (`audit.append` inside a caller's transaction, as a parameter change is audited),
  and ten records per transaction.
- audit.verify_1m: `audit verify` over 1,000,000 records (SQLite file written through executemany).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench.common import row

NAMES = ("approval.round_trip", "audit.append", "audit.verify_1m")
PG_ADMIN = os.environ.get("RISKDESK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_db() -> tuple[str, Any]:
    import psycopg

    name = f"riskdesk_bench_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'create database "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'drop database if exists "{name}" with (force)')

    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, drop


def round_trip() -> dict[str, Any]:
    from services import auth, changes
    from services.store import Store

    url, drop = _pg_db()
    try:
        owner = Store(url)
        owner.migrate()
        sfx = uuid.uuid4().hex[:6]
        auth.ensure_permissions(owner)
        auth.create_user(owner, f"bmaker_{sfx}", "risk_officer", password="x")
        auth.create_user(owner, f"bcheck_{sfx}", "supervisor", password="x")
        maker = Store(url.replace("postgres@", f"bmaker_{sfx}@"))
        checker = Store(url.replace("postgres@", f"bcheck_{sfx}@"))
        mu, cu = auth.User(f"bmaker_{sfx}", "", "risk_officer"), auth.User(f"bcheck_{sfx}", "", "supervisor")
        ts = []
        for i in range(60):
            t = time.perf_counter()
            rid = changes.submit(maker, mu, "company_parameter", {"name": "stale_after_seconds"},
                                 {"value": 5.0 + (i % 7)}, f"bench {i}")
            changes.approve(checker, cu, rid, "ok")
            ts.append(time.perf_counter() - t)
        assert owner.parameters()["stale_after_seconds"] == 5.0 + (59 % 7)
        for s in (maker, checker, owner):
            s.dispose()
    finally:
        drop()
    return row("approval.round_trip", float(np.median(ts[5:]) * 1e3), "ms", p95_ms=round(
        float(np.percentile(ts[5:], 95) * 1e3), 2), store="postgresql")


def audit_append() -> dict[str, Any]:
    from sqlalchemy import text

    from services import audit
    from services.store import Store

    url, drop = _pg_db()
    try:
        st = Store(url)
        st.migrate()

        single = _writer(url, 500)
        base = 500 / single
        # four workstations are four processes (threads in one process would share one GIL)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(4) as pool:
            pool.map(_warm, range(4))
            t = time.perf_counter()
            pool.starmap(_writer, [(url, 500)] * 4)
            rate = 2000 / (time.perf_counter() - t)
            t = time.perf_counter()
            pool.starmap(_writer, [(url, 500, 1)] * 4)
            in_txn = 2000 / (time.perf_counter() - t)
            t = time.perf_counter()
            pool.starmap(_writer, [(url, 500, 10)] * 4)
            batched = 2000 / (time.perf_counter() - t)
        res = audit.verify(st)
        with st.begin() as conn:
            n = conn.execute(text("select count(*) from audit_log")).scalar()
        assert res.ok and n == 6500
        st.dispose()
    finally:
        drop()
    return row("audit.append", rate, "records/s", base, higher_is_better=True, writers=4,
               baseline_kind="one writer", chain_ok=res.ok, one_per_begin_commit=round(in_txn),
               batched_10_per_txn=round(batched))


def _warm(_: int) -> None:
    import services.audit  # noqa: F401  (imports paid before the clock starts)


def _writer(url: str, n: int, per_txn: int = 0) -> float:
    """One workstation appending n records: each one alone (`audit.record`), or `per_txn` per
    BEGIN … COMMIT (`audit.append`); seconds taken."""
    from services import audit
    from services.store import Store

    s = Store(url)
    t = time.perf_counter()
    if not per_txn:
        for i in range(n):
            audit.record(s, "bench", "bench", "bench", str(i), "", "x")
    else:
        for i in range(0, n, per_txn):
            with s.begin() as conn:
                for j in range(per_txn):
                    audit.append(conn, "postgresql", "bench", "bench", "bench", str(i + j), "", "x")
    took = time.perf_counter() - t
    s.dispose()
    return took


def verify_1m() -> dict[str, Any]:
    import sqlite3

    from services import audit
    from services.store import Store

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "audit.db")
        st = Store(f"sqlite:///{path}")
        st.migrate()
        n = 1_000_000
        t0 = datetime(2026, 1, 1, tzinfo=UTC)

        def gen() -> Iterator[tuple[Any, ...]]:
            prev = audit.GENESIS
            for i in range(1, n + 1):
                ts = t0 + timedelta(seconds=i)
                key, after = f"acct {i % 5000}", f'{{"amount": {i}}}'
                h = audit.record_hash(i, ts, "rita", "apply", "financing_limits", key, "", after, None, "ws1", prev)
                yield (i, ts.strftime("%Y-%m-%d %H:%M:%S.%f"), "rita", "apply", "financing_limits", key, "", after, None, "ws1",
                       prev, h)
                prev = h

        con = sqlite3.connect(path)
        con.executemany("insert into audit_log values (?,?,?,?,?,?,?,?,?,?,?,?)", gen())
        con.commit()
        con.close()
        t = time.perf_counter()
        res = audit.verify(st)
        value = time.perf_counter() - t
        assert res.ok and res.records == n
        st.dispose()
    return row("audit.verify_1m", value, "s", records=n, store="sqlite")


def run(selected: list[str]) -> Iterator[dict[str, Any]]:
    if "approval.round_trip" in selected:
        yield round_trip()
    if "audit.append" in selected:
        yield audit_append()
    if "audit.verify_1m" in selected:
        yield verify_1m()
