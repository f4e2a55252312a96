"""The order-check service over real tcp ZeroMQ sockets: REQ and DEALER clients, malformed input,
the approval path to a four-eyes release, fills, and a limit change in force without a restart.

Book (tests/test_margin_formulas.py): A.HK @ 100 (lot 100), M1 margin (cash −20,000, limit 100,000,
1,000 A.HK → buying power 30,000), RICH margin (cash 10,000,000), C1 cash account (50,000).
The migration's catalogue applies (CL_ORD_NOTIONAL 5,000,000 approval, CL_DAY_NOTIONAL 20,000,000…).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services import auth, changes
from services import pretrade_store as ps
from services.check_server import CheckServer
from services.notify import wait_for
from services.store import Store
from tests.test_four_eyes import _as, _seed_users
from tests.test_margin_formulas import _acct, make_book

RITA, SAM = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")


def _book() -> Any:
    return make_book([_acct("M1", -20_000, limit=100_000), _acct("RICH", 10_000_000, limit=0),
                      _acct("C1", 50_000, type_="cash", limit=0)], [("M1", "A.HK", 1000)])


class Client:
    def __init__(self, endpoint: str, kind: int = zmq.REQ) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 5000)
        self.sock.connect(endpoint)
        self.kind = kind

    def raw(self, payload: bytes) -> dict[str, Any]:
        if self.kind == zmq.DEALER:
            self.sock.send_multipart([b"", payload])
            frames = self.sock.recv_multipart()
            assert frames[0] == b""
            return json.loads(frames[-1])
        self.sock.send(payload)
        return json.loads(self.sock.recv())

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.raw(json.dumps(req).encode())

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _order(account: str = "M1", qty: float = 100, price: float = 100.0, side: str = "buy", **kw: Any) -> dict:
    return {"account": account, "trader": "tom", "code": "A.HK", "side": side, "qty": qty, "price": price,
            "order_type": "limit", "client_order_id": kw.pop("coid", uuid.uuid4().hex[:8]), **kw}


@pytest.fixture
def served(sqlite_url: str) -> Iterator[tuple[Store, CheckServer, Client]]:
    st = Store(sqlite_url)
    st.migrate()
    st.save_book(_book())
    auth.ensure_permissions(st)
    server = CheckServer(st, "tcp://127.0.0.1:*", flags_refresh=0.3).start()
    client = Client(server.endpoint or "")
    yield st, server, client
    client.close()
    server.stop()
    st.dispose()


def test_check_answers_decisions_with_reasons_and_stores_them(served) -> None:  # type: ignore[no-untyped-def]
    st, server, c = served
    r = c.call({"op": "check", "order": _order(qty=100)})
    assert r == {"ok": True, "decision": "accept", "reasons": [], "notional": 10_000.0}
    r = c.call({"op": "check", "order": _order(qty=400)})
    assert r["decision"] == "reject"
    assert r["reasons"][0] | {"message": ""} == {"rule": "buying_power", "action": "reject", "threshold": 30_000.0,
                                                  "observed": 40_000.0, "message": ""}
    same = _order(qty=50, coid="dup")
    assert c.call({"op": "check", "order": same})["decision"] == "accept"
    r = c.call({"op": "check", "order": same})  # the same order again within 60 s
    assert [x["rule"] for x in r["reasons"]] == ["duplicate"]
    assert server.flush()
    rows = ps.decisions(st)
    assert [(d.account, d.qty, d.decision) for d in rows] == [("M1", 100, "accept"), ("M1", 400, "reject"),
                                                             ("M1", 50, "accept"), ("M1", 50, "reject")]
    assert rows[1].reasons[0]["rule"] == "buying_power"
    counts = ps.reason_counts(rows)
    assert counts["buying_power"]["reject"] == 1 and counts["duplicate"]["reject"] == 1


def test_malformed_requests_get_an_error_naming_the_problem(served) -> None:  # type: ignore[no-untyped-def]
    _, server, c = served
    cases = [
        (b"{not json", "request is not valid JSON"),
        (b"\xff\xfe", "request is not valid JSON"),
        (b"[1, 2]", "request must be a JSON object"),
        (b'{"op": "buy"}', "unknown op 'buy'"),
        (b'{"op": "check"}', "check needs an 'order' object"),
        (json.dumps({"op": "check", "order": _order(qty=-1)}).encode(), "order.qty must be a positive number"),
        (json.dumps({"op": "check", "order": _order(side="short")}).encode(), "order.side must be"),
        (json.dumps({"op": "fill", "fill": {"account": "M1"}}).encode(), "fill.price is missing"),
        (json.dumps({"op": "fill", "fill": _order(account="NOPE")}).encode(), "fill.account NOPE is unknown"),
        (b'{"op": "check", "order": {"pad": "' + b"x" * 70_000 + b'"}}', "larger than 65,536"),
    ]
    for payload, message in cases:
        r = c.raw(payload)
        assert r["ok"] is False and message in r["error"], (payload[:40], r)
    # still serving, and an unknown account is a decision, not an error
    r = c.call({"op": "check", "order": _order(account="ZZZ")})
    assert (r["decision"], r["reasons"][0]["rule"]) == ("reject", "unknown_account")
    assert c.call({"op": "ping"})["counts"]["error"] == len(cases)


def test_dealer_clients_are_answered_too(served) -> None:  # type: ignore[no-untyped-def]
    _, server, _c = served
    d = Client(server.endpoint or "", zmq.DEALER)
    try:
        assert d.call({"op": "check", "order": _order(qty=10)})["decision"] == "accept"
        d.sock.send_multipart([json.dumps({"op": "ping"}).encode()])  # a DEALER without the empty frame
        assert json.loads(d.sock.recv_multipart()[-1])["ok"] is True
    finally:
        d.close()


def test_approval_creates_a_release_request_that_a_checker_releases(served) -> None:  # type: ignore[no-untyped-def]
    st, _, c = served
    r = c.call({"op": "check", "order": _order("RICH", qty=10_100, price=100, coid="big-1")})
    assert r["decision"] == "approval" and [x["rule"] for x in r["reasons"]] == ["notional_approval"]
    req = changes.get(st, r["release_request"])
    assert (req.kind, req.status, req.target_key, req.amount) == ("order_release", "pending", {"id": r["decision_id"]},
                                                                1_010_000.0)
    assert req.context["order"] == "buy 10,100 A.HK @ 100" and req.maker == "check-server"
    changes.approve(st, SAM, req.id)
    row = [d for d in ps.decisions(st) if d.id == r["decision_id"]][0]
    assert row.released and row.as_record()["release"] == "released"


def test_an_approval_whose_client_has_gone_is_stored_and_the_service_serves_on(served) -> None:  # type: ignore[no-untyped-def]
    """The answer to an approval waits for its release request; a client gone by then loses only it."""
    st, server, c = served
    gone = Client(server.endpoint or "", zmq.DEALER)
    gone.sock.send_multipart([b"", json.dumps({"op": "check", "order": _order("RICH", qty=10_200, price=100,
                                                                               coid="big-gone")}).encode()])
    gone.sock.close(linger=5000)  # without reading the answer, once the request has left
    gone.ctx.term()
    assert c.call({"op": "ping"})["ok"] is True
    assert server.flush()
    deadline = time.monotonic() + 10
    while not [d for d in ps.decisions(st) if d.client_order_id == "big-gone" and d.request_id]:
        assert time.monotonic() < deadline, "the approval was not stored with its release request"
        time.sleep(0.05)
    assert c.call({"op": "check", "order": _order(qty=10)})["decision"] == "accept"


def test_fill_updates_store_margin_and_daily_totals(served) -> None:  # type: ignore[no-untyped-def]
    st, server, c = served
    r = c.call({"op": "fill", "fill": _order(qty=200, price=100)})  # cash −40,000; 1,200 A.HK
    a = r["account"]
    assert (a["position"], a["cash"], a["im"], a["buying_power"]) == (1200.0, -40_000.0, 60_000.0, 20_000.0)
    with st.begin() as conn:
        qty = conn.execute(text("select p.qty from positions p join accounts a on a.id = p.account_id "
                                "where a.code = 'M1'")).scalar()
        cash = conn.execute(text("select c.amount from cash_balances c join accounts a on a.id = c.account_id "
                                 "where a.code = 'M1' and c.currency = 'HKD'")).scalar()
    assert (qty, cash) == (1200.0, -40_000.0)
    # daily notional: RICH fills 19,000,000 (approval-sized, but a fill is a fact), then a 1,500,000 order
    c.call({"op": "fill", "fill": _order("RICH", qty=190_000, price=100)})
    r = c.call({"op": "check", "order": _order("RICH", qty=15_000, price=100)})
    rules = {x["rule"]: x for x in r["reasons"]}
    assert rules["CL_DAY_NOTIONAL"]["observed"] == 20_500_000.0 and r["decision"] == "reject"
    # a restarted service carries today's totals on
    server.stop()
    again = CheckServer(st, "tcp://127.0.0.1:*").start()
    try:
        c2 = Client(again.endpoint or "")
        r = c2.call({"op": "check", "order": _order("RICH", qty=15_000, price=100)})
        assert {x["rule"] for x in r["reasons"]} >= {"CL_DAY_NOTIONAL"}
        c2.close()
    finally:
        again.stop()


def test_an_approved_limit_rule_is_in_force_without_restart(served) -> None:  # type: ignore[no-untyped-def]
    st, server, c = served
    assert c.call({"op": "check", "order": _order(qty=20, price=100)})["decision"] == "accept"
    before = server.limits_version
    rid = ps.propose_rule(st, RITA, "M1 small orders", "CL_ORD_QTY", {"account": "M1"}, 10, "desk", action="reject")
    changes.approve(st, SAM, rid)
    assert wait_for(lambda: c.call({"op": "ping"})["limits_version"] > before, 5)
    r = c.call({"op": "check", "order": _order(qty=21, price=100)})
    assert (r["decision"], r["reasons"][0]["rule"], r["reasons"][0]["threshold"]) == (
        "reject", "CL_ORD_QTY · M1 small orders", 10.0)
    # and an open margin call seen in the store stops margin buying within the refresh interval
    with st.begin() as conn:
        conn.execute(text("insert into margin_calls (account_id, opened_at, trigger_status, trigger_amount, deadline, "
                          "state, current_status, current_amount) values ((select id from accounts where code='M1'), "
                          "current_timestamp, 'call', 1, current_date, 'open', 'call', 1)"))
    assert wait_for(lambda: "open_margin_call" in [x["rule"] for x in c.call(
        {"op": "check", "order": _order(qty=5, price=100)})["reasons"]], 5)


def test_rule_validation_names_the_problem(sqlite_url: str) -> None:
    st = Store(sqlite_url)
    st.migrate()
    st.save_book(_book())
    auth.ensure_permissions(st)
    for code, subjects, threshold, message in (
            ("NOPE", {"account": "M1"}, 1, "limit code 'NOPE' does not exist"),
            ("CL_ORD_QTY", {"security": "A.HK"}, 1, "client limit: name the account only"),
            ("CL_ORD_QTY", {"account": "M9"}, 1, "account M9 does not exist"),
            ("CL_ORD_QTY", {"account": "M1"}, -1, "threshold is a number ≥ 0"),
            ("MULTI_DAY_QTY", {"account": "M1"}, 1, "name two or more subjects"),
            ("CO_DAY_NOTIONAL", {"account": "M1"}, 1, "company-wide limit"),
            ("CL_ORD_QTY", {}, 1, "name at least one subject")):
        with pytest.raises(changes.ChangeError, match=message):
            ps.propose_rule(st, RITA, "r", code, subjects, threshold, "x")
    rid = ps.propose_code(st, RITA, "CL_ORD_QTY", "tighten", threshold=500.0, action="reject")
    changes.approve(st, SAM, rid)
    assert [(c.threshold, c.action) for c in ps.limit_codes(st) if c.code == "CL_ORD_QTY"] == [(500.0, "reject")]


@pytest.mark.postgres
def test_postgres_release_only_through_four_eyes(pg_url: str) -> None:
    owner = Store(pg_url)
    owner.migrate()
    owner.save_book(_book())
    u = _seed_users(owner, "_" + uuid.uuid4().hex[:6])
    service = _as(pg_url, u["tom"].login)  # the service logs in as an application user (a trader)
    server = CheckServer(service, "tcp://127.0.0.1:*").start()
    c = Client(server.endpoint or "")
    try:
        r = c.call({"op": "check", "order": _order("RICH", qty=10_100, price=100)})
        assert r["decision"] == "approval"
        assert changes.get(owner, r["release_request"]).maker == u["tom"].login  # whoever is logged in
        assert c.call({"op": "fill", "fill": _order("RICH", qty=10, price=100)})["ok"]
        rita = _as(pg_url, u["rita"].login)
        with pytest.raises(DBAPIError, match="permission denied"), rita.engine.begin() as conn:
            conn.execute(text("update pretrade_decisions set released = true where id = :i"), {"i": r["decision_id"]})
        changes.approve(_as(pg_url, u["sam"].login), u["sam"], r["release_request"])
        assert [d.released for d in ps.decisions(owner) if d.id == r["decision_id"]] == [True]
    finally:
        c.close()
        server.stop()
        service.dispose()
        owner.dispose()


def test_a_burst_of_pipelined_requests_gets_every_answer_to_its_sender(served) -> None:  # type: ignore[no-untyped-def]
    """A DEALER client sends 40 checks before reading any answer (the service answers a burst together):
    each answer comes back once, under the envelope of its own request."""
    _, server, _ = served
    c = Client(server.endpoint or "", zmq.DEALER)
    try:
        qtys = [100 + i for i in range(40)]
        for i, q in enumerate(qtys):
            c.sock.send_multipart([str(i).encode(), b"", json.dumps(
                {"op": "check", "order": _order("RICH", qty=q, price=10.0)}).encode()])
        got = {}
        for _ in qtys:
            frames = c.sock.recv_multipart()
            got[int(frames[0])] = json.loads(frames[-1])
        assert sorted(got) == list(range(40))
        assert {i: r["notional"] for i, r in got.items()} == {i: q * 10.0 for i, q in enumerate(qtys)}
    finally:
        c.close()


def test_a_feed_resync_reloads_the_book_in_the_tuned_service(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The CLI's service (collector tuned) applies a resync: the book is read again from the store."""
    st, server, client = served
    monkeypatch.setattr("gc.freeze", lambda: None)  # the test process keeps its collector as it is
    server.tune_gc = True
    before = client.call({"op": "what_if", "order": _order("C1", qty=100, price=100)})["before"]
    assert before["cash"] == 50_000.0
    st.save_book(make_book([_acct("M1", -20_000, limit=100_000), _acct("RICH", 10_000_000, limit=0),
                            _acct("C1", 80_000, type_="cash", limit=0)], [("M1", "A.HK", 1000)]))
    server._swap.put(("resync", None))
    assert wait_for(lambda: client.call({"op": "what_if", "order": _order("C1", qty=100, price=100)})
                    ["before"]["cash"] == 80_000.0, 5)


def test_a_refused_batch_of_decisions_is_named_and_nothing_of_it_is_kept(served) -> None:  # type: ignore[no-untyped-def]
    from services.pretrade_orders import Order
    from services.store import StoreError

    st, server, _ = served
    good = server.engine.check(Order("RICH", "tom", "A.HK", "buy", 100.0, 100.0, "limit", "ok-1"), 1.8e9)
    bad = server.engine.check(Order("RICH", "tom", "A.HK", "buy", 200.0, 100.0, "limit", "bad-1"), 1.8e9)
    bad.decision = "maybe"  # not a decision the store knows
    before = len(ps.decisions(st))
    with pytest.raises(StoreError, match="refused 2 pre-trade decisions"):
        ps.save_decisions(st, [good, bad])
    assert len(ps.decisions(st)) == before
