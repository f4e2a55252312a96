"""Stress and LCS runs that can be reopened, re-run on the same inputs and compared (issue 6).

A run stores everything it used: the scenario (or LC/RLC), the parameters, any custom margin ratios,
and the book itself (the portable book file, gzip) — so re-running a past run gives the same numbers
whatever has changed in the store since. Results are stored with it (summary as JSON, per-account
and per-stock results gzip JSON). Scenarios are saved as versions (name, version); exemptions are a
four-eyes risk parameter (`stress_exemptions`, change requests of kind ``stress_exemption``).

Everything here is plain Python over the store; the GUI runs it in workers (`task` for progress and
cancel: ``task.progress(fraction, text)``, ``task.check()`` raising when cancelled).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select, text, update

from models import schema as S
from models.book import Book
from services import changes, lcs, stress
from services.auth import User
from services.margin import STATUS_NAMES, MarginEngine
from services.store import Store, _as_dt


class RunError(ValueError):
    """A run that cannot start (empty book, bad inputs); the message says why."""


def _pack(obj: Any) -> bytes:
    return gzip.compress(json.dumps(obj, separators=(",", ":")).encode(), compresslevel=5)


def _unpack(blob: bytes | None) -> Any:
    return None if blob is None else json.loads(gzip.decompress(blob))


# ---------------------------------------------------------------------- scenarios (versioned)
def save_scenario(store: Store, user: User, sc: stress.Scenario) -> int:
    """Save a new version of the scenario named ``sc.name``; returns the version number."""
    if not sc.name.strip():
        raise stress.ScenarioError("name: a scenario needs a name")
    stress.scenario_from_dict(sc.as_dict())  # shape checks
    with store.begin() as conn:
        v = int(conn.execute(select(func.coalesce(func.max(S.stress_scenarios.c.version), 0)).where(
            S.stress_scenarios.c.name == sc.name)).scalar_one()) + 1
        conn.execute(insert(S.stress_scenarios).values(name=sc.name, version=v, body=json.dumps(sc.as_dict()),
                                                       saved_by=user.login, saved_at=datetime.now(UTC)))
    return v


def scenarios(store: Store) -> list[dict[str, Any]]:
    """The newest version of every saved scenario: name, version, saved_by, saved_at, shocks."""
    with store.begin() as conn:
        rows = conn.execute(text(
            "select s.name, s.version, s.body, s.saved_by, s.saved_at from stress_scenarios s join "
            "(select name, max(version) as v from stress_scenarios group by name) m "
            "on m.name = s.name and m.v = s.version where not s.deleted order by s.name")).all()
    return [{"name": r.name, "version": int(r.version), "saved_by": r.saved_by, "saved_at": _as_dt(r.saved_at),
             "scenario": stress.scenario_from_dict(json.loads(r.body))} for r in rows]


def scenario_versions(store: Store, name: str) -> list[dict[str, Any]]:
    with store.begin() as conn:
        rows = conn.execute(select(S.stress_scenarios).where(S.stress_scenarios.c.name == name)
                            .order_by(S.stress_scenarios.c.version.desc())).all()
    return [{"version": int(r.version), "saved_by": r.saved_by, "saved_at": _as_dt(r.saved_at),
             "scenario": stress.scenario_from_dict(json.loads(r.body))} for r in rows]


def duplicate_scenario(store: Store, user: User, name: str, new_name: str) -> int:
    versions = scenario_versions(store, name)
    if not versions:
        raise stress.ScenarioError(f"no scenario named {name!r}")
    if scenario_versions(store, new_name):
        raise stress.ScenarioError(f"a scenario named {new_name!r} already exists")
    sc = versions[0]["scenario"]
    sc.name = new_name
    return save_scenario(store, user, sc)


def delete_scenario(store: Store, name: str) -> None:
    """Hide a scenario (its versions stay, for the runs that used them)."""
    with store.begin() as conn:
        conn.execute(update(S.stress_scenarios).where(S.stress_scenarios.c.name == name).values(deleted=True))


# ---------------------------------------------------------------------- exemptions (four-eyes)
def exemptions(store: Store) -> dict[str, list[str]]:
    with store.begin() as conn:
        rows = conn.execute(select(S.stress_exemptions.c.kind, S.stress_exemptions.c.code)
                            .order_by(S.stress_exemptions.c.code)).all()
    return {"security": [c for k, c in rows if k == "security"], "account": [c for k, c in rows if k == "account"]}


def propose_exemption(store: Store, user: User, kind: str, code: str, reason: str, remove: bool = False) -> int:
    if kind not in ("security", "account"):
        raise changes.ChangeError("an exemption is for a security or an account")
    table = "securities" if kind == "security" else "accounts"
    with store.begin() as conn:
        if conn.execute(text(f"select 1 from {table} where code = :c"), {"c": code}).first() is None:
            raise changes.ChangeError(f"{kind} {code} does not exist")
        row = conn.execute(select(S.stress_exemptions.c.id).where(S.stress_exemptions.c.kind == kind,
                                                                  S.stress_exemptions.c.code == code)).first()
        if remove:
            if row is None:
                raise changes.ChangeError(f"{kind} {code} is not exempt")
            return changes.submit(store, user, "stress_exemption", {"id": int(row.id)}, {}, reason, op="delete",
                                  context={kind: code}, conn=conn)
        if row is not None:
            raise changes.ChangeError(f"{kind} {code} is already exempt")
        new_id = changes.insert_id_floor(conn, "stress_exemptions") + 1
        return changes.submit(store, user, "stress_exemption", {"id": new_id},
                              {"kind": kind, "code": code, "remark": reason}, reason, op="insert",
                              context={kind: code}, conn=conn)


def with_exemptions(store: Store, sc: stress.Scenario) -> stress.Scenario:
    """The scenario with the firm's standing exemptions added to its own."""
    ex = exemptions(store)
    return stress.Scenario(sc.name, list(sc.shocks), list(sc.fx_shocks),
                           sorted(set(sc.exempt_securities) | set(ex["security"])),
                           sorted(set(sc.exempt_accounts) | set(ex["account"])))


# ---------------------------------------------------------------------- custom ratios ("custom data")
def apply_custom_ratios(book: Book, ratios: dict[str, tuple[float, float]]) -> Book:
    """A copy of ``book`` with these long (IM, MM) ratios by security code instead of the live ones."""
    import copy

    b = copy.copy(book)
    b.long_im = book.long_im.copy()
    b.long_mm = book.long_mm.copy()
    for code, (im, mm) in ratios.items():
        j = book.sec_index.get(code)
        if j is None:
            raise RunError(f"custom ratios: unknown security {code!r}")
        if not (0 <= mm <= im <= 1):
            raise RunError(f"custom ratios: {code} needs 0 ≤ MM ≤ IM ≤ 1, got IM {im} MM {mm}")
        b.long_im[j], b.long_mm[j] = im, mm
    return b


def read_custom_ratios(path: str) -> dict[str, tuple[float, float]]:
    """code, im_ratio, mm_ratio from an xlsx or CSV file (header row), every bad row named."""
    import csv
    from pathlib import Path

    p = Path(path)
    rows: list[list[Any]]
    if p.suffix.lower() == ".csv":
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = [list(r) for r in csv.reader(f)]
    else:
        from openpyxl import load_workbook

        wb = load_workbook(p, read_only=True, data_only=True)
        rows = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    if not rows:
        raise RunError(f"{p.name} is empty")
    head = [str(h or "").strip().lower() for h in rows[0]]
    try:
        ci, ii, mi = head.index("code"), head.index("im_ratio"), head.index("mm_ratio")
    except ValueError:
        raise RunError(f"{p.name}: the header must have code, im_ratio, mm_ratio (got {head})") from None
    out: dict[str, tuple[float, float]] = {}
    for n, r in enumerate(rows[1:], start=2):
        if not any(v not in (None, "") for v in r):
            continue
        try:
            out[str(r[ci]).strip()] = (float(r[ii]), float(r[mi]))
        except (TypeError, ValueError, IndexError):
            raise RunError(f"{p.name} row {n}: im_ratio and mm_ratio must be numbers") from None
    return out


# ---------------------------------------------------------------------- runs
@dataclass
class RunInfo:
    id: int
    kind: str
    name: str
    status: str
    started_by: str
    started_at: datetime | None
    finished_at: datetime | None
    as_of: str
    summary: dict[str, Any]
    error: str


def _start(store: Store, user: User, kind: str, name: str, inputs: dict[str, Any], book: Book) -> int:
    from services.bookfile import book_to_dict

    with store.begin() as conn:
        return int(conn.execute(insert(S.risk_runs).values(
            kind=kind, name=name, status="running", started_by=user.login, started_at=datetime.now(UTC),
            as_of=book.as_of or datetime.now(UTC).isoformat(), inputs=json.dumps(inputs),
            book=_pack(book_to_dict(book, contacts=False))).returning(S.risk_runs.c.id)).scalar_one())


def _finish(store: Store, run_id: int, status: str, summary: dict[str, Any] | None = None,
            results: Any = None, error: str = "") -> None:
    with store.begin() as conn:
        conn.execute(update(S.risk_runs).where(S.risk_runs.c.id == run_id).values(
            status=status, finished_at=datetime.now(UTC), summary=json.dumps(summary or {}),
            results=None if results is None else _pack(results), error=error))


def run_stress(store: Store, user: User, sc: stress.Scenario, book: Book | None = None,
               custom_ratios: dict[str, tuple[float, float]] | None = None, sweep_sizes: list[float] | None = None,
               task: Any = None) -> int:
    """Run ``sc`` (with the standing exemptions) on ``book`` (default: the store's now); store it."""
    book = book if book is not None else store.load_book()
    if book.n_acct == 0:
        raise RunError("the book has no accounts: nothing to stress")
    full = with_exemptions(store, sc)
    stress.scenario_from_dict(full.as_dict(), book)  # every target must exist in this book
    if custom_ratios:
        book = apply_custom_ratios(book, custom_ratios)
    inputs = {"scenario": full.as_dict(), "custom_ratios": custom_ratios or {},
              "sweep": sweep_sizes or [], "parameters": dict(book.parameters)}
    run_id = _start(store, user, "stress", full.name, inputs, book)
    try:
        summary, results = _stress_numbers(book, full, sweep_sizes or [], task)
    except BaseException as e:
        cancelled = type(e).__name__ == "TaskCancelled"
        _finish(store, run_id, "cancelled" if cancelled else "failed", error=str(e))
        raise
    _finish(store, run_id, "done", summary, results)
    return run_id


def _stress_numbers(book: Book, sc: stress.Scenario, sizes: list[float], task: Any) -> tuple[dict, dict]:
    if task is not None:
        task.progress(0.05, "building the engine")
    engine = MarginEngine(book)
    if task is not None:
        task.check()
        task.progress(0.3, "stressing")
    res = stress.run(engine, sc)
    summary = res.summary()
    curve = []
    for k, size in enumerate(sizes):
        if task is not None:
            task.check()
            task.progress(0.4 + 0.55 * k / max(1, len(sizes)), f"shock curve {size:.0%}")
        curve.extend(stress.sweep(engine, [size], sc))
    summary["curve"] = curve
    idx = res.accounts
    results = {"accounts": res.accounts_json(),
               "base_status": [STATUS_NAMES[s] for s in res.base_status[idx].tolist()],
               "excess": np.round(res.excess[idx], 2).tolist()}
    if task is not None:
        task.progress(1.0, "done")
    return summary, results


def run_lcs(store: Store, user: User, lc: Any, rlc: Any, book: Book | None = None, task: Any = None) -> int:
    from services.lcs_store import long_suspended

    lc_f, rlc_f = lcs.check_inputs(lc, rlc)
    book = book if book is not None else store.load_book()
    if book.n_acct == 0:
        raise RunError("the book has no accounts: nothing to test")
    susp = long_suspended(store, book)
    inputs = {"lc": lc_f, "rlc": rlc_f, "suspended_long": [book.sec_codes[j] for j in np.flatnonzero(susp)],
              "parameters": dict(book.parameters)}
    run_id = _start(store, user, "lcs", f"LCS LC {lc_f:,.0f} RLC {rlc_f:,.0f}", inputs, book)
    try:
        if task is not None:
            task.progress(0.2, "LCS test")
        res = lcs.run(MarginEngine(book), lc_f, rlc_f, suspended_long=susp)
        out = res.as_json()
    except BaseException as e:
        _finish(store, run_id, "failed", error=str(e))
        raise
    summary = {k: out[k] for k in ("elc", "lcs", "buffer", "pass", "total_shortfall_30", "total_shortfall_50")}
    summary["accounts"] = len(out["accounts"])
    _finish(store, run_id, "done", summary, {"accounts": out["accounts"], "top10": out["top10"]})
    return run_id


def runs(store: Store, kind: str | None = None, limit: int = 500) -> list[RunInfo]:
    q = select(S.risk_runs.c.id, S.risk_runs.c.kind, S.risk_runs.c.name, S.risk_runs.c.status,
               S.risk_runs.c.started_by, S.risk_runs.c.started_at, S.risk_runs.c.finished_at, S.risk_runs.c.as_of,
               S.risk_runs.c.summary, S.risk_runs.c.error).order_by(S.risk_runs.c.id.desc()).limit(limit)
    if kind:
        q = q.where(S.risk_runs.c.kind == kind)
    with store.begin() as conn:
        rows = conn.execute(q).all()
    return [RunInfo(int(r.id), r.kind, r.name, r.status, r.started_by, _as_dt(r.started_at), _as_dt(r.finished_at),
                    r.as_of, json.loads(r.summary or "{}"), r.error) for r in rows]


def load_run(store: Store, run_id: int) -> dict[str, Any]:
    """A stored run: info, inputs, results and the book it used."""
    from services.bookfile import book_from_dict

    with store.begin() as conn:
        r = conn.execute(select(S.risk_runs).where(S.risk_runs.c.id == run_id)).first()
    if r is None:
        raise RunError(f"run {run_id} does not exist")
    return {"id": int(r.id), "kind": r.kind, "name": r.name, "status": r.status, "inputs": json.loads(r.inputs),
            "summary": json.loads(r.summary or "{}"), "results": _unpack(r.results),
            "book": book_from_dict(_unpack(r.book)) if r.book is not None else None, "error": r.error}


def rerun(store: Store, user: User, run_id: int, task: Any = None) -> int:
    """Run again on exactly the stored inputs and book; a new run."""
    old = load_run(store, run_id)
    book = old["book"]
    if book is None:
        raise RunError(f"run {run_id} has no stored book")
    inp = old["inputs"]
    if old["kind"] == "stress":
        sc = stress.scenario_from_dict(inp["scenario"])
        return run_stress(store, user, sc, book, None, inp.get("sweep") or [], task)  # ratios already in the book
    return run_lcs(store, user, inp["lc"], inp["rlc"], book, task)


def compare(store: Store, a: int, b: int) -> dict[str, Any]:
    """Two stress runs side by side: per-status counts, totals and the accounts whose status differs."""
    ra, rb = load_run(store, a), load_run(store, b)
    if ra["kind"] != "stress" or rb["kind"] != "stress":
        raise RunError("compare needs two stress runs")
    sa, sb = ra["summary"], rb["summary"]
    st_a = {x["account"]: x for x in ra["results"]["accounts"]}
    st_b = {x["account"]: x for x in rb["results"]["accounts"]}
    moved = [{"account": k, "status_a": st_a[k]["status"], "status_b": st_b[k]["status"],
              "call_a": st_a[k]["call_amount"], "call_b": st_b[k]["call_amount"]}
             for k in sorted(set(st_a) & set(st_b)) if st_a[k]["status"] != st_b[k]["status"]]
    return {"a": {"id": a, "name": ra["name"], **{k: sa.get(k) for k in ("accounts_by_status", "total_call_amount",
                                                                          "total_shortfall")}},
            "b": {"id": b, "name": rb["name"], **{k: sb.get(k) for k in ("accounts_by_status", "total_call_amount",
                                                                          "total_shortfall")}},
            "status_changes": moved}


def export_run(store: Store, run_id: int, path: str) -> None:
    """The run to xlsx: a Summary sheet and the per-account (and, for LCS, top-10) sheets."""
    from services.excel import write_sheets

    r = load_run(store, run_id)
    s = r["summary"]
    summary_rows: list[list[Any]] = [["Run", r["id"]], ["Name", r["name"]], ["Kind", r["kind"]],
                                     ["Status", r["status"]]]
    if r["kind"] == "stress":
        for k, v in (s.get("accounts_by_status") or {}).items():
            summary_rows.append([f"Accounts {k}", v])
        summary_rows += [["Total call amount", s.get("total_call_amount")],
                         ["Total shortfall", s.get("total_shortfall")]]
        acc = r["results"]["accounts"]
        sheets = [("Summary", ["Item", "Value"], summary_rows),
                  ("Accounts", ["Account", "Status", "Equity", "IM", "MM", "Call amount", "Shortfall"],
                   [[a["account"], a["status"], a["equity"], a["im"], a["mm"], a["call_amount"], a["shortfall"]]
                    for a in acc]),
                  ("Top shortfalls", ["Account", "Shortfall"],
                   [[t["account"], t["shortfall"]] for t in s.get("top_shortfalls", [])])]
    else:
        summary_rows += [[k.upper() if k in ("elc", "lcs") else k.replace("_", " ").capitalize(), s.get(k)]
                         for k in ("elc", "lcs", "buffer", "pass", "total_shortfall_30", "total_shortfall_50")]
        res = r["results"]
        sheets = [("Summary", ["Item", "Value"], summary_rows),
                  ("Accounts", ["Account", "Loan", "Recognised value", "Decline", "Shortfall", "Shortfall 30%",
                                "Shortfall 50%"],
                   [[a["account"], a["loan"], a["rv"], a["decline"], a["shortfall"], a["shortfall_30"],
                     a["shortfall_50"]] for a in res["accounts"]]),
                  ("Top 10 stocks", ["Code", "Impact", "Stressed LCS", "Buffer", "Pass"],
                   [[t["code"], t["impact"], t["lcs_stressed"], t["buffer"], t["pass"]] for t in res["top10"]])]
    write_sheets(path, sheets)


def seed_demo_runs(store: Store, user: User | None = None) -> list[int]:
    """The demo store's morning: the SFC 30% decline, the SFC level declines and an LCS test, stored as
    runs (so the stress and LCS docks, the overview and the risk pack have something to show)."""
    user = user or User("rita", "Rita Chan (risk officer)", "risk_officer")
    book = store.load_book()
    if book.n_acct == 0:
        return []
    ids = []
    for name in ("sfc_level_declines.json", "sfc_decline_30.json"):
        sc = stress.load_scenario(stress.SCENARIO_DIR / name, book)
        ids.append(run_stress(store, user, sc, book=book, sweep_sizes=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5]))
    ids.append(run_lcs(store, user, 300_000_000, 120_000_000, book=book))
    return ids
