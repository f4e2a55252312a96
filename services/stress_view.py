"""What the stress-testing dock shows, worked out off the GUI thread (issue 6, RISK_METHODS §3).

Plain Python over `services.stress` and `services.risk_runs`, so the dock's workers call these and
the GUI thread only puts finished arrays on screen:

- `load_setup`: the scenarios to choose from (saved, newest version, and the shipped ones marked
  "shipped"), the book's codes that shocks may target, and the standing exemptions with any
  four-eyes request still waiting on them;
- `scenario_from_rows`: the editor's rows (target kind, target, change in %) as a `Scenario`, refused
  with the JSON path of the bad value exactly as a scenario file would be;
- `open_run`: a stored run as arrays (accounts, status before and after, stressed figures, the
  histogram of stressed excess) plus the engine over the run's own book, so an account's stressed
  positions (`stressed_positions`) come from the book the run used, not today's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import numpy as np

from models.book import Book
from services import stress
from services.lazy import lazy_module
from services.margin import STATUS_NAMES, MarginEngine

if TYPE_CHECKING:
    from services import risk_runs
    from services.auth import User
    from services.store import Store
else:  # imported on first use: the stress dock is built before the store opens (app.cold_start)
    risk_runs = lazy_module("services.risk_runs")

EXEMPTION_KIND = "stress_exemption"
HISTOGRAM_BINS = 40
SHIPPED, SAVED = "shipped", "saved"


# ---------------------------------------------------------------------- the editor's rows
def percent_text(change: float) -> str:
    """A relative change as the editor shows it: −0.2 → ``-20``."""
    return f"{change * 100:.10g}"


def parse_percent(text: str, path: str) -> float:
    """``-20`` / ``−20 %`` → −0.2; anything else is refused naming ``path``."""
    t = str(text).strip().replace("−", "-").replace("%", "").replace(",", "").strip()
    if not t:
        raise stress.ScenarioError(f"{path}: enter the change in % (e.g. -20)")
    try:
        d = Decimal(t)
    except InvalidOperation:
        raise stress.ScenarioError(f"{path}: {str(text).strip()!r} is not a number (change in %)") from None
    if not d.is_finite():
        raise stress.ScenarioError(f"{path}: the change must be finite")
    return float(d / 100)


def target_of(kind: str, value: str) -> str:
    return "all" if kind == "all" else f"{kind}:{value.strip()}"


def split_target(target: str) -> tuple[str, str]:
    kind, _, value = target.partition(":")
    return kind, value


def split_codes(text: str) -> list[str]:
    """``700.HK, 5.HK`` (commas, spaces or new lines) → ``["700.HK", "5.HK"]``."""
    return [c for c in text.replace(";", ",").replace("\n", ",").replace(" ", ",").split(",") if c.strip()]


def scenario_from_rows(name: str, shocks: list[tuple[str, str, str]], fx: list[tuple[str, str]],
                       exempt_securities: list[str], exempt_accounts: list[str],
                       book: Book | None = None) -> stress.Scenario:
    """The editor's content as a scenario; every refusal names the JSON path (``shocks[2].change``)
    of the scenario file the same content would make, so the editor and an imported file read alike."""
    if not name.strip():
        raise stress.ScenarioError("name: a scenario needs a name")
    doc: dict[str, Any] = {
        "name": name.strip(),
        "shocks": [{"target": target_of(k, v), "change": parse_percent(c, f"shocks[{i}].change")}
                   for i, (k, v, c) in enumerate(shocks)],
        "fx_shocks": [{"currency": cur.strip(), "change": parse_percent(c, f"fx_shocks[{i}].change")}
                      for i, (cur, c) in enumerate(fx)],
        "exempt_securities": [c.strip() for c in exempt_securities],
        "exempt_accounts": [c.strip() for c in exempt_accounts]}
    return stress.scenario_from_dict(doc, book)


def row_of_path(message: str) -> tuple[str, int]:
    """(``shocks`` | ``fx_shocks`` | ``exempt_securities`` | …, index) named at the start of a
    `ScenarioError` message; ("", -1) when it names no list entry."""
    head = message.split(":", 1)[0]
    if "[" not in head:
        return head.split(".")[0], -1
    table, _, rest = head.partition("[")
    try:
        return table, int(rest.split("]", 1)[0])
    except ValueError:
        return table, -1


def sweep_sizes(up_to_pct: int, step_pct: int) -> list[float]:
    """The falls of the shock curve: ``step``, ``2·step`` … ``up_to`` percent, as fractions."""
    if step_pct <= 0 or up_to_pct <= 0:
        return []
    return [float(Decimal(p) / 100) for p in range(step_pct, min(up_to_pct, 100) + 1, step_pct)]


def scenario_json(sc: stress.Scenario) -> str:
    return json.dumps(sc.as_dict(), indent=2, ensure_ascii=False) + "\n"


def write_scenario(sc: stress.Scenario, path: str) -> str:
    """Write ``sc`` as a scenario file (the DESIGN.md format); returns the path."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(scenario_json(sc))
    return path


# ---------------------------------------------------------------------- what the dock loads
@dataclass
class ScenarioEntry:
    key: int
    name: str
    source: str  # SAVED | SHIPPED
    scenario: stress.Scenario
    version: int | None = None
    saved_by: str = ""
    saved_at: datetime | None = None
    description: str = ""

    @property
    def shock_text(self) -> str:
        sc = self.scenario
        parts = [f"{t} {percent_text(c)}%" for t, c in sc.shocks[:3]]
        more = len(sc.shocks) - 3
        return ", ".join(parts) + (f" +{more} more" if more > 0 else "") + (
            f" · FX {len(sc.fx_shocks)}" if sc.fx_shocks else "")


@dataclass
class StressSetup:
    entries: list[ScenarioEntry]
    book: Book
    exemptions: list[dict[str, Any]]  # id, kind, code, state, request_id, request
    may_request: bool = True
    groups: list[str] = field(default_factory=list)

    @property
    def securities(self) -> list[str]:
        return list(self.book.sec_codes)

    @property
    def accounts(self) -> list[str]:
        return list(self.book.acct_codes)

    @property
    def markets(self) -> list[str]:
        return list(self.book.markets)

    @property
    def currencies(self) -> list[str]:
        return [c for c in self.book.currencies if c != self.book.base_currency]


def shipped_descriptions() -> dict[str, str]:
    """Scenario name → the ``description`` documented in its shipped file."""
    out = {}
    for p in sorted(stress.SCENARIO_DIR.glob("*.json")):
        doc = json.loads(p.read_text(encoding="utf-8"))
        out[str(doc.get("name", p.stem))] = str(doc.get("description", ""))
    return out


def exemption_rows(store: Store) -> list[dict[str, Any]]:
    """The standing exemptions, each with any pending removal, plus pending new ones."""
    from sqlalchemy import select

    from models import schema as S
    from services import changes

    with store.begin() as conn:
        rows = conn.execute(select(S.stress_exemptions.c.id, S.stress_exemptions.c.kind, S.stress_exemptions.c.code,
                                   S.stress_exemptions.c.remark).order_by(S.stress_exemptions.c.kind,
                                                                          S.stress_exemptions.c.code)).all()
    pending = changes.listing(store, status="pending", kind=EXEMPTION_KIND)
    removal = {int(r.target_key.get("id", -1)): r.id for r in pending if r.op == "delete"}
    out = [{"id": int(r.id), "kind": r.kind, "code": r.code, "remark": r.remark,
            "state": "exempt · removal pending" if int(r.id) in removal else "exempt",
            "request_id": removal.get(int(r.id)),
            "request": f"request #{removal[int(r.id)]} pending (remove)" if int(r.id) in removal else ""}
           for r in rows]
    for r in reversed(pending):
        if r.op == "insert":
            out.append({"id": int(r.target_key.get("id", 0)), "kind": r.after.get("kind", ""),
                        "code": r.after.get("code", ""), "remark": r.reason, "state": "pending approval",
                        "request_id": r.id, "request": f"request #{r.id} pending (add)"})
    return out


def load_setup(store: Store, user: User, task: Any = None) -> StressSetup:
    """Everything the scenario editor and the exemptions panel need (one background read)."""
    from services.auth import permitted

    book = store.load_book()
    if task is not None:
        task.check()
    engine = MarginEngine(book) if book.n_acct else None
    notes = shipped_descriptions()
    entries: list[ScenarioEntry] = []
    for s in risk_runs.scenarios(store):
        entries.append(ScenarioEntry(len(entries), s["name"], SAVED, s["scenario"], s["version"], s["saved_by"],
                                     s["saved_at"]))
    for sc in stress.predefined(engine):
        note = notes.get(sc.name) or ("derived from today's book: one of the ten largest collateral stocks "
                                      "(long market value in margin accounts) −50%")
        entries.append(ScenarioEntry(len(entries), sc.name, SHIPPED, sc, description=note))
    return StressSetup(entries, book, exemption_rows(store),
                       permitted(store, user, "request", EXEMPTION_KIND), sorted(book.stock_groups))


def check_exemption(setup: StressSetup | None, kind: str, code: str, reason: str) -> str:
    """Why a new exemption request cannot be made ("" when it can)."""
    code = code.strip()
    if not code:
        return f"Enter the {kind} code."
    if setup is not None:
        known = setup.book.sec_index if kind == "security" else setup.book.acct_index
        if code not in known:
            return f"Unknown {kind} “{code}”."
        for r in setup.exemptions:
            if r["kind"] == kind and r["code"] == code:
                return (f"{kind.capitalize()} {code} already has {r['request']}." if r["request_id"]
                        else f"{kind.capitalize()} {code} is already exempt.")
    if not reason.strip():
        return "Give a reason: the checker decides on it."
    return ""


# ---------------------------------------------------------------------- a stored run
@dataclass
class RunView:
    id: int
    name: str
    status: str
    error: str
    inputs: dict[str, Any]
    summary: dict[str, Any]
    accounts: np.ndarray  # str codes, in run order
    status_after: np.ndarray  # int8 index into STATUS_NAMES
    status_before: np.ndarray
    equity: np.ndarray
    im: np.ndarray
    mm: np.ndarray
    call_amount: np.ndarray
    shortfall: np.ndarray
    excess: np.ndarray
    hist_counts: np.ndarray
    hist_edges: np.ndarray
    book: Book | None = None
    engine: MarginEngine | None = None
    scenario: stress.Scenario | None = None

    @property
    def curve(self) -> list[dict[str, Any]]:
        return list(self.summary.get("curve") or [])

    @property
    def new_call(self) -> np.ndarray:
        return (self.status_after >= 2) & (self.status_before < 2)

    def index_of(self, account: str) -> int:
        hit = np.flatnonzero(self.accounts == account)
        return int(hit[0]) if hit.size else -1


def excess_histogram(excess: np.ndarray, bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of stressed excess over its 1st–99th percentile (the tails go into the
    outer bins, so one huge account cannot squash every other bar into one)."""
    if excess.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    lo, hi = np.percentile(excess, [1, 99])
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    counts, edges = np.histogram(np.clip(excess, lo, hi), bins=bins, range=(lo, hi))
    return counts, edges


def open_run(store: Store, run_id: int, task: Any = None) -> RunView:
    """A stored stress run as the results view shows it (reads, unpacks and indexes off the GUI)."""
    r = risk_runs.load_run(store, run_id)
    if r["kind"] != "stress":
        raise risk_runs.RunError(f"run {run_id} is not a stress run")
    if task is not None:
        task.check()
    res = r["results"] or {"accounts": [], "base_status": [], "excess": []}
    acc = res["accounts"]
    code = {n: i for i, n in enumerate(STATUS_NAMES)}

    def col(k: str) -> np.ndarray:
        return np.fromiter((a[k] for a in acc), float, len(acc))

    excess = np.asarray(res["excess"], float)
    counts, edges = excess_histogram(excess)
    book = r["book"]
    engine = MarginEngine(book) if book is not None and book.n_acct else None
    sc = stress.scenario_from_dict(r["inputs"]["scenario"]) if "scenario" in r["inputs"] else None
    return RunView(r["id"], r["name"], r["status"], r["error"], r["inputs"], r["summary"],
                   np.array([a["account"] for a in acc], dtype=object),
                   np.fromiter((code[a["status"]] for a in acc), np.int8, len(acc)),
                   np.fromiter((code[s] for s in res["base_status"]), np.int8, len(acc)),
                   col("equity"), col("im"), col("mm"), col("call_amount"), col("shortfall"), excess,
                   counts, edges, book, engine, sc)


def stressed_positions(view: RunView, account: str) -> dict[str, Any]:
    """The account's positions in the run's book at the scenario's prices: qty, price, change,
    shocked price (security currency), stressed MV and IM (HKD) and the IM ratio in force."""
    e, sc = view.engine, view.scenario
    if e is None or sc is None:
        raise risk_runs.RunError(f"run {view.id} has no stored book to drill into")
    b = e.book
    a = b.acct_index.get(account)
    if a is None:
        raise risk_runs.RunError(f"account {account} is not in run {view.id}'s book")
    change = stress.security_changes(b, sc)
    fx = b.fx.copy()
    for cur, c in sc.fx_shocks:
        if cur in b.currencies:
            fx[b.currencies.index(cur)] *= 1.0 + c
    lo, hi = int(e.acct_start[a]), int(e.acct_start[a + 1])
    sec = b.pos_sec[lo:hi]
    qty = b.pos_qty[lo:hi]
    shocked = b.price[sec] * (1.0 + change[sec])
    mv = np.abs(qty) * shocked * fx[b.sec_currency[sec]]
    im_ratio = e.im_ratio[lo:hi]
    exempt = set(sc.exempt_securities)
    return {"code": np.array([b.sec_codes[j] for j in sec], dtype=object),
            "name": np.array([b.sec_names[j] for j in sec], dtype=object),
            "currency": np.array([b.currencies[int(b.sec_currency[j])] for j in sec], dtype=object),
            "exempt": np.array([b.sec_codes[j] in exempt for j in sec], bool),
            "qty": qty.astype(float), "price": b.price[sec].astype(float), "change": change[sec],
            "shocked_price": shocked, "mv": mv, "im_ratio": im_ratio, "im": mv * im_ratio,
            "mm": mv * e.mm_ratio[lo:hi], "account_exempt": account in set(sc.exempt_accounts)}


def run_rows(store: Store) -> list[dict[str, Any]]:
    """The stress runs, newest first, as the runs table lists them."""
    out = []
    for r in risk_runs.runs(store, "stress"):
        s = r.summary or {}
        by = s.get("accounts_by_status") or {}
        out.append({"id": r.id, "name": r.name, "status": r.status, "started_by": r.started_by,
                    "started_at": r.started_at, "finished_at": r.finished_at, "as_of": r.as_of,
                    "in_call": (by.get("call", 0) + by.get("force", 0)) if by else None,
                    "total_call_amount": s.get("total_call_amount"), "total_shortfall": s.get("total_shortfall"),
                    "error": r.error})
    return out


def compare_rows(cmp: dict[str, Any]) -> list[dict[str, Any]]:
    """`risk_runs.compare` as rows of (item, run A, run B, B − A) for the side-by-side table."""
    a, b = cmp["a"], cmp["b"]
    rows = []
    for name in STATUS_NAMES:
        va, vb = (a.get("accounts_by_status") or {}).get(name, 0), (b.get("accounts_by_status") or {}).get(name, 0)
        rows.append({"item": f"Accounts {name}", "a": va, "b": vb, "delta": vb - va, "money": False})
    for key, label in (("total_call_amount", "Total call amount"), ("total_shortfall", "Total shortfall")):
        va, vb = float(a.get(key) or 0.0), float(b.get(key) or 0.0)
        rows.append({"item": label, "a": va, "b": vb, "delta": vb - va, "money": True})
    rows.append({"item": "Accounts whose status changed", "a": None, "b": None,
                 "delta": len(cmp["status_changes"]), "money": False})
    return [dict(r, id=i) for i, r in enumerate(rows)]


def read_ratios_checked(path: str, book: Book | None) -> dict[str, tuple[float, float]]:
    """A custom-ratios file (code, im_ratio, mm_ratio) read and, with ``book``, checked the way a
    run will apply it (unknown codes, MM above IM are named now rather than when the run starts)."""
    ratios = risk_runs.read_custom_ratios(path)
    if not ratios:
        raise risk_runs.RunError(f"{path}: no ratios in the file")
    if book is not None:
        risk_runs.apply_custom_ratios(book, ratios)
    return ratios
