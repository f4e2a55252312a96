"""The append-only, hash-chained audit trail (issue 3).

Each record's hash is SHA-256 over a length-prefixed canonical form of its fields and the previous
record's hash, so any edit, deletion or reordering breaks the chain at the first touched record.
PostgreSQL computes it in `rd_audit_write` under an advisory lock (one chain, many writers, server
time); SQLite computes the identical form here after taking the database's write lock.
"""

from __future__ import annotations

import csv
import hashlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from services.store import Store, StoreError

GENESIS = "0" * 64


def workstation() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return ""


def ts_text(ts: datetime) -> str:
    """UTC with microseconds, exactly as PostgreSQL's to_char(… 'YYYY-MM-DD"T"HH24:MI:SS.US') || 'Z'."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def canonical(*parts: str) -> str:
    return "|".join(f"{len(p)}:{p}" for p in parts)


def record_hash(rec_id: int, ts: datetime, actor: str, action: str, entity: str, key: str, before: str,
                after: str, request_id: int | None, ws: str, prev: str) -> str:
    form = canonical(str(rec_id), ts_text(ts), actor, action, entity, key or "", before or "", after or "",
                     "" if request_id is None else str(request_id), ws or "", prev)
    return hashlib.sha256(form.encode("utf-8")).hexdigest()


def append(conn: Connection, kind: str, actor: str, action: str, entity: str, key: str = "",
           before: str = "", after: str = "", request_id: int | None = None, ws: str | None = None) -> int:
    """Append one record inside the caller's transaction (so it commits with the change it records).

    On PostgreSQL the actor is the logged-in database user whatever `actor` says.
    """
    ws = workstation() if ws is None else ws
    if kind == "postgresql":
        return int(conn.execute(text("select rd_audit(:a, :e, :k, :b, :f, :r, :w)"), {
            "a": action, "e": entity, "k": key, "b": before, "f": after, "r": request_id, "w": ws}).scalar_one())
    # SQLite: take the write lock first so nobody appends between reading the head and writing
    conn.execute(text("update store_meta set value = value where key = 'audit_head'"))
    last = conn.execute(text("select id, hash from audit_log order by id desc limit 1")).first()
    rec_id = (last[0] + 1) if last else 1
    prev = last[1] if last else GENESIS
    ts = datetime.now(UTC)
    h = record_hash(rec_id, ts, actor, action, entity, key, before, after, request_id, ws, prev)
    conn.execute(text(
        "insert into audit_log (id, ts, actor, action, entity, entity_key, before, after, request_id, "
        "workstation, prev_hash, hash) values (:i, :t, :a, :c, :e, :k, :b, :f, :r, :w, :p, :h)"), {
        "i": rec_id, "t": ts, "a": actor, "c": action, "e": entity, "k": key, "b": before, "f": after,
        "r": request_id, "w": ws, "p": prev, "h": h})
    return rec_id


def record(store: Store, actor: str, action: str, entity: str, key: str = "", before: str = "",
           after: str = "", request_id: int | None = None) -> int:
    """Append in a transaction of its own (logins, exports); durable when this returns."""
    if store.kind == "postgresql":
        return _record_alone(store, action, entity, key, before, after, request_id)
    with store.begin() as conn:
        return append(conn, store.kind, actor, action, entity, key, before, after, request_id)


def _record_alone(store: Store, action: str, entity: str, key: str, before: str, after: str,
                  request_id: int | None) -> int:
    """PostgreSQL: the record is one statement in a transaction of its own (autocommit, on the
    store's own connection: `Store.autocommit_driver`), so the chain's lock is held inside the
    server only, never across a round trip to this process. (Under BEGIN … COMMIT it is held until
    the client's COMMIT arrives: with four writers on two cores, a writer descheduled while holding
    it stops them all.) Its commit does not wait for the disk (`synchronous_commit` off for that
    transaction alone), so the lock is not held across a flush either. The second statement, a
    transaction that writes WAL and commits synchronously, returns only once the WAL up to it, our
    record included, is flushed: a flush shared by concurrent writers. Nothing is reported written
    before it is on disk; a crash in between loses it and every later record whole, never a link of
    the chain. (Both statements in one libpq pipeline measured slower.)"""
    import psycopg

    args = (action, entity, key, before, after, request_id, workstation())
    what = f"the audit record ({action} {entity} {key})"
    with store.autocommit_driver() as conn:
        try:
            row = conn.execute(_RECORD_SQL, args).fetchone()
        except psycopg.Error as e:
            raise StoreError(f"{what} was not written: {e}") from e
        try:
            conn.execute(_FLUSHED_SQL)
        except psycopg.Error as e:  # the record itself committed: it may or may not be on disk
            raise StoreError(f"{what} was written as #{row[1]}, but whether it reached the disk is not "
                             f"known: {e}") from e
        return int(row[1])


_RECORD_SQL = "select set_config('synchronous_commit', 'off', true), rd_audit(%s, %s, %s, %s, %s, %s, %s)"
# A transaction of its own that writes WAL (a transactional logical message: a few bytes, no table) so
# that its synchronous commit flushes the WAL up to its commit record, and with it every commit before
# it, ours included. (A transaction that only takes an id writes no WAL before its commit record and
# commits without a flush.)
_FLUSHED_SQL = "select pg_logical_emit_message(true, 'riskdesk_audit', '')"


@dataclass
class VerifyResult:
    ok: bool
    records: int
    first_bad_id: int | None = None
    problem: str = ""

    def message(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.records} records"
        return f"audit chain broken at record {self.first_bad_id}: {self.problem}"


def _as_utc(v: Any) -> datetime:
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return v if v.tzinfo else v.replace(tzinfo=UTC)


def _ts_canonical(v: Any) -> str:
    """The canonical timestamp text of a stored value, without a datetime round trip when possible.

    SQLite keeps UTC wall time as 'YYYY-MM-DD HH:MM:SS.ffffff'; PostgreSQL hands back datetimes.
    """
    if isinstance(v, str) and len(v) == 26 and v[10] == " ":
        return v[:10] + "T" + v[11:] + "Z"
    return ts_text(_as_utc(v))


def verify(store: Store, batch: int = 50_000) -> VerifyResult:
    """Walk the whole chain in id order; name the first record whose hash or link does not hold.

    Reads raw driver rows in batches (1M records in about 10 s here): this is the auditor's check,
    so it recomputes every hash rather than trusting any stored index.
    """
    prev = GENESIS
    n = 0
    sha = hashlib.sha256
    with store.engine.connect() as conn:
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        cur = dbapi.cursor(name="audit_verify") if store.kind == "postgresql" else dbapi.cursor()
        try:
            cur.execute("select id, ts, actor, action, entity, entity_key, before, after, request_id, "
                        "workstation, prev_hash, hash from audit_log order by id")
            while True:
                chunk = cur.fetchmany(batch)
                if not chunk:
                    break
                for rid, ts, actor, action, entity, key, before, after, req, ws, p_hash, h in chunk:
                    n += 1
                    if p_hash != prev:
                        return VerifyResult(False, n, rid, "its prev_hash does not match the record before it "
                                            "(a record was deleted, inserted or reordered)")
                    parts = (str(rid), _ts_canonical(ts), actor, action, entity, key or "", before or "",
                             after or "", "" if req is None else str(req), ws or "", p_hash)
                    form = "|".join([f"{len(x)}:{x}" for x in parts])
                    if sha(form.encode("utf-8")).hexdigest() != h:
                        return VerifyResult(False, n, rid,
                                            "its contents do not match its hash (the record was edited)")
                    prev = h
        finally:
            cur.close()
    return VerifyResult(True, n)


def rows(store: Store, start: datetime | None = None, end: datetime | None = None, actor: str | None = None,
         entity: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    where = []
    params: dict[str, Any] = {}
    if start:
        where.append("ts >= :s")
        params["s"] = start
    if end:
        where.append("ts < :e")
        params["e"] = end
    if actor:
        where.append("actor = :a")
        params["a"] = actor
    if entity:
        where.append("entity = :n")
        params["n"] = entity
    sql = ("select id, ts, actor, action, entity, entity_key, before, after, request_id, workstation, hash "
           "from audit_log" + (" where " + " and ".join(where) if where else "") + " order by id desc")
    if limit:
        sql += f" limit {int(limit)}"
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def export(store: Store, path: str | Path, actor: str, start: datetime | None = None,
           end: datetime | None = None) -> int:
    """Write a range to CSV or xlsx for auditors; the export itself is audited."""
    recs = list(reversed(rows(store, start, end)))
    p = Path(path)
    cols = ["id", "ts", "actor", "action", "entity", "entity_key", "before", "after", "request_id",
            "workstation", "hash"]
    if p.suffix.lower() == ".xlsx":
        from services.excel import write_table

        write_table(p, "Audit", cols, [[r[c] for c in cols] for r in recs])
    else:
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in recs:
                w.writerow([r[c] for c in cols])
    record(store, actor, "export", "audit_log", f"{len(recs)} records",
           after=f"{p.name} {start or ''}..{end or ''}")
    return len(recs)


def iter_chain(store: Store) -> Iterator[tuple[int, str]]:
    with store.begin() as conn:
        yield from conn.execute(text("select id, hash from audit_log order by id"))
