"""The portable book file (DESIGN.md "Book file"): JSON ⇄ `Book`.

Unknown keys are ignored; a missing required key or a bad value raises `BookError` naming the JSON
path (e.g. ``securities[3].price``) so the user can find it in the file.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.book import (
    ACCOUNT_TYPES,
    DEFAULT_PARAMETERS,
    Book,
    BookError,
    ClientRatios,
    email_address,
)

_MISSING = object()


def _get(obj: dict[str, Any], key: str, path: str, default: Any = _MISSING) -> Any:
    if key not in obj or obj[key] is None:
        if default is _MISSING:
            raise BookError(f"{path}.{key}" if path else key, "required value is missing")
        return default
    return obj[key]


def _num(v: Any, path: str, *, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BookError(path, f"expected a number, got {json.dumps(v)[:40]}")
    f = float(v)
    if not math.isfinite(f):
        raise BookError(path, "must be a finite number")
    if lo is not None and (f < lo or (lo_open and f == lo)):
        raise BookError(path, f"must be {'>' if lo_open else '≥'} {lo:g}, got {f:g}")
    if hi is not None and f > hi:
        raise BookError(path, f"must be ≤ {hi:g}, got {f:g}")
    return f


def _str(v: Any, path: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise BookError(path, f"expected a non-empty string, got {json.dumps(v)[:40]}")
    return v.strip()


def _client_email(a: dict[str, Any], p: str, client: str, email_of: dict[str, tuple[str, str]]) -> str:
    """An account's optional ``client_email``; every account of one client must agree on it."""
    v = a.get("client_email")
    if v is None or v == "":
        email = ""
    else:
        email = email_address(v) if isinstance(v, str) else ""
        if not email:
            raise BookError(f"{p}.client_email", f"expected one e-mail address like name@example.com, "
                                                 f"got {json.dumps(v, ensure_ascii=False)[:60]}")
    if email:
        first = email_of.setdefault(client, (email, f"{p}.client_email"))
        if first[0] != email:
            raise BookError(f"{p}.client_email", f"client {client!r} already has {first[0]!r} at {first[1]}")
    return email


def _list(v: Any, path: str) -> list[Any]:
    if not isinstance(v, list):
        raise BookError(path, "expected a list")
    return v


def _obj(v: Any, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise BookError(path, "expected an object")
    return v


def _expired(expires: Any, as_of: str, path: str) -> bool:
    if expires is None:
        return False
    try:
        exp = date.fromisoformat(str(expires)[:10])
    except ValueError as e:
        raise BookError(path, f"not a date: {expires!r}") from e
    if not as_of:
        return False
    return exp < date.fromisoformat(as_of[:10])


def book_from_dict(doc: Any) -> Book:
    doc = _obj(doc, "$")
    as_of = _get(doc, "as_of", "", "")
    if as_of:
        try:
            datetime.fromisoformat(str(as_of))
        except ValueError as e:
            raise BookError("as_of", f"not an ISO date-time: {as_of!r}") from e
    base = _str(_get(doc, "base_currency", "", "HKD"), "base_currency")
    fx_doc = _obj(_get(doc, "fx", "", {base: 1.0}), "fx")
    currencies = [base] + sorted(c for c in fx_doc if c != base)
    fx = np.array([1.0 if c == base and c not in fx_doc else
                   _num(fx_doc[c], f"fx.{c}", lo=0.0, lo_open=True) for c in currencies])
    cur_index = {c: i for i, c in enumerate(currencies)}

    secs = _list(_get(doc, "securities", ""), "securities")
    n_sec = len(secs)
    codes: list[str] = []
    names: list[str] = []
    markets: list[str] = []
    market_index: dict[str, int] = {}
    arr = {k: np.full(n_sec, np.nan) for k in (
        "price", "haircut", "long_im", "long_mm", "short_im", "short_mm", "intraday_im", "intraday_mm")}
    sec_cur = np.zeros(n_sec, np.int16)
    sec_mkt = np.zeros(n_sec, np.int16)
    level = np.full(n_sec, 3, np.int8)
    suspended = np.zeros(n_sec, bool)
    lot = np.ones(n_sec, np.int32)
    seen: set[str] = set()
    for i, s in enumerate(secs):
        p = f"securities[{i}]"
        s = _obj(s, p)
        code = _str(_get(s, "code", p), f"{p}.code")
        if code in seen:
            raise BookError(f"{p}.code", f"duplicate security code {code!r}")
        seen.add(code)
        codes.append(code)
        names.append(str(s.get("name") or code))
        cur = _str(_get(s, "currency", p), f"{p}.currency")
        if cur not in cur_index:
            raise BookError(f"{p}.currency", f"currency {cur!r} has no fx rate")
        sec_cur[i] = cur_index[cur]
        mkt = str(s.get("market") or "HK")
        sec_mkt[i] = market_index.setdefault(mkt, len(markets))
        if sec_mkt[i] == len(markets):
            markets.append(mkt)
        arr["price"][i] = _num(_get(s, "price", p), f"{p}.price", lo=0.0, lo_open=True)
        arr["haircut"][i] = _num(s.get("haircut", 1.0), f"{p}.haircut", lo=0.0, hi=1.0)
        lv = s.get("level", 3)
        if lv not in (1, 2, 3) or isinstance(lv, bool):
            raise BookError(f"{p}.level", f"must be 1, 2 or 3, got {json.dumps(lv)}")
        level[i] = lv
        suspended[i] = bool(s.get("suspended", False))
        lot[i] = int(_num(s.get("lot_size", 1), f"{p}.lot_size", lo=1))
        for key, col, lo, hi in (("im_ratio", "long_im", 0.0, 1.0), ("mm_ratio", "long_mm", 0.0, 1.0),
                                 ("short_im_ratio", "short_im", 0.0, None),
                                 ("short_mm_ratio", "short_mm", 0.0, None),
                                 ("intraday_im_ratio", "intraday_im", 0.0, 1.0),
                                 ("intraday_mm_ratio", "intraday_mm", 0.0, 1.0)):
            if s.get(key) is not None:
                arr[col][i] = _num(s[key], f"{p}.{key}", lo=lo, hi=hi)
        if not np.isnan(arr["long_im"][i]) and np.isnan(arr["long_mm"][i]):
            arr["long_mm"][i] = arr["long_im"][i]
        if not np.isnan(arr["short_im"][i]) and np.isnan(arr["short_mm"][i]):
            arr["short_mm"][i] = arr["short_im"][i]
        if arr["long_mm"][i] > arr["long_im"][i]:
            raise BookError(f"{p}.mm_ratio", "maintenance ratio must not exceed the initial ratio")
    sec_index = {c: i for i, c in enumerate(codes)}

    accts = _list(_get(doc, "accounts", ""), "accounts")
    n_acct = len(accts)
    acct_codes: list[str] = []
    client_codes: list[str] = []
    client_names: list[str] = []
    client_emails: list[str] = []
    email_of: dict[str, tuple[str, str]] = {}  # client -> (e-mail, where it was given)
    acct_type = np.zeros(n_acct, np.int8)
    fin = np.zeros(n_acct)
    frozen = np.zeros(n_acct, bool)
    cash = np.zeros((n_acct, len(currencies)))
    seen = set()
    for i, a in enumerate(accts):
        p = f"accounts[{i}]"
        a = _obj(a, p)
        code = _str(_get(a, "account", p), f"{p}.account")
        if code in seen:
            raise BookError(f"{p}.account", f"duplicate account {code!r}")
        seen.add(code)
        acct_codes.append(code)
        client_codes.append(str(a.get("client") or code))
        client_names.append(str(a.get("client_name") or ""))
        client_emails.append(_client_email(a, p, client_codes[-1], email_of))
        t = a.get("type", "margin")
        if t not in ACCOUNT_TYPES:
            raise BookError(f"{p}.type", f"must be one of {', '.join(ACCOUNT_TYPES)}, got {json.dumps(t)}")
        acct_type[i] = ACCOUNT_TYPES.index(t)
        fin[i] = _num(a.get("financing_limit", 0.0), f"{p}.financing_limit", lo=0.0)
        frozen[i] = bool(a.get("frozen", False))
        for cur, amt in _obj(a.get("cash", {}), f"{p}.cash").items():
            if cur not in cur_index:
                raise BookError(f"{p}.cash.{cur}", f"currency {cur!r} has no fx rate")
            cash[i, cur_index[cur]] = _num(amt, f"{p}.cash.{cur}")
    # a client's address is the one given on any of its accounts
    client_emails = [e or email_of.get(c, ("", ""))[0] for e, c in zip(client_emails, client_codes, strict=True)]
    acct_index = {c: i for i, c in enumerate(acct_codes)}

    pos = _list(_get(doc, "positions", "", []), "positions")
    pa = np.zeros(len(pos), np.int32)
    ps = np.zeros(len(pos), np.int32)
    pq = np.zeros(len(pos))
    keys: set[tuple[int, int]] = set()
    for i, r in enumerate(pos):
        p = f"positions[{i}]"
        r = _obj(r, p)
        a_code = _str(_get(r, "account", p), f"{p}.account")
        s_code = _str(_get(r, "code", p), f"{p}.code")
        if a_code not in acct_index:
            raise BookError(f"{p}.account", f"unknown account {a_code!r}")
        if s_code not in sec_index:
            raise BookError(f"{p}.code", f"unknown security {s_code!r}")
        pa[i], ps[i] = acct_index[a_code], sec_index[s_code]
        if (pa[i], ps[i]) in keys:
            raise BookError(p, f"duplicate position {a_code}/{s_code}")
        keys.add((int(pa[i]), int(ps[i])))
        pq[i] = _num(_get(r, "qty", p), f"{p}.qty")

    stock_groups: dict[str, np.ndarray] = {}
    for name, members in _obj(doc.get("stock_groups", {}), "stock_groups").items():
        idx = []
        for j, c in enumerate(_list(members, f"stock_groups.{name}")):
            if c not in sec_index:
                raise BookError(f"stock_groups.{name}[{j}]", f"unknown security {c!r}")
            idx.append(sec_index[c])
        stock_groups[name] = np.array(idx, np.int32)
    client_groups: dict[str, np.ndarray] = {}
    for name, members in _obj(doc.get("client_groups", {}), "client_groups").items():
        idx = []
        for j, c in enumerate(_list(members, f"client_groups.{name}")):
            if c not in acct_index:
                raise BookError(f"client_groups.{name}[{j}]", f"unknown account {c!r}")
            idx.append(acct_index[c])
        client_groups[name] = np.array(idx, np.int32)

    rows: dict[str, list[float]] = {k: [] for k in ("sk", "s", "tk", "t", "side", "im", "mm")}
    sg_names = list(stock_groups)
    cg_names = list(client_groups)
    for i, r in enumerate(_list(doc.get("client_ratios", []), "client_ratios")):
        p = f"client_ratios[{i}]"
        r = _obj(r, p)
        if _expired(r.get("expires"), str(as_of), f"{p}.expires"):
            continue
        if r.get("account") is not None:
            a_code = _str(r["account"], f"{p}.account")
            if a_code not in acct_index:
                raise BookError(f"{p}.account", f"unknown account {a_code!r}")
            sk, s = 0, acct_index[a_code]
        elif r.get("group") is not None:
            g = _str(r["group"], f"{p}.group")
            if g not in client_groups:
                raise BookError(f"{p}.group", f"unknown client group {g!r}")
            sk, s = 1, cg_names.index(g)
        else:
            raise BookError(f"{p}.account", "required value is missing (or give 'group')")
        if r.get("code") is not None:
            c = _str(r["code"], f"{p}.code")
            if c not in sec_index:
                raise BookError(f"{p}.code", f"unknown security {c!r}")
            tk, t = 0, sec_index[c]
        elif r.get("stock_group") is not None:
            g = _str(r["stock_group"], f"{p}.stock_group")
            if g not in stock_groups:
                raise BookError(f"{p}.stock_group", f"unknown stock group {g!r}")
            tk, t = 1, sg_names.index(g)
        else:
            raise BookError(f"{p}.code", "required value is missing (or give 'stock_group')")
        side = r.get("side", "long")
        if side not in ("long", "short"):
            raise BookError(f"{p}.side", f"must be 'long' or 'short', got {json.dumps(side)}")
        hi = None if side == "short" else 1.0
        im = _num(_get(r, "im_ratio", p), f"{p}.im_ratio", lo=0.0, hi=hi)
        mm = _num(r.get("mm_ratio", im), f"{p}.mm_ratio", lo=0.0, hi=hi)
        if mm > im:
            raise BookError(f"{p}.mm_ratio", "maintenance ratio must not exceed the initial ratio")
        for k, v in (("sk", sk), ("s", s), ("tk", tk), ("t", t), ("side", 0 if side == "long" else 1),
                     ("im", im), ("mm", mm)):
            rows[k].append(v)
    ratios = ClientRatios(
        subject_kind=np.array(rows["sk"], np.int8), subject=np.array(rows["s"], np.int32),
        target_kind=np.array(rows["tk"], np.int8), target=np.array(rows["t"], np.int32),
        side=np.array(rows["side"], np.int8), im=np.array(rows["im"], np.float64),
        mm=np.array(rows["mm"], np.float64))

    params = dict(DEFAULT_PARAMETERS)
    for k, v in _obj(doc.get("parameters", {}), "parameters").items():
        params[k] = _num(v, f"parameters.{k}")
    if not 0 < params["force_call_factor"] <= 1:
        raise BookError("parameters.force_call_factor", "must be in (0, 1]")

    return Book(
        as_of=str(as_of), base_currency=base, currencies=currencies, fx=fx,
        sec_codes=codes, sec_names=names, sec_currency=sec_cur, markets=markets, sec_market=sec_mkt,
        price=arr["price"], level=level, haircut=arr["haircut"], suspended=suspended, lot_size=lot,
        long_im=arr["long_im"], long_mm=arr["long_mm"], short_im=arr["short_im"],
        short_mm=arr["short_mm"], intraday_im=arr["intraday_im"], intraday_mm=arr["intraday_mm"],
        acct_codes=acct_codes, client_codes=client_codes, client_names=client_names, client_emails=client_emails,
        acct_type=acct_type, financing_limit=fin, frozen=frozen, cash=cash,
        pos_acct=pa, pos_sec=ps, pos_qty=pq, stock_groups=stock_groups, client_groups=client_groups,
        client_ratios=ratios, parameters=params,
    )


def _opt(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def book_to_dict(book: Book, contacts: bool = True) -> dict[str, Any]:
    """The book file's JSON object; ``contacts=False`` leaves out clients' e-mail addresses (personal data
    a stored risk run's inputs do not need)."""
    secs = []
    for i, code in enumerate(book.sec_codes):
        s: dict[str, Any] = {
            "code": code, "name": book.sec_names[i], "currency": book.currencies[book.sec_currency[i]],
            "price": float(book.price[i]), "market": book.markets[book.sec_market[i]],
            "level": int(book.level[i]), "haircut": float(book.haircut[i]),
            "lot_size": int(book.lot_size[i]), "suspended": bool(book.suspended[i]),
        }
        for key, col in (("im_ratio", book.long_im), ("mm_ratio", book.long_mm),
                         ("short_im_ratio", book.short_im), ("short_mm_ratio", book.short_mm),
                         ("intraday_im_ratio", book.intraday_im), ("intraday_mm_ratio", book.intraday_mm)):
            v = _opt(col[i])
            if v is not None:
                s[key] = v
        secs.append(s)
    accts = []
    for i, code in enumerate(book.acct_codes):
        accts.append({
            "account": code, "client": book.client_codes[i], "client_name": book.client_names[i],
            "type": ACCOUNT_TYPES[book.acct_type[i]],
            "cash": {c: float(book.cash[i, j]) for j, c in enumerate(book.currencies)
                     if book.cash[i, j] != 0.0},
            "financing_limit": float(book.financing_limit[i]), "frozen": bool(book.frozen[i]),
        } | ({"client_email": book.client_email(i)} if contacts and book.client_email(i) else {}))
    positions = [{"account": book.acct_codes[a], "code": book.sec_codes[s], "qty": float(q)}
                 for a, s, q in zip(book.pos_acct.tolist(), book.pos_sec.tolist(), book.pos_qty.tolist(),
                                    strict=True)]
    sg_names = list(book.stock_groups)
    cg_names = list(book.client_groups)
    cr = book.client_ratios
    ratios = []
    for i in range(len(cr)):
        r: dict[str, Any] = {}
        if cr.subject_kind[i] == 0:
            r["account"] = book.acct_codes[cr.subject[i]]
        else:
            r["group"] = cg_names[cr.subject[i]]
        if cr.target_kind[i] == 0:
            r["code"] = book.sec_codes[cr.target[i]]
        else:
            r["stock_group"] = sg_names[cr.target[i]]
        r["side"] = "long" if cr.side[i] == 0 else "short"
        r["im_ratio"], r["mm_ratio"] = float(cr.im[i]), float(cr.mm[i])
        ratios.append(r)
    return {
        "as_of": book.as_of, "base_currency": book.base_currency,
        "fx": {c: float(book.fx[i]) for i, c in enumerate(book.currencies)},
        "securities": secs, "accounts": accts, "positions": positions,
        "client_ratios": ratios,
        "stock_groups": {k: [book.sec_codes[i] for i in v.tolist()] for k, v in book.stock_groups.items()},
        "client_groups": {k: [book.acct_codes[i] for i in v.tolist()] for k, v in book.client_groups.items()},
        "parameters": dict(book.parameters),
    }


def load_book_file(path: str | Path) -> Book:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise BookError(str(p), f"cannot read the book file: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise BookError(str(p), "the book file is not UTF-8 text") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BookError(f"{p.name} line {e.lineno} column {e.colno}", f"invalid JSON: {e.msg}") from e
    return book_from_dict(doc)


def save_book_file(book: Book, path: str | Path) -> None:
    """Write atomically: a partial file never replaces a good one."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(book_to_dict(book), ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(p)
