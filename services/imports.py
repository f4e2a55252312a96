"""Excel templates and bulk imports (issue 4; DESIGN.md `template` / `import`).

A kind declares its columns (type, range, choices, help). `write_template` makes the workbook users
fill in (headers, an Instructions sheet, drop-down validations). `validate_file` reads a CSV or xlsx
file and checks every row, naming row (as the user sees it in the spreadsheet), column, value and
reason; nothing is applied. `apply_rows` turns the valid rows into four-eyes change requests — never
direct writes. Re-uploading a file already imported is detected by its SHA-256.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from services import audit, credit_groups
from services.changes import insert_id_floor
from services.store import Store


class ImportFileError(ValueError):
    """The file cannot be read at all (missing, wrong format, no header): exit non-zero."""


@dataclass(frozen=True)
class Col:
    name: str
    kind: str  # "code", "account", "ratio", "short_ratio", "amount", "choice", "text"
    required: bool = True
    help: str = ""
    choices: tuple[str, ...] = ()


@dataclass
class ImportKind:
    name: str
    title: str
    columns: tuple[Col, ...]
    change_kind: str
    # row (validated dict) + lookups → (key, after, op, amount) of one change request
    to_request: Callable[[dict[str, Any], dict[str, Any]],
                         tuple[dict[str, Any], dict[str, Any], str, float | None]] | None
    cross_check: Callable[[dict[str, Any], dict[str, Any]], list[tuple[str, str]]] = field(
        default=lambda r, lk: [])
    # kinds whose rows need more of the store than `_lookups` reads (read in the same transaction)
    extra_lookups: Callable[[Connection], dict[str, Any]] | None = None
    # a row that becomes several requests, possibly of other kinds: dicts with kind, key, after, op,
    # amount, context (used instead of `to_request`)
    to_requests: Callable[[dict[str, Any], dict[str, Any]], list[dict[str, Any]]] | None = None

    def requests(self, r: dict[str, Any], lk: dict[str, Any]) -> list[dict[str, Any]]:
        """The change requests of one valid row."""
        if self.to_requests is not None:
            return self.to_requests(r, lk)
        assert self.to_request is not None
        key, after, op, amount = self.to_request(r, lk)
        return [{"kind": self.change_kind, "key": key, "after": after, "op": op, "amount": amount, "context": {}}]


def _mm_le_im(r: dict[str, Any], lk: Any = None) -> list[tuple[str, str]]:
    if r.get("im_ratio") is not None and r.get("mm_ratio") is not None and r["mm_ratio"] > r["im_ratio"]:
        return [("mm_ratio", "the maintenance ratio must not exceed the initial ratio")]
    return []


def _ratio_request(table_kind: str) -> Callable[..., Any]:
    def make(r: dict[str, Any], lk: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str, float | None]:
        existing = lk["ratio_ids"].get((lk["sec"][r["code"]], table_kind))
        after = {"im_ratio": r["im_ratio"], "mm_ratio": r["mm_ratio"]}
        if existing is not None:  # a stock already present is overwritten by the new setting
            return {"id": existing}, after, "update", None
        return ({"id": lk["next_ratio_id"]()},
                {**after, "security_id": lk["sec"][r["code"]], "kind": table_kind, "status": "active",
                 "effective_from": datetime.now(UTC).isoformat()},
                "insert", None)
    return make


def _ratio_kind(name: str, title: str, table_kind: str, ratio_col: str, span: str) -> ImportKind:
    """The long, short-sell and intraday ratio tables share one layout: code, im_ratio, mm_ratio."""
    return ImportKind(
        name, title,
        (Col("code", "code", help="security code, e.g. 700.HK"),
         Col("im_ratio", ratio_col, help=f"initial margin ratio, {span}"),
         Col("mm_ratio", ratio_col, help=f"maintenance margin ratio, {span}, not above im_ratio")),
        "stock_margin_ratio", _ratio_request(table_kind), _mm_le_im)


KINDS: dict[str, ImportKind] = {
    "stock-margin": _ratio_kind("stock-margin", "Long stock margin ratios", "long", "ratio",
                                "0 to 1 (0.35 = 35%)"),
    "short-margin": _ratio_kind("short-margin", "Short-sell margin ratios", "short", "short_ratio",
                                "from 1 up (1.5 = 150%)"),
    "intraday-margin": _ratio_kind("intraday-margin", "Intraday margin ratios", "intraday", "ratio",
                                   "0 to 1"),
    "haircuts": ImportKind(
        "haircuts", "FRR haircuts",
        (Col("code", "code", help="security code"),
         Col("haircut", "ratio", help="FRR haircut, 0 to 1 (0.15 = 15%)")),
        "haircut",
        lambda r, lk: ({"security_id": lk["sec"][r["code"]]}, {"haircut": r["haircut"]}, "update", None)),
    "client-margin": ImportKind(
        "client-margin", "Client-specific margin ratios",
        (Col("account", "account", required=False, help="account code (or give client_group)"),
         Col("client_group", "client_group", required=False, help="client group name (or give account)"),
         Col("code", "code", required=False, help="security code (or give stock_group)"),
         Col("stock_group", "stock_group", required=False, help="stock group name (or give code)"),
         Col("side", "choice", help="long or short", choices=("long", "short")),
         Col("im_ratio", "any_ratio", help="initial ratio (long 0–1; short from 1 up)"),
         Col("mm_ratio", "any_ratio", help="maintenance ratio, not above im_ratio")),
        "client_margin_ratio", lambda r, lk: _client_ratio_request(r, lk), lambda r, lk: _client_ratio_checks(r)),
    "index-members": ImportKind(
        "index-members", "Stock-index membership (decides each stock's level)",
        (Col("index", "index", help="index code, e.g. HSI"), Col("code", "code", help="security code")),
        "index_member",
        lambda r, lk: ({"index_id": lk["indices"][r["index"]], "security_id": lk["sec"][r["code"]]}, {},
                       "insert", None),
        lambda r, lk: [("code", f"{r['code']} is already in {r['index']}")]
        if (lk["indices"][r["index"]], lk["sec"][r["code"]]) in lk["index_members"] else []),
    "blacklist": ImportKind(
        "blacklist", "Blacklist (Credit / Asset Transfer)",
        (Col("account", "account", help="account code"),
         Col("tag", "choice", help="Credit or Asset Transfer", choices=("Credit", "Asset Transfer")),
         Col("remark", "text", required=False, help="why")),
        "blacklist",
        lambda r, lk: ({"id": lk["next_id"]("blacklist")},
                       {"account_id": lk["acct"][r["account"]], "tag": r["tag"], "enabled": True,
                        "remark": r.get("remark") or ""}, "insert", None)),
    "trading-limits": ImportKind(
        "trading-limits", "Client trading limits",
        (Col("account", "account", help="account code"),
         Col("limit_type", "choice", help="one limit of each type per client; a new one overwrites",
             choices=("daily_buy", "daily_sell", "order_notional", "position_notional")),
         Col("amount", "amount", help="limit in HKD, ≥ 0")),
        "client_trading_limit", lambda r, lk: _trading_limit_request(r, lk)),
    "financing-limits": ImportKind(
        "financing-limits", "Financing limits",
        (Col("account", "account", help="margin account code"),
         Col("amount", "amount", help="financing limit in HKD, ≥ 0")),
        "financing_limit",
        lambda r, lk: ({"account_id": lk["acct"][r["account"]]}, {"amount": r["amount"]},
                       "update" if lk["acct"][r["account"]] in lk["financing_limits"] else "insert", r["amount"])),
    "credit-groups": ImportKind(
        "credit-groups", "Credit groups (shared financing lines)",
        (Col("group_name", "text", help="credit group name; a name not yet in the store creates the group"),
         Col("account", "account", help="margin account code that joins the group (one group per account)"),
         Col("group_limit", "amount", required=False,
             help="the group's shared limit in HKD, ≥ 0: required on a new group's first row; on an existing "
                  "group a different value proposes the new limit")),
        "credit_group_member", None, credit_groups.import_checks,
        extra_lookups=credit_groups.import_lookups, to_requests=credit_groups.import_requests),
    "limit-rules": ImportKind(
        "limit-rules", "Pre-trade limit rules (client, security, trader, category, multi-dimension)",
        (Col("name", "text", help="the rule's name, free text"),
         Col("limit_code", "text", help="a code of the global catalogue (e.g. CL_ORD_NOTIONAL); its dimension "
                                        "says which subjects to give"),
         Col("account", "account", required=False, help="account code (client and multi-dimension codes)"),
         Col("code", "code", required=False, help="security code (security and multi-dimension codes)"),
         Col("trader", "text", required=False, help="trader login (trader and multi-dimension codes)"),
         Col("client_category", "text", required=False, help="client category, e.g. retail, professional"),
         Col("threshold", "amount", help="the limit, ≥ 0 (a ratio such as 0.1 for price deviation)"),
         Col("action", "choice", required=False, help="blank: the code's action",
             choices=("prompt", "approval", "reject"))),
        "limit_rule", lambda r, lk: _limit_rule_request(r, lk), lambda r, lk: _limit_rule_checks(r, lk),
        extra_lookups=lambda conn: {"limit_codes": {c: d for c, d in conn.execute(
            text("select code, dimension from limit_codes")).all()}}),
}

_RULE_SUBJECTS = {"client": ("account",), "security": ("code",), "trader": ("trader",),
                  "client_category": ("client_category",)}


def _limit_rule_checks(r: dict[str, Any], lk: dict[str, Any]) -> list[tuple[str, str]]:
    dim = lk["limit_codes"].get(r.get("limit_code"))
    if dim is None:
        return [("limit_code", f"unknown limit code {r.get('limit_code')!r}")]
    given = tuple(k for k in ("account", "code", "trader", "client_category") if r.get(k))
    if dim == "company":
        return [("limit_code", f"{r['limit_code']} is company-wide: it has no specific rules")]
    if dim == "multi":
        return [] if len(given) >= 2 else [("limit_code", "a multi-dimension rule names two or more subjects")]
    want = _RULE_SUBJECTS[dim]
    if given != want:
        return [(want[0], f"a {dim.replace('_', ' ')} rule names the {want[0].replace('_', ' ')} only")]
    return []


def _limit_rule_request(r: dict[str, Any], lk: dict[str, Any]
                        ) -> tuple[dict[str, Any], dict[str, Any], str, float | None]:
    after = {"name": r["name"], "code": r["limit_code"],
             "account_id": lk["acct"][r["account"]] if r.get("account") else None,
             "security_id": lk["sec"][r["code"]] if r.get("code") else None,
             "trader": r.get("trader") or None, "client_category": r.get("client_category") or None,
             "threshold": r["threshold"], "action": r.get("action") or None, "active": True}
    return {"id": lk["next_id"]("limit_rules")}, after, "insert", None


def _client_ratio_checks(r: dict[str, Any], lk: Any = None) -> list[tuple[str, str]]:
    out = _mm_le_im(r)
    if (r.get("account") is None) == (r.get("client_group") is None):
        out.append(("account", "give exactly one of account or client_group"))
    if (r.get("code") is None) == (r.get("stock_group") is None):
        out.append(("code", "give exactly one of code or stock_group"))
    im = r.get("im_ratio")
    if im is not None and r.get("side") == "long" and im > 1:
        out.append(("im_ratio", "a long ratio is between 0 and 1"))
    if im is not None and r.get("side") == "short" and im < 1:
        out.append(("im_ratio", "a short-sell ratio starts at 1 (e.g. 1.5)"))
    return out


def _client_ratio_request(r: dict[str, Any], lk: dict[str, Any]
                          ) -> tuple[dict[str, Any], dict[str, Any], str, float | None]:
    after = {"account_id": lk["acct"][r["account"]] if r.get("account") else None,
             "client_group_id": lk["client_groups"][r["client_group"]] if r.get("client_group") else None,
             "security_id": lk["sec"][r["code"]] if r.get("code") else None,
             "stock_group_id": lk["stock_groups"][r["stock_group"]] if r.get("stock_group") else None,
             "side": r["side"], "im_ratio": r["im_ratio"], "mm_ratio": r["mm_ratio"], "status": "active",
             "effective_from": datetime.now(UTC).isoformat()}
    return {"id": lk["next_id"]("client_margin_ratios")}, after, "insert", None


def _trading_limit_request(r: dict[str, Any], lk: dict[str, Any]
                           ) -> tuple[dict[str, Any], dict[str, Any], str, float | None]:
    acct = lk["acct"][r["account"]]
    existing = lk["trading_limits"].get((acct, r["limit_type"]))
    if existing is not None:  # one type per client: the new one overwrites
        return {"id": existing}, {"amount": r["amount"], "status": "active"}, "update", r["amount"]
    return ({"id": lk["next_id"]("client_trading_limits")},
            {"account_id": acct, "limit_type": r["limit_type"], "amount": r["amount"], "status": "active"},
            "insert", r["amount"])


# ---------------------------------------------------------------------------------------- templates
def write_template(kind: str, path: str | Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation

    k = _kind(kind)
    wb = Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append([c.name for c in k.columns])
    for i, c in enumerate(k.columns, start=1):
        cell = ws.cell(row=1, column=i)
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = PatternFill("solid", fgColor="1F4E78")
        ws.column_dimensions[cell.column_letter].width = max(14, len(c.name) + 4)
        rng = f"{cell.column_letter}2:{cell.column_letter}10001"
        if c.kind in ("ratio",):
            dv = DataValidation(type="decimal", operator="between", formula1="0", formula2="1",
                                error=f"{c.name}: a ratio from 0 to 1", showErrorMessage=True)
        elif c.kind == "short_ratio":
            dv = DataValidation(type="decimal", operator="greaterThanOrEqual", formula1="1",
                                error=f"{c.name}: a ratio from 1 up", showErrorMessage=True)
        elif c.kind == "amount":
            dv = DataValidation(type="decimal", operator="greaterThanOrEqual", formula1="0",
                                error=f"{c.name}: an amount ≥ 0", showErrorMessage=True)
        elif c.kind == "choice":
            dv = DataValidation(type="list", formula1='"' + ",".join(c.choices) + '"', showErrorMessage=True)
        else:
            continue
        ws.add_data_validation(dv)
        dv.add(rng)
    ws.freeze_panes = "A2"
    ins = wb.create_sheet("Instructions")
    ins.append([f"RiskDesk import: {k.title}"])
    ins["A1"].font = Font(bold=True, size=13)
    ins.append(["Fill the Data sheet from row 2, one row per record. Rows are checked one by one; nothing is "
                "applied until you confirm the valid rows, and then only as change requests for approval."])
    ins.append([])
    ins.append(["column", "required", "meaning"])
    for c in k.columns:
        ins.append([c.name, "yes" if c.required else "no", c.help])
    ins.column_dimensions["A"].width = 18
    ins.column_dimensions["C"].width = 80
    wb.save(path)


# ---------------------------------------------------------------------------------------- reading
def read_rows(path: str | Path) -> tuple[list[str], list[tuple[int, list[Any]]], str]:
    """(header, [(spreadsheet row number, values)], sha256 of the file)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImportFileError(f"{p}: cannot read the file: {e.strerror or e}") from e
    digest = hashlib.sha256(data).hexdigest()
    suffix = p.suffix.lower()
    if suffix == ".csv":
        try:
            lines = data.decode("utf-8-sig").splitlines()
        except UnicodeDecodeError as e:
            raise ImportFileError(f"{p.name}: not UTF-8 text") from e
        table = list(csv.reader(lines))
        rows = [(i + 1, r) for i, r in enumerate(table)]
    elif suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(p, read_only=True, data_only=True)
        except Exception as e:
            raise ImportFileError(f"{p.name}: not a readable xlsx workbook ({type(e).__name__})") from e
        ws = wb["Data"] if "Data" in wb.sheetnames else wb.worksheets[0]
        rows = [(i + 1, list(r)) for i, r in enumerate(ws.iter_rows(values_only=True))]
        wb.close()
    else:
        raise ImportFileError(f"{p.name}: use a .csv or .xlsx file")
    if not rows:
        raise ImportFileError(f"{p.name}: the file is empty (no header row)")
    header = [str(h).strip().lower() if h is not None else "" for h in rows[0][1]]
    body = [(n, r) for n, r in rows[1:] if any(v not in (None, "") for v in r)]
    return header, body, digest


# ---------------------------------------------------------------------------------------- validation
def _lookups(store: Store, kind: ImportKind | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    with store.begin() as conn:
        sec: dict[str, int] = dict(conn.execute(text("select code, id from securities")).all())
        acct: dict[str, int] = dict(conn.execute(text("select code, id from accounts where closed = false")).all()
                    if store.kind == "postgresql" else
                    conn.execute(text("select code, id from accounts where closed = 0")).all())
        ratio_ids = {(s, k): i for i, s, k in conn.execute(text(
            "select id, security_id, kind from stock_margin_ratios where status = 'active' order by id")).all()}
        trading = {(a, t): i for i, a, t in conn.execute(text(
            "select id, account_id, limit_type from client_trading_limits")).all()}
        top = {t: insert_id_floor(conn, t) for t in ("stock_margin_ratios", "blacklist", "client_trading_limits",
                                                      "client_margin_ratios", "limit_rules")}
        client_groups: dict[str, int] = dict(conn.execute(text("select name, id from client_groups")).all())
        stock_groups: dict[str, int] = dict(conn.execute(text("select name, id from stock_groups")).all())
        indices: dict[str, int] = dict(conn.execute(text("select code, id from indices")).all())
        members = {tuple(r) for r in conn.execute(text("select index_id, security_id from index_members")).all()}
        financing = {int(a) for (a,) in conn.execute(text("select account_id from financing_limits"))}
        if kind is not None and kind.extra_lookups is not None:
            extra = kind.extra_lookups(conn)

    def next_id(table: str) -> int:
        top[table] += 1
        return top[table]

    def next_ratio_id() -> int:
        return next_id("stock_margin_ratios")

    return {"sec": sec, "acct": acct, "ratio_ids": ratio_ids, "next_ratio_id": next_ratio_id,
            "next_id": next_id, "trading_limits": trading, "client_groups": client_groups,
            "stock_groups": stock_groups, "indices": indices, "index_members": members,
            "financing_limits": financing, **extra}


def _check(c: Col, v: Any, lk: dict[str, Any]) -> tuple[Any, str | None]:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None, ("required value is missing" if c.required else None)
    if c.kind == "index":
        name = str(v).strip()
        return name, (None if name in lk["indices"] else f"unknown index {name!r}")
    if c.kind in ("client_group", "stock_group"):
        name = str(v).strip()
        if name not in lk[c.kind + "s"]:
            return name, f"unknown {c.kind.replace('_', ' ')} {name!r}"
        return name, None
    if c.kind in ("code", "account", "text", "choice"):
        s = str(v).strip()
        if c.kind == "code" and s not in lk["sec"]:
            return s, f"unknown security code {s!r}"
        if c.kind == "account" and s not in lk["acct"]:
            return s, f"unknown or closed account {s!r}"
        if c.kind == "choice" and s not in c.choices:
            return s, f"must be one of {', '.join(c.choices)}"
        return s, None
    try:
        f = float(str(v).strip().rstrip("%")) / (100.0 if str(v).strip().endswith("%") else 1.0)
    except ValueError:
        return v, "not a number"
    if not math.isfinite(f):
        return v, "not a finite number"
    if c.kind == "any_ratio" and f < 0:
        return f, "must be ≥ 0"
    if c.kind == "ratio" and not 0.0 <= f <= 1.0:
        return f, "must be between 0 and 1 (e.g. 0.35 for 35%)"
    if c.kind == "short_ratio" and f < 1.0:
        return f, "a short-sell ratio starts at 1 (e.g. 1.5 for 150%)"
    if c.kind == "amount" and f < 0:
        return f, "must be ≥ 0"
    return f, None


@dataclass
class ImportReport:
    kind: str
    rows: int
    valid_rows: list[tuple[int, dict[str, Any]]]
    errors: list[dict[str, Any]]
    sha256: str
    already_imported: str | None = None
    applied: bool = False
    request_ids: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "rows": self.rows, "valid": len(self.valid_rows),
                               "errors": self.errors, "applied": self.applied}
        if self.already_imported:
            out["already_imported"] = self.already_imported
        if self.request_ids:
            out["requests"] = self.request_ids
        return out


def validate_file(store: Store, kind: str, path: str | Path,
                  progress: Callable[[float], None] | None = None) -> ImportReport:
    k = _kind(kind)
    header, body, digest = read_rows(path)
    missing = [c.name for c in k.columns if c.required and c.name not in header]
    if missing:
        raise ImportFileError(f"{Path(path).name}: missing column(s) {', '.join(missing)} in the header row "
                              f"(expected {', '.join(c.name for c in k.columns)})")
    pos = {c.name: header.index(c.name) for c in k.columns if c.name in header}
    lk = _lookups(store, k)
    valid: list[tuple[int, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], int] = {}
    key_cols = [c.name for c in k.columns if c.kind in ("code", "account", "client_group", "stock_group", "index")
                or c.name in ("side", "limit_type", "tag")]
    for i, (rown, values) in enumerate(body):
        rec: dict[str, Any] = {}
        bad = False
        for c in k.columns:
            raw = values[pos[c.name]] if c.name in pos and pos[c.name] < len(values) else None
            val, err = _check(c, raw, lk)
            if err:
                errors.append({"row": rown, "column": c.name, "value": raw, "message": err})
                bad = True
            rec[c.name] = val
        if not bad:
            for col, msg in k.cross_check(rec, lk):
                errors.append({"row": rown, "column": col, "value": rec.get(col), "message": msg})
                bad = True
        key = tuple(rec.get(c) for c in key_cols)
        if not bad and key in seen:
            errors.append({"row": rown, "column": key_cols[0], "value": key[0],
                           "message": f"duplicate of row {seen[key]}"})
            bad = True
        if not bad:
            seen[key] = rown
            valid.append((rown, rec))
        if progress is not None and i % 500 == 0:
            progress(i / max(1, len(body)))
    with store.begin() as conn:
        prev = conn.execute(text("select actor, ts from audit_log where action = 'import' and after like :h "
                                 "order by id desc limit 1"), {"h": f"%sha256={digest}%"}).first()
    already = f"this file was already imported by {prev[0]} at {prev[1]}" if prev else None
    return ImportReport(kind, len(body), valid, errors, digest, already)


def apply_rows(store: Store, user: Any, report: ImportReport, reason: str) -> ImportReport:
    """Submit every valid row as change requests (nothing changes until each is approved).

    All the requests and the import's audit record are written in one transaction: a row the store
    refuses (e.g. a target changed meanwhile) leaves no request of the file behind."""
    from services import changes

    k = _kind(report.kind)
    lk = _lookups(store, k)
    ids = []
    with store.begin() as conn:
        for rown, rec in report.valid_rows:
            try:
                reqs = k.requests(rec, lk)
            except KeyError as e:  # an account, code or group the check saw is gone (closed, deleted)
                raise changes.ChangeError(f"row {rown}: {e.args[0]!r} is no longer in the store; check the file "
                                          "again — no request of this file was submitted") from e
            for req in reqs:
                ids.append(changes.submit(
                    store, user, req["kind"], req["key"], req["after"], f"{reason} (import row {rown})",
                    op=req["op"], amount=req["amount"],
                    context={**req["context"], "import": report.kind, "row": rown}, conn=conn))
        audit.append(conn, store.kind, user.login, "import", report.kind, f"{len(ids)} requests",
                     after=f"sha256={report.sha256} rows={report.rows} valid={len(report.valid_rows)}")
    report.applied = True
    report.request_ids = ids
    return report


def _kind(kind: str) -> ImportKind:
    if kind not in KINDS:
        raise ImportFileError(f"unknown import kind {kind!r}: one of {', '.join(KINDS)}")
    return KINDS[kind]
