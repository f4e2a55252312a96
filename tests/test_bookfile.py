"""The portable book file: round trip, and a bad value is named by its JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.book import BookError
from services.bookfile import book_from_dict, book_to_dict, load_book_file, save_book_file
from services.demo import make_demo_book
from services.margin import MarginEngine

GOOD = {
    "as_of": "2026-11-20T16:10:00+08:00", "base_currency": "HKD", "fx": {"HKD": 1.0, "USD": 7.8},
    "securities": [{"code": "700.HK", "currency": "HKD", "price": 380.0, "market": "HK", "im_ratio": 0.35,
                    "mm_ratio": 0.25, "short_im_ratio": 1.0, "short_mm_ratio": 1.0, "level": 1,
                    "haircut": 0.15, "unknown_key": "ignored"}],
    "accounts": [{"account": "M001", "client": "C001", "client_name": "Chan Tai Man", "type": "margin",
                  "cash": {"HKD": -120000.0, "USD": 0.0}, "financing_limit": 500000.0}],
    "positions": [{"account": "M001", "code": "700.HK", "qty": 1000}],
    "client_ratios": [{"account": "M001", "code": "700.HK", "im_ratio": 0.5, "mm_ratio": 0.4}],
    "parameters": {"force_call_factor": 0.8, "call_deadline_days": 3},
}


def test_design_example_parses_and_computes() -> None:
    e = MarginEngine(book_from_dict(GOOD))
    r = e.account_result(0)
    # MV 380,000; client ratio 0.5/0.4 → IM 190,000, MM 152,000; E = 260,000 → safe
    assert (r["equity"], r["im"], r["mm"], r["status"]) == (260_000.0, 190_000.0, 152_000.0, "safe")


@pytest.mark.parametrize("mutate,path", [
    (lambda d: d["securities"][0].update(price=-1), "securities[0].price"),
    (lambda d: d["securities"][0].update(price="abc"), "securities[0].price"),
    (lambda d: d["securities"][0].pop("currency"), "securities[0].currency"),
    (lambda d: d["securities"][0].update(level=4), "securities[0].level"),
    (lambda d: d["securities"][0].update(haircut=1.5), "securities[0].haircut"),
    (lambda d: d["securities"][0].update(mm_ratio=0.9), "securities[0].mm_ratio"),
    (lambda d: d["accounts"][0].update(type="loan"), "accounts[0].type"),
    (lambda d: d["accounts"][0]["cash"].update(EUR=5), "accounts[0].cash.EUR"),
    (lambda d: d["positions"][0].update(code="NOPE"), "positions[0].code"),
    (lambda d: d["positions"][0].update(qty=float("nan")), "positions[0].qty"),
    (lambda d: d["positions"].append({"account": "M001", "code": "700.HK", "qty": 5}), "positions[1]"),
    (lambda d: d["client_ratios"][0].update(account="M999"), "client_ratios[0].account"),
    (lambda d: d["fx"].update(USD=0), "fx.USD"),
    (lambda d: d.pop("securities"), "securities"),
    (lambda d: d["accounts"][0].update(client_email="chan at example.hk"), "accounts[0].client_email"),
    (lambda d: d["accounts"][0].update(client_email=42), "accounts[0].client_email"),
    (lambda d: d["accounts"][0].update(client_email="a@b.com, c@d.com"), "accounts[0].client_email"),
    (lambda d: d["accounts"][0].update(client_email="a(b)@c.com"), "accounts[0].client_email"),
    (lambda d: d["accounts"][0].update(client_email="陳@example.hk"), "accounts[0].client_email"),
    (lambda d: d["accounts"][0].update(client_email="x" * 250 + "@example.hk"), "accounts[0].client_email"),
    (lambda d: d["accounts"].append({**d["accounts"][0], "account": "M002", "client_email": "b@example.hk"}
                                    ) or d["accounts"][0].update(client_email="a@example.hk"),
     "accounts[1].client_email"),  # one client, two addresses
])
def test_bad_value_names_its_path(mutate, path: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(json.dumps(GOOD))
    mutate(doc)
    with pytest.raises(BookError) as ei:
        book_from_dict(doc)
    assert ei.value.path == path
    assert str(ei.value).startswith(path)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    p = tmp_path / "b.json"
    p.write_text('{"securities": [,]}')
    with pytest.raises(BookError, match="line 1 column"):
        load_book_file(p)


def test_round_trip_keeps_every_number(tmp_path: Path) -> None:
    book = make_demo_book(200, seed=5)
    p = tmp_path / "book.json"
    save_book_file(book, p)
    again = load_book_file(p)
    assert again.sec_codes == book.sec_codes and again.acct_codes == book.acct_codes
    e1, e2 = MarginEngine(book.copy()), MarginEngine(again)
    for k in ("equity", "im", "mm", "call_amount", "buying_power"):
        np.testing.assert_allclose(getattr(e1, k), getattr(e2, k), err_msg=k)
    assert (e1.status == e2.status).all()
    assert book_to_dict(again)["client_ratios"] == book_to_dict(book)["client_ratios"]
    assert again.client_emails == book.client_emails and book.client_email(0).endswith("@example.com")
    assert book.client_email(24) == ""  # every 25th demo client has none on file


def test_client_email_is_optional_and_kept_by_the_store(tmp_path: Path) -> None:
    from services.store import Store

    doc = json.loads(json.dumps(GOOD))
    doc["accounts"].append({**doc["accounts"][0], "account": "M002", "client_email": " chan@example.hk "})
    doc["accounts"].append({**doc["accounts"][0], "account": "M003", "client": "C003"})
    book = book_from_dict(doc)
    # the client's address is the one given on any of its accounts; a client with none has ""
    assert book.client_emails == ["chan@example.hk", "chan@example.hk", ""]
    st = Store(f"sqlite:///{tmp_path / 'e.db'}")
    st.migrate()
    st.save_book(book)
    again = st.load_book()
    st.dispose()
    assert again.client_emails == ["chan@example.hk", "chan@example.hk", ""]
    out = book_to_dict(again)["accounts"]
    assert [a.get("client_email") for a in out] == ["chan@example.hk", "chan@example.hk", None]
    assert all("client_email" not in a for a in book_to_dict(again, contacts=False)["accounts"])


def test_email_addresses_are_kept_in_the_form_a_header_carries() -> None:
    from models.book import email_address

    assert email_address(" Chan.Tai-Man+desk@Example.HK ") == "Chan.Tai-Man+desk@example.hk"
    assert email_address("chan@例え.香港") == "chan@xn--r8jz45g.xn--j6w193g"  # international domain as IDNA
    for bad in ("a@b", "a@b.c", "a b@c.com", "<a@b.com>", "a@b.com, c@d.com", "a:b@c.com", "a(b)@c.com",
                "a[b]@c.com", "陳@example.hk", "a..b@c.com", "a@-b.com", "x" * 250 + "@c.com", ""):
        assert email_address(bad) == "", bad
