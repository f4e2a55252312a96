"""Store access: SQLite (local, default) or PostgreSQL (shared), migrations, and the book in/out.

Bulk paths never build ORM objects: the book is written with Core `executemany` and read with raw
driver cursors straight into numpy (1M positions load in about a second here).
"""

from __future__ import annotations

import json
import os
import select as _select
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, create_engine, delete, event, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from models import schema as S
from models.book import ACCOUNT_TYPES, DEFAULT_PARAMETERS, Book, ClientRatios
from services.errors import StoreError

EXTRA_PARAMETERS: dict[str, tuple[float, str]] = {
    "stale_after_seconds": (5.0, "a price not updated for this long in trading hours is stale"),
    "market_open_hhmm": (930.0, "trading hours start (local time, HHMM)"),
    "market_close_hhmm": (1600.0, "trading hours end (local time, HHMM)"),
    "change_request_expiry_hours": (72.0, "a pending change request expires after this many hours"),
    "session_lock_minutes": (15.0, "the workstation locks after this many idle minutes"),
    "auto_credit_enabled": (0.0, "1: a deposit or stock transfer into a margin account proposes a limit"),
    "auto_credit_share": (0.5, "automatic credit: share of the account's marginable collateral value"),
    "auto_credit_cap": (1_000_000.0, "automatic credit: largest limit proposed automatically (HKD)"),
    "normal_order_lots": (50.0, "pre-trade: normal order size in board lots where a security sets none"),
    "size_prompt_multiple": (3.0, "pre-trade: an order above this many normal sizes asks the trader to confirm"),
    "size_reject_multiple": (10.0, "pre-trade: an order above this many normal sizes is rejected"),
    "duplicate_window_seconds": (60.0, "pre-trade: the same order again within this many seconds is rejected"),
    "approval_notional": (1_000_000.0, "pre-trade: an order above this notional (HKD) needs a release approval"),
}
PARAMETER_DESCRIPTIONS = {
    "force_call_factor": "FC = factor × MM (RISK_METHODS §1)",
    "call_deadline_days": "trading days from trigger to the call deadline",
    "lcs_decline_a": "LCS decline when level-1 share > 75%",
    "lcs_decline_b": "LCS decline when level-1+2 share > 75%",
    "lcs_decline_c": "LCS decline when level-1+2 share ≥ 25%",
    "lcs_decline_d": "LCS decline otherwise",
}
BOOK_TABLES = ("short_sell_history", "lending_inventory",  # keyed by the book's security ids: replaced with it
               "margin_call_notices", "margin_call_remarks", "margin_call_exceptions",  # issue 8 call work
               "margin_call_snapshots", "margin_call_events", "margin_calls", "client_margin_ratios",
               "client_group_members", "client_groups", "stock_group_members", "stock_groups",
               "stock_margin_ratios", "index_members", "indices", "positions", "cash_balances",
               "financing_limits", "accounts", "clients", "haircuts", "prices", "securities", "currencies")


def user_data_dir() -> Path:
    if os.environ.get("RISKDESK_HOME"):
        return Path(os.environ["RISKDESK_HOME"])
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home()))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "RiskDesk"


def default_url() -> str:
    return f"sqlite:///{user_data_dir() / 'riskdesk.db'}"


def normalise_url(url: str) -> str:
    """Accept a bare file path for SQLite and `postgresql://` for psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


# a connection whose server has gone silently (a dropped NAT or firewall flow sends no FIN) fails
# within about a minute, idle or in use, instead of after the system's ~15-minute TCP give-up
PG_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
                "tcp_user_timeout": 60_000}


def _readable(fd: int) -> bool:
    """Whether the server has written to (or closed) an idle connection: poll, not select (which
    refuses descriptors above 1023)."""
    if hasattr(_select, "poll"):
        p = _select.poll()
        p.register(fd, _select.POLLIN)
        return bool(p.poll(0))
    return bool(_select.select([fd], [], [], 0)[0])  # Windows: sockets only, no descriptor limit


class Store:
    """One database: its engine, migrations and the bulk book paths."""

    def __init__(self, url: str, password: str | None = None, connect_timeout: int = 5) -> None:
        try:
            u = make_url(normalise_url(url))
        except ArgumentError as e:
            raise StoreError(f"not a database URL: {url!r}") from e
        if password is not None:
            u = u.set(password=password)
        self.url = u
        self.kind = u.get_backend_name()
        if self.kind == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(u, connect_args={"timeout": 10})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.kind == "postgresql":
            self.engine = create_engine(u, connect_args={"connect_timeout": connect_timeout, **PG_KEEPALIVE},
                                        pool_pre_ping=True)
        else:
            raise StoreError(f"unsupported database {self.kind!r}: use sqlite:///FILE or postgresql://…")
        self._driver: Any = None  # `autocommit_driver`'s connection, opened on first use
        self._driver_lock = threading.Lock()

    @property
    def display_name(self) -> str:
        if self.kind == "sqlite":
            return f"local store {self.url.database}"
        return f"{self.url.username or ''}@{self.url.host or 'localhost'}/{self.url.database}"

    def dispose(self) -> None:
        # a record still in flight on a dead connection must not hold up the application's exit
        if self._driver_lock.acquire(timeout=2.0):
            try:
                if self._driver is not None:
                    self._driver.close()
                    self._driver = None
            finally:
                self._driver_lock.release()
        self.engine.dispose()

    @contextmanager
    def autocommit_driver(self) -> Iterator[Any]:
        """PostgreSQL: the store's own driver (psycopg) connection in autocommit mode, for statements
        that are each a transaction of their own (audit records written alone, `audit.record`).

        It is kept outside the pool: no checkout, liveness ping or reset on each use (three round
        trips and most of the client's time for a one-statement write); one caller at a time. A
        connection the server has closed, or written to while it sat idle (a restart, a terminated
        session), is replaced before use; one that fails in use is dropped and the caller gets the
        error (nothing is retried: the statement may have run)."""
        with self._driver_lock:
            conn: Any = self._driver
            if conn is not None and (conn.closed or _readable(conn.fileno())):
                conn.close()
                conn = self._driver = None
            if conn is None:
                try:
                    proxy = self.engine.raw_connection()  # the engine's connect arguments and password
                except OperationalError as e:
                    raise StoreError(describe_operational_error(e, self)) from e
                proxy.detach()  # ours from now on, never returned to the pool
                conn = proxy.dbapi_connection
                try:
                    conn.autocommit = True
                except BaseException:
                    conn.close()
                    raise
                self._driver = conn
            try:
                yield conn
            except BaseException:  # the caller may have wrapped the driver's error in its own
                if conn.closed or conn.broken:
                    conn.close()
                    self._driver = None
                raise

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as e:
            raise StoreError(describe_operational_error(e, self)) from e

    def check(self) -> None:
        """Open one connection (raises StoreError with a user-facing message)."""
        with self.begin() as conn:
            conn.execute(text("select 1"))

    # ------------------------------------------------------------------ migrations
    def migrate(self) -> None:
        """Bring the store to the newest schema (Alembic head) and seed default parameters."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(S.__file__).parent / "migrations"))
        with self.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        self.ensure_parameters()
        if self.kind == "sqlite":  # a local store is its user's own: new default permissions reach it
            from services.auth import ensure_permissions  # (on PostgreSQL the owner grants them)

            ensure_permissions(self)

    def schema_revision(self) -> str | None:
        with self.begin() as conn:
            try:
                return conn.execute(text("select version_num from alembic_version")).scalar()
            except Exception:
                return None

    def ensure_parameters(self) -> None:
        with self.begin() as conn:
            have = set(conn.execute(select(S.company_parameters.c.name)).scalars())
            rows = [{"name": k, "value": v, "description": PARAMETER_DESCRIPTIONS.get(k, "")}
                    for k, v in DEFAULT_PARAMETERS.items() if k not in have]
            rows += [{"name": k, "value": v, "description": d}
                     for k, (v, d) in EXTRA_PARAMETERS.items() if k not in have]
            if rows:
                conn.execute(insert(S.company_parameters), rows)
            if conn.execute(select(S.store_meta.c.key).where(S.store_meta.c.key == "audit_head")).first() is None:
                conn.execute(insert(S.store_meta), [{"key": "audit_head", "value": "audit chain writer lock"}])

    def parameters(self) -> dict[str, float]:
        with self.begin() as conn:
            return {r.name: float(r.value) for r in conn.execute(select(S.company_parameters))}

    def is_empty(self) -> bool:
        with self.begin() as conn:
            return conn.execute(select(S.accounts.c.id).limit(1)).first() is None

    def meta(self, key: str) -> str | None:
        with self.begin() as conn:
            return conn.execute(select(S.store_meta.c.value).where(S.store_meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        with self.begin() as conn:
            conn.execute(delete(S.store_meta).where(S.store_meta.c.key == key))
            conn.execute(insert(S.store_meta), [{"key": key, "value": value}])

    # ------------------------------------------------------------------ book out
    def save_book(self, book: Book, *, indices: Iterable[dict[str, Any]] = (),
                  holidays: Iterable[tuple[date, str]] = ()) -> None:
        """Replace the store's book with `book` in one transaction (demo, `book import`)."""
        now = datetime.now(UTC)
        with self.begin() as conn:
            for t in BOOK_TABLES:
                conn.execute(S.metadata.tables[t].delete())
            conn.execute(insert(S.currencies), [
                {"code": c, "fx_rate": float(book.fx[i]), "is_base": c == book.base_currency, "updated_at": now}
                for i, c in enumerate(book.currencies)])
            sec_ids = np.arange(1, book.n_sec + 1)
            _bulk(conn, S.securities, [
                {"id": int(sec_ids[i]), "code": c, "name": book.sec_names[i],
                 "market": book.markets[book.sec_market[i]], "currency": book.currencies[book.sec_currency[i]],
                 "lot_size": int(book.lot_size[i]), "suspended": bool(book.suspended[i]),
                 "level": int(book.level[i])} for i, c in enumerate(book.sec_codes)])
            ts = time.time()
            _bulk(conn, S.prices, [{"security_id": i + 1, "price": float(p), "ts": ts}
                                   for i, p in enumerate(book.price.tolist())])
            _bulk(conn, S.haircuts, [{"security_id": i + 1, "haircut": float(h), "effective_from": now}
                                     for i, h in enumerate(book.haircut.tolist())])
            ratio_rows = []
            for kind, im, mm in (("long", book.long_im, book.long_mm), ("short", book.short_im, book.short_mm),
                                 ("intraday", book.intraday_im, book.intraday_mm)):
                ok = np.flatnonzero(~np.isnan(im))
                ratio_rows += [{"security_id": int(i) + 1, "kind": kind, "im_ratio": float(im[i]),
                                "mm_ratio": float(mm[i]), "status": "active", "effective_from": now}
                               for i in ok.tolist()]
            _bulk(conn, S.stock_margin_ratios, ratio_rows)
            idx_rows = list(indices)
            if idx_rows:
                conn.execute(insert(S.indices), [{k: r[k] for k in ("id", "code", "name", "market", "level")}
                                                 | {"preset": True} for r in idx_rows])
                _bulk(conn, S.index_members, [{"index_id": r["id"], "security_id": int(s) + 1}
                                              for r in idx_rows for s in r["members"]])
            clients: dict[str, int] = {}
            client_rows: list[dict[str, Any]] = []
            for i, c in enumerate(book.client_codes):
                if c not in clients:
                    clients[c] = len(clients) + 1
                    client_rows.append({"id": clients[c], "code": c, "name": book.client_names[i], "email": ""})
                if not client_rows[clients[c] - 1]["email"]:
                    client_rows[clients[c] - 1]["email"] = book.client_email(i)
            _bulk(conn, S.clients, client_rows)
            _bulk(conn, S.accounts, [
                {"id": i + 1, "code": a, "client_id": clients[book.client_codes[i]],
                 "type": ACCOUNT_TYPES[book.acct_type[i]], "frozen": bool(book.frozen[i])}
                for i, a in enumerate(book.acct_codes)])
            _bulk(conn, S.financing_limits, [
                {"account_id": i + 1, "amount": float(v), "updated_at": now}
                for i, v in enumerate(book.financing_limit.tolist()) if v > 0 or book.acct_type[i] != 0])
            nz_a, nz_c = np.nonzero(book.cash)
            _bulk(conn, S.cash_balances, [
                {"account_id": int(a) + 1, "currency": book.currencies[c], "amount": float(book.cash[a, c])}
                for a, c in zip(nz_a.tolist(), nz_c.tolist(), strict=True)])
            _bulk_raw(conn, "insert into positions (account_id, security_id, qty) values (%s, %s, %s)",
                      zip((book.pos_acct + 1).tolist(), (book.pos_sec + 1).tolist(), book.pos_qty.tolist(),
                          strict=True), self.kind)
            sg_ids = {name: k + 1 for k, name in enumerate(book.stock_groups)}
            cg_ids = {name: k + 1 for k, name in enumerate(book.client_groups)}
            if sg_ids:
                conn.execute(insert(S.stock_groups), [{"id": v, "name": k} for k, v in sg_ids.items()])
                _bulk(conn, S.stock_group_members, [{"group_id": sg_ids[k], "security_id": int(s) + 1}
                                                    for k, m in book.stock_groups.items() for s in m.tolist()])
            if cg_ids:
                conn.execute(insert(S.client_groups), [{"id": v, "name": k} for k, v in cg_ids.items()])
                _bulk(conn, S.client_group_members, [{"group_id": cg_ids[k], "account_id": int(a) + 1}
                                                     for k, m in book.client_groups.items() for a in m.tolist()])
            cr = book.client_ratios
            _bulk(conn, S.client_margin_ratios, [
                {"account_id": int(cr.subject[i]) + 1 if cr.subject_kind[i] == 0 else None,
                 "client_group_id": int(cr.subject[i]) + 1 if cr.subject_kind[i] == 1 else None,
                 "security_id": int(cr.target[i]) + 1 if cr.target_kind[i] == 0 else None,
                 "stock_group_id": int(cr.target[i]) + 1 if cr.target_kind[i] == 1 else None,
                 "side": "long" if cr.side[i] == 0 else "short", "im_ratio": float(cr.im[i]),
                 "mm_ratio": float(cr.mm[i]), "status": "active", "effective_from": now}
                for i in range(len(cr))])
            conn.execute(delete(S.company_parameters).where(
                S.company_parameters.c.name.in_(list(book.parameters))))
            conn.execute(insert(S.company_parameters), [
                {"name": k, "value": float(v), "description": PARAMETER_DESCRIPTIONS.get(k, "")}
                for k, v in book.parameters.items()])
            hol = list(holidays)
            if hol:
                conn.execute(delete(S.holidays))
                conn.execute(insert(S.holidays), [{"day": d, "market": "HK", "name": n} for d, n in hol])
            conn.execute(delete(S.store_meta).where(S.store_meta.c.key == "book_as_of"))
            conn.execute(insert(S.store_meta), [{"key": "book_as_of", "value": book.as_of}])
            if self.kind == "postgresql":
                for t in ("securities", "clients", "accounts", "indices", "stock_groups", "client_groups",
                          "stock_margin_ratios", "client_margin_ratios", "margin_calls"):
                    conn.execute(text(f"select setval(pg_get_serial_sequence('{t}', 'id'), "
                                      f"coalesce((select max(id) from {t}), 0) + 1, false)"))
        self.ensure_parameters()

    def write_prices(self, sec_ids: np.ndarray, prices: np.ndarray, ts: float | None = None) -> None:
        """Persist last prices (the feed simulator calls this about once a second)."""
        if sec_ids.size == 0:
            return
        ts = time.time() if ts is None else ts
        with self.begin() as conn:
            _bulk_raw(conn, "update prices set price = %s, ts = %s where security_id = %s",
                      ((float(p), ts, int(s)) for s, p in zip(sec_ids.tolist(), prices.tolist(), strict=True)),
                      self.kind)

    # ------------------------------------------------------------------ book in
    def load_book(self, as_of: datetime | None = None) -> Book:
        """The current book with the ratios active at `as_of` (default now)."""
        now = as_of or datetime.now(UTC)
        with self.begin() as conn:
            return _load_book(conn, self.kind, now)


def describe_operational_error(e: OperationalError, store: Store) -> str:
    msg = str(e.orig) if e.orig is not None else str(e)
    low = msg.lower()
    where = store.display_name
    if "password authentication failed" in low or "no password supplied" in low:
        return f"The password for {where} was refused."
    if "connection refused" in low or "could not connect" in low or "timeout" in low or "timed out" in low:
        return f"Cannot reach the database server for {where}: {msg.strip().splitlines()[0]}"
    if "does not exist" in low:
        return f"{where}: {msg.strip().splitlines()[0]}"
    if "database is locked" in low:
        return f"{where} is busy (locked by another program); try again."
    if "unable to open database file" in low:
        return f"Cannot open {where}: check the folder exists and is writable."
    return f"{where}: {msg.strip().splitlines()[0] if msg.strip() else type(e).__name__}"


def _bulk(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(table), rows)


def _bulk_raw(conn: Connection, sql: str, rows: Iterable[tuple[Any, ...]], kind: str) -> None:
    """executemany through the driver: 1M rows in ~1–2 s (ORM add_all took 50 s here)."""
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        if kind == "sqlite":
            cur.executemany(sql.replace("%s", "?"), rows)
        else:
            cur.executemany(sql, list(rows))
    except Exception as e:  # driver errors: the surrounding transaction rolls back
        raise StoreError(f"the store refused the rows ({sql.split('(')[0].strip()}): {e}") from e
    finally:
        cur.close()


def _fetch(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        cur.execute(sql)
        return cur.fetchall()
    finally:
        cur.close()


def _as_dt(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    if isinstance(v, datetime) and v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    return v


def _active(status: str, eff: Any, exp: Any, now: datetime) -> bool:
    if status != "active":
        return False
    e0, e1 = _as_dt(eff), _as_dt(exp)
    return (e0 is None or e0 <= now) and (e1 is None or e1 > now)


def ratio_settings_in_force(rows: Iterable[tuple[Any, ...]], now: datetime
                            ) -> dict[tuple[int, str], tuple[float, float]]:
    """Setting records → the ratio in force per (security, table) at `now` (issue 4 "setting records").

    A record takes effect at its effective time (until then it is pending); the latest one in
    effect wins (ties: the later record); a revoked record never applies; when the record in force
    has expired, the security has no ratio in that table (100%), not the one before it.
    Rows: (id, security_id, kind, im, mm, status, effective_from, expires_at).
    """
    best: dict[tuple[int, str], tuple[datetime, int, float, float, Any]] = {}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for rid, sid, kind_, im, mm, status, eff, exp in rows:
        if status not in ("active", "pending"):
            continue
        e0 = _as_dt(eff) or epoch
        if e0 > now:
            continue
        k = (int(sid), str(kind_))
        cur = best.get(k)
        if cur is None or (e0, rid) > (cur[0], cur[1]):
            best[k] = (e0, rid, float(im), float(mm), exp)
    out = {}
    for k, (_, _, im, mm, exp) in best.items():
        e1 = _as_dt(exp)
        if e1 is None or e1 > now:
            out[k] = (im, mm)
    return out


def _load_book(conn: Connection, kind: str, now: datetime) -> Book:
    cur_rows = _fetch(conn, "select code, fx_rate, is_base from currencies order by code")
    base = next((c for c, _, b in cur_rows if b), "HKD")
    currencies = [base] + [c for c, _, _ in cur_rows if c != base]
    fx_map = {c: float(r) for c, r, _ in cur_rows}
    fx = np.array([fx_map.get(c, 1.0) for c in currencies])
    cur_index = {c: i for i, c in enumerate(currencies)}

    secs = _fetch(conn, "select s.id, s.code, s.name, s.market, s.currency, s.lot_size, s.suspended, s.level, "
                        "coalesce(p.price, 0), coalesce(h.haircut, 1.0) from securities s "
                        "left join prices p on p.security_id = s.id "
                        "left join haircuts h on h.security_id = s.id order by s.id")
    n_sec = len(secs)
    sec_ids = np.array([r[0] for r in secs], np.int64)
    markets: list[str] = []
    mkt_index: dict[str, int] = {}
    sec_market = np.zeros(n_sec, np.int16)
    for i, r in enumerate(secs):
        if r[3] not in mkt_index:
            mkt_index[r[3]] = len(markets)
            markets.append(r[3])
        sec_market[i] = mkt_index[r[3]]
    level = np.array([r[7] for r in secs], np.int8)
    members = _fetch(conn, "select m.security_id, min(i.level) from index_members m join indices i "
                           "on i.id = m.index_id group by m.security_id")
    if members or _fetch(conn, "select 1 from indices limit 1"):
        # RISK_METHODS §4: the lowest level of any index that holds it; in no index: level 3
        level[:] = 3
        if members:
            mi = np.searchsorted(sec_ids, np.array([m[0] for m in members], np.int64))
            level[mi] = np.array([m[1] for m in members], np.int8)
    ratio = {k: np.full(n_sec, np.nan) for k in ("long_im", "long_mm", "short_im", "short_mm",
                                                  "intraday_im", "intraday_mm")}
    for (sid, kind_), (im, mm) in ratio_settings_in_force(_fetch(
            conn, "select id, security_id, kind, im_ratio, mm_ratio, status, effective_from, expires_at "
                  "from stock_margin_ratios"), now).items():
        i = int(np.searchsorted(sec_ids, sid))
        ratio[f"{kind_}_im"][i] = im
        ratio[f"{kind_}_mm"][i] = mm

    accts = _fetch(conn, "select a.id, a.code, c.code, c.name, a.type, a.frozen, coalesce(f.amount, 0), c.email "
                         "from accounts a join clients c on c.id = a.client_id "
                         "left join financing_limits f on f.account_id = a.id order by a.id")
    acct_ids = np.array([r[0] for r in accts], np.int64)
    n_acct = len(accts)
    cash = np.zeros((n_acct, len(currencies)))
    cb = _fetch(conn, "select account_id, currency, amount from cash_balances")
    if cb:
        a = np.searchsorted(acct_ids, np.array([r[0] for r in cb], np.int64))
        c = np.array([cur_index[r[1]] for r in cb], np.int64)
        cash[a, c] = np.array([r[2] for r in cb], np.float64)

    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        cur.execute("select account_id, security_id, qty from positions")
        pos = np.fromiter(cur, dtype=[("a", np.int64), ("s", np.int64), ("q", np.float64)])
    finally:
        cur.close()
    pa = np.searchsorted(acct_ids, pos["a"]).astype(np.int32)
    ps = np.searchsorted(sec_ids, pos["s"]).astype(np.int32)

    sg = {gid: name for gid, name in _fetch(conn, "select id, name from stock_groups order by id")}
    cg = {gid: name for gid, name in _fetch(conn, "select id, name from client_groups order by id")}
    sgm: dict[int, list[int]] = {g: [] for g in sg}
    for g, s in _fetch(conn, "select group_id, security_id from stock_group_members"):
        sgm[g].append(s)
    cgm: dict[int, list[int]] = {g: [] for g in cg}
    for g, a in _fetch(conn, "select group_id, account_id from client_group_members"):
        cgm[g].append(a)
    stock_groups = {sg[g]: np.sort(np.searchsorted(sec_ids, np.array(m, np.int64))).astype(np.int32)
                    for g, m in sgm.items()}
    client_groups = {cg[g]: np.sort(np.searchsorted(acct_ids, np.array(m, np.int64))).astype(np.int32)
                     for g, m in cgm.items()}
    sg_pos = {g: k for k, g in enumerate(sg)}
    cg_pos = {g: k for k, g in enumerate(cg)}
    rows: dict[str, list[Any]] = {k: [] for k in ("sk", "s", "tk", "t", "side", "im", "mm")}
    for acc, grp, sid, sgid, side, im, mm, status, eff, exp in _fetch(
            conn, "select account_id, client_group_id, security_id, stock_group_id, side, im_ratio, mm_ratio, "
                  "status, effective_from, expires_at from client_margin_ratios order by id"):
        if not _active(status, eff, exp, now):
            continue
        rows["sk"].append(0 if acc is not None else 1)
        rows["s"].append(int(np.searchsorted(acct_ids, acc)) if acc is not None else cg_pos[grp])
        rows["tk"].append(0 if sid is not None else 1)
        rows["t"].append(int(np.searchsorted(sec_ids, sid)) if sid is not None else sg_pos[sgid])
        rows["side"].append(0 if side == "long" else 1)
        rows["im"].append(im)
        rows["mm"].append(mm)
    params = dict(DEFAULT_PARAMETERS)
    params.update({n: float(v) for n, v in _fetch(conn, "select name, value from company_parameters")})
    return Book(
        as_of=now.isoformat(timespec="seconds"),
        base_currency=base, currencies=currencies, fx=fx,
        sec_codes=[r[1] for r in secs], sec_names=[r[2] for r in secs],
        sec_currency=np.array([cur_index[r[4]] for r in secs], np.int16), markets=markets, sec_market=sec_market,
        price=np.array([r[8] for r in secs], np.float64), level=level,
        haircut=np.array([r[9] for r in secs], np.float64), suspended=np.array([bool(r[6]) for r in secs]),
        lot_size=np.array([r[5] for r in secs], np.int32),
        long_im=ratio["long_im"], long_mm=ratio["long_mm"], short_im=ratio["short_im"],
        short_mm=ratio["short_mm"], intraday_im=ratio["intraday_im"], intraday_mm=ratio["intraday_mm"],
        acct_codes=[r[1] for r in accts], client_codes=[r[2] for r in accts], client_names=[r[3] for r in accts],
        client_emails=[r[7] or "" for r in accts],
        acct_type=np.array([ACCOUNT_TYPES.index(r[4]) for r in accts], np.int8),
        financing_limit=np.array([r[6] for r in accts], np.float64),
        frozen=np.array([bool(r[5]) for r in accts]), cash=cash, pos_acct=pa, pos_sec=ps,
        pos_qty=np.ascontiguousarray(pos["q"]), stock_groups=stock_groups, client_groups=client_groups,
        client_ratios=ClientRatios(
            subject_kind=np.array(rows["sk"], np.int8), subject=np.array(rows["s"], np.int32),
            target_kind=np.array(rows["tk"], np.int8), target=np.array(rows["t"], np.int32),
            side=np.array(rows["side"], np.int8), im=np.array(rows["im"], np.float64),
            mm=np.array(rows["mm"], np.float64)),
        parameters=params, sec_ids=sec_ids, acct_ids=acct_ids,
    )


def price_timestamps(store: Store) -> tuple[np.ndarray, np.ndarray]:
    """(security ids, last update unix time) — the margin table's staleness column at start."""
    with store.begin() as conn:
        rows = _fetch(conn, "select security_id, ts from prices order by security_id")
    return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.float64)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
