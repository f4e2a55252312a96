"""The ZeroMQ feed layer: wire format, subscriber and simulator over real tcp sockets on 127.0.0.1.

No mocks and no fixed sleeps: every wait polls a condition against a deadline. PUB/SUB drops what is
published before a subscription reaches the publisher (the "slow joiner"), so tests wait for the
subscriber to receive something before counting. Every thread is stopped and joined at the end; a
thread left running fails the test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import zmq

from models.book import Book, empty_book
from services.feed.simulator import MALFORMED_KINDS, UNKNOWN_CODE, FeedSimulator
from services.feed.subscriber import FeedStats, FeedSubscriber
from services.feed.wire import MAX_PAYLOAD, TOPICS, Message, WireError, decode, encode

LOCAL = "tcp://127.0.0.1:0"


# ----------------------------------------------------------------- helpers
def make_book(n_sec: int = 200, n_acct: int = 20) -> Book:
    """A small book: securities with prices and lots, accounts holding one position each."""
    book = empty_book("HKD")
    rng = np.random.default_rng(7)
    book.sec_codes = [f"{i:05d}.HK" for i in range(1, n_sec + 1)]
    book.sec_names = [f"Security {i}" for i in range(n_sec)]
    book.price = np.round(rng.uniform(1.0, 300.0, n_sec), 3)
    book.lot_size = np.full(n_sec, 100, np.int32)
    book.acct_codes = [f"C{i:04d}-M" for i in range(n_acct)]
    book.cash = np.zeros((n_acct, 1))
    book.pos_acct = np.arange(n_acct, dtype=np.int32)
    book.pos_sec = np.arange(n_acct, dtype=np.int32) % n_sec
    book.pos_qty = np.full(n_acct, 2000.0)
    return book


def wait_until(condition: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


class Consumer:
    """Stands in for the engine: applies px to a price array, records resyncs and the call order."""

    def __init__(self, book: Book, stats: FeedStats) -> None:
        self.index = book.sec_index
        self.accounts = book.acct_index
        self.prices = np.full(book.n_sec, np.nan)
        self.stats = stats
        self.lock = threading.Lock()
        self.events: list[tuple[str, object]] = []
        self.messages: list[Message] = []
        self.px_updates = 0

    def on_batch(self, messages: list[Message]) -> None:
        """Apply the batch, then record it (so a test seeing the record also sees the prices)."""
        for m in messages:
            if m.topic == "px":
                for code, price in m.items:
                    i = self.index.get(code)
                    if i is None:
                        self.stats.drop(f"unknown security {code}")
                        continue
                    self.prices[i] = price
                    self.px_updates += 1
            elif m.topic == "pos":
                for account, code, _qty in m.items:
                    if account not in self.accounts or code not in self.index:
                        self.stats.drop(f"unknown position {account} {code}")
        with self.lock:
            self.events.append(("batch", [m.seq for m in messages]))
            self.messages.extend(messages)

    def on_resync(self, reason: str) -> None:
        with self.lock:
            self.events.append(("resync", reason))

    def resyncs(self) -> list[str]:
        with self.lock:
            return [str(r) for kind, r in self.events if kind == "resync"]

    def topics(self) -> set[str]:
        with self.lock:
            return {m.topic for m in self.messages}


class Threads:
    """Starts simulators and subscribers and guarantees they are stopped and joined."""

    def __init__(self) -> None:
        self.started: list[tuple[threading.Thread, Callable[[], None]]] = []

    def simulator(self, sim: FeedSimulator) -> FeedSimulator:
        t = threading.Thread(target=sim.run, name="FeedSimulator", daemon=True)
        t.start()
        self.started.append((t, sim.stop))
        assert sim.ready.wait(5), "simulator did not bind"
        assert sim.error is None and sim.endpoint is not None
        return sim

    def stop_simulator(self, sim: FeedSimulator, timeout: float = 3.0) -> float:
        """Stop ``sim``, join its thread and return how long that took."""
        thread = next(t for t, stop in self.started if stop == sim.stop)
        started = time.monotonic()
        sim.stop()
        thread.join(timeout)
        assert not thread.is_alive(), "the simulator did not stop"
        return time.monotonic() - started

    def subscriber(self, sub: FeedSubscriber) -> FeedSubscriber:
        sub.start()
        self.started.append((sub, sub.stop))
        return sub

    def close(self) -> list[str]:
        for _, stop in self.started:
            stop()
        for t, _ in self.started:
            t.join(timeout=5)
        return [t.name for t, _ in self.started if t.is_alive()]


@pytest.fixture
def threads() -> Iterator[Threads]:
    before = set(threading.enumerate())
    registry = Threads()
    yield registry
    alive = registry.close()
    assert not alive, f"threads left running: {alive}"
    leaked = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


def start_feed(threads: Threads, book: Book, *, stale_after: float = 5.0, **sim_kwargs: object,
               ) -> tuple[FeedSimulator, FeedSubscriber, Consumer]:
    sim_kwargs.setdefault("rate", 5000.0)
    sim_kwargs.setdefault("batch", 100)
    sim = threads.simulator(FeedSimulator(book, LOCAL, **sim_kwargs))  # type: ignore[arg-type]
    stats = FeedStats()
    consumer = Consumer(book, stats)
    assert sim.endpoint is not None
    sub = threads.subscriber(FeedSubscriber(sim.endpoint, consumer.on_batch, consumer.on_resync, stats=stats,
                                            stale_after=stale_after, poll_ms=20))
    wait_until(lambda: stats.messages > 0, what="the first message (slow joiner)")
    return sim, sub, consumer


def payload(**overrides: object) -> bytes:
    doc: dict[str, object] = {"v": 1, "epoch": "e1", "seq": 7, "ts": 1.5, "items": [["00001.HK", 10.0]]}
    doc.update(overrides)
    return json.dumps(doc).encode()


# ----------------------------------------------------------------- wire format
def test_encode_decode_round_trip_for_every_topic() -> None:
    samples = {
        "px": [["00001.HK", 61.25], ["00005.HK", 12]],
        "pos": [["C0001-M", "00001.HK", -4000]],
        "cash": [["C0001-M", "HKD", -1250000.5]],
        "fx": [["USD", 7.8125]],
        "hb": [],
    }
    assert set(samples) == set(TOPICS)
    for seq, (topic, items) in enumerate(samples.items()):
        frames = encode(topic, "run-1", seq, items, ts=1_700_000_000.25)
        assert frames[0] == topic.encode()
        assert b" " not in frames[1], "compact separators"
        assert json.loads(frames[1]) == {"v": 1, "epoch": "run-1", "seq": seq, "ts": 1_700_000_000.25,
                                         "items": items}
        assert decode(frames) == Message(topic, "run-1", seq, 1_700_000_000.25, items)
    assert abs(decode(encode("hb", "e", 0, [])).ts - time.time()) < 5, "ts defaults to now"


def test_encode_refuses_nan_and_unknown_topics() -> None:
    with pytest.raises(ValueError):
        encode("px", "e", 0, [["00001.HK", float("nan")]])
    with pytest.raises(WireError, match="unknown topic 'zz'"):
        encode("zz", "e", 0, [])


@pytest.mark.parametrize(("frames", "reason"), [
    ([b"px"], "expected 2 frames (topic, payload), got 1"),
    ([b"px", payload(), b"x"], "expected 2 frames (topic, payload), got 3"),
    ([b"zz", payload()], "unknown topic 'zz'"),
    ([b"px", b"x" * (MAX_PAYLOAD + 1)], f"payload {MAX_PAYLOAD + 1} bytes exceeds {MAX_PAYLOAD}"),
    ([b"px", b""], "bad JSON: Expecting value at 1:1"),
    ([b"px", b'{"v":1,'], "bad JSON"),
    ([b"px", b"\xff\xfe\x00garbage"], "bad JSON: payload is not UTF-8"),
    ([b"px", b"[" * 100_000], "bad JSON"),
    ([b"px", payload().replace(b"10.0", b"NaN")], "non-finite number NaN"),
    ([b"px", payload().replace(b"10.0", b"-Infinity")], "non-finite number -Infinity"),
    ([b"px", payload().replace(b"10.0", b"1e400")], "px item 0: price must be finite, got inf"),
    ([b"px", b"[1, 2]"], "payload must be a JSON object, got array"),
    ([b"px", payload(v=2)], "unsupported version v=2"),
    ([b"px", payload(epoch="")], "epoch must be a non-empty string"),
    ([b"px", payload(seq="7")], 'seq must be an integer, got "7"'),
    ([b"px", payload(seq=True)], "seq must be an integer, got true"),
    ([b"px", payload(seq=1.0)], "seq must be an integer, got 1.0"),
    ([b"px", payload(seq=-1)], "seq must be ≥ 0, got -1"),
    ([b"px", payload(ts="now")], 'ts must be a finite number, got "now"'),
    ([b"px", payload(items={"a": 1})], "items must be a list"),
    ([b"px", payload(items=[["A", 1], ["B", 2], ["C", 3], ["D", -1.5]])], "px item 3: price must be > 0, got -1.5"),
    ([b"px", payload(items=[["A", 0]])], "px item 0: price must be > 0, got 0"),
    ([b"px", payload(items=[["A", "1.5"]])], 'px item 0: price must be a number, got "1.5"'),
    ([b"px", payload(items=[["A", True]])], "px item 0: price must be a number, got true"),
    ([b"px", payload(items=[[5, 1.5]])], "px item 0: code must be a string, got 5"),
    ([b"px", payload(items=[["A", 1.5, 2]])], "px item 0: expected 2 values [code, price], got 3"),
    ([b"px", payload(items=[["A", 1.5], "ab"])], "px item 1: expected a list [code, price], got string"),
    ([b"pos", payload(items=[["C1", "00001.HK", "many"]])], 'pos item 0: qty must be a number, got "many"'),
    ([b"pos", payload(items=[["C1", 1, 100]])], "pos item 0: code must be a string, got 1"),
    ([b"cash", payload(items=[["C1", "HKD", 2.5]]).replace(b"2.5", b"-1e999")],
     "cash item 0: amount must be finite, got -inf"),
    ([b"fx", payload(items=[["USD", 0.0]])], "fx item 0: rate must be > 0, got 0.0"),
    ([b"hb", payload(items=None)], "items must be a list, got null"),
])
def test_decode_rejects_with_a_reason_naming_the_problem(frames: list[bytes], reason: str) -> None:
    with pytest.raises(WireError) as err:
        decode(frames)
    assert reason in str(err.value)


def test_decode_accepts_negative_quantities_and_cash_and_empty_items() -> None:
    msg = decode([b"pos", payload(items=[["C1", "00001.HK", -300], ["C2", "00002.HK", 0]])])
    assert msg.items[0][2] == -300
    assert decode([b"cash", payload(items=[["C1", "HKD", -5.5]])]).items == [["C1", "HKD", -5.5]]
    assert decode([b"px", payload(items=[])]).items == []


def test_decode_names_the_bad_item_in_a_large_message() -> None:
    items: list[list[object]] = [[f"{i:05d}.HK", 1.0 + i] for i in range(1000)]
    assert len(decode(encode("px", "e", 0, items)).items) == 1000
    items[777] = ["00777.HK", -2.0]
    with pytest.raises(WireError, match=r"^px item 777: price must be > 0, got -2.0$"):
        decode(encode("px", "e", 0, items))


# ----------------------------------------------------------------- simulator → subscriber over tcp
def test_simulated_prices_reach_on_batch(threads: Threads) -> None:
    book = make_book()
    persisted: list[tuple[np.ndarray, np.ndarray]] = []
    sim, sub, consumer = start_feed(threads, book, pos_every=0.1, cash_every=0.1,
                                    on_prices=lambda idx, px: persisted.append((idx, px)))
    stats = sub.stats
    wait_until(lambda: stats.messages >= 30 and {"px", "pos", "cash", "hb"} <= consumer.topics(),
               what="px, pos, cash and hb messages")
    assert stats.rates()[1] > 0
    threads.stop_simulator(sim)
    wait_until(lambda: consumer.messages[-1].seq == sim.seq - 1, what="the last message reaching on_batch")

    assert consumer.events[0] == ("resync", "initial snapshot"), "a snapshot before any message is applied"
    assert consumer.resyncs() == ["initial snapshot"]
    assert stats.gaps == 0 and stats.dropped == 0, list(stats.drop_reasons)
    # Every security ticked again after the subscriber joined, so the consumer saw the latest prices.
    np.testing.assert_array_equal(consumer.prices, book.price)
    assert stats.updates == sum(len(m.items) for m in consumer.messages) >= consumer.px_updates > 0
    snap = stats.snapshot()
    assert snap["state"] == "live" and snap["epoch"] == sim.epoch and snap["messages"] == stats.messages
    # on_prices got the changed securities, and the last call holds the final prices.
    assert persisted, "on_prices was called"
    latest = np.full(book.n_sec, np.nan)
    for idx, px in persisted:
        latest[idx] = px
    ticked = ~np.isnan(latest)
    np.testing.assert_array_equal(latest[ticked], book.price[ticked])


def test_gap_injection_triggers_resync(threads: Threads) -> None:
    _, sub, consumer = start_feed(threads, make_book(), gap_every=0.2)
    wait_until(lambda: any(r.startswith("gap: expected") for r in consumer.resyncs()), what="a gap resync")
    gap = next(r for r in consumer.resyncs() if r.startswith("gap"))
    expected, got = (int(x) for x in gap.removeprefix("gap: expected ").split(" got "))
    assert got == expected + 1, gap
    assert sub.stats.gaps >= 1 and sub.stats.resyncs >= 2  # the initial snapshot plus the gap


def test_new_epoch_triggers_resync(threads: Threads) -> None:
    sim, sub, consumer = start_feed(threads, make_book(), epoch_every=0.3)
    first_epoch = sub.stats.epoch
    wait_until(lambda: any(r.startswith("new epoch") for r in consumer.resyncs()), what="a new-epoch resync")
    reason = next(r for r in consumer.resyncs() if r.startswith("new epoch"))
    assert f"(was {first_epoch})" in reason
    wait_until(lambda: sub.stats.epoch != first_epoch, what="the new epoch in the stats")
    assert sub.stats.gaps == 0, "a new epoch restarting seq at 0 is not a gap"


def test_resync_is_called_before_the_message_that_needs_it(threads: Threads) -> None:
    sim, sub, consumer = start_feed(threads, make_book())
    sim.inject_gap()
    wait_until(lambda: sub.stats.gaps == 1, what="the injected gap")
    sim.new_epoch()
    wait_until(lambda: any(r.startswith("new epoch") for r in consumer.resyncs()), what="the new epoch")
    wait_until(lambda: consumer.events[-1][0] == "batch", what="a batch after the new epoch")
    with consumer.lock:
        events = list(consumer.events)

    def seqs(part: list[tuple[str, object]]) -> list[int]:
        return [s for kind, v in part if kind == "batch" for s in v]  # type: ignore[attr-defined]

    gap_at = next(i for i, (k, v) in enumerate(events) if k == "resync" and str(v).startswith("gap"))
    epoch_at = next(i for i, (k, v) in enumerate(events) if k == "resync" and str(v).startswith("new epoch"))
    expected, got = (int(x) for x in str(events[gap_at][1]).removeprefix("gap: expected ").split(" got "))
    assert seqs(events[:gap_at])[-1] == expected - 1, "messages before the gap are delivered before on_resync"
    assert seqs(events[gap_at + 1:epoch_at])[0] == got, "the message after the gap comes after on_resync"
    between = seqs(events[gap_at + 1:epoch_at])
    assert between == list(range(got, got + len(between))), "in order, no duplicates"
    assert seqs(events[epoch_at + 1:])[0] == 0, "a new epoch starts at seq 0"


def test_pause_makes_the_feed_stale_then_live_again(threads: Threads) -> None:
    sim, sub, _ = start_feed(threads, make_book(), stale_after=0.5)
    assert sub.stats.state == "live"
    sim.pause(1.0)
    wait_until(lambda: sub.stats.state == "stale", timeout=3, what="state stale")
    wait_until(lambda: sub.stats.state == "live", timeout=3, what="state live again")


def test_malformed_messages_are_dropped_and_the_feed_carries_on(threads: Threads) -> None:
    sim, sub, consumer = start_feed(threads, make_book(), malformed_every=0.03)
    stats = sub.stats
    expected = ["bad JSON", "non-finite number NaN", "price must be > 0, got -1.5", "seq must be an integer",
                f"exceeds {MAX_PAYLOAD}", "expected 2 frames", f"unknown security {UNKNOWN_CODE}"]
    assert len(expected) == len(MALFORMED_KINDS)

    def all_seen() -> bool:
        reasons = [r for _, r in list(stats.drop_reasons)]
        return all(any(e in r for r in reasons) for e in expected)

    wait_until(all_seen, what="a drop for every malformed kind")
    assert stats.dropped >= len(expected)
    sim.set_malformed_every(0)
    delivered = stats.messages
    wait_until(lambda: stats.messages > delivered + 5, what="messages after the malformed ones")
    assert sub.is_alive() and stats.state == "live"
    assert stats.gaps == 0, "malformed messages the wire rejects do not use up a seq number"


def test_garbage_duplicates_and_callback_errors_never_stop_the_subscriber(threads: Threads) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    try:
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        stats = FeedStats()
        received: list[Message] = []

        def on_batch(messages: list[Message]) -> None:
            received.extend(messages)
            if any(m.items == [["BOOM", 1.0]] for m in messages):
                raise RuntimeError("consumer exploded")

        def on_resync(reason: str) -> None:
            if reason.startswith("gap"):
                raise KeyError("snapshot failed")

        sub = threads.subscriber(FeedSubscriber(f"tcp://127.0.0.1:{port}", on_batch, on_resync, stats=stats,
                                                poll_ms=20))
        seq = 0
        while stats.messages == 0:  # slow joiner: heartbeat until the subscription is through
            pub.send_multipart(encode("hb", "raw", seq, []))
            seq += 1
            time.sleep(0.01)
        last = seq - 1
        wait_until(lambda: stats.last_seq == last, what="the heartbeats")
        for frames in ([b"px"], [b"px", b"\x00\xff\xfe"], [b"\x89PNG\r\n", b"\x00" * 64], [b"a", b"b", b"c", b"d"],
                       [b"px", b"[]"], [b"px", b"{}"], encode("hb", "raw", last, []),  # a duplicate
                       encode("px", "raw", last + 1, [["BOOM", 1.0]]),  # on_batch raises
                       encode("px", "raw", last + 3, [["00001.HK", 2.0]]),  # a gap; on_resync raises
                       encode("px", "raw", last + 4, [["00001.HK", 3.0]])):
            pub.send_multipart(frames)
        wait_until(lambda: stats.last_seq == last + 4, what="the message after the garbage")
        reasons = " | ".join(r for _, r in stats.drop_reasons)
        for part in ("expected 2 frames", "bad JSON", "payload must be a JSON object", "unsupported version v=null",
                     f"duplicate seq {last} in epoch raw (last {last})", "on_batch raised RuntimeError: consumer exploded",
                     "on_resync raised KeyError"):
            assert part in reasons
        assert stats.gaps == 1 and sub.is_alive()
        assert [m.seq for m in received if m.topic == "px"] == [last + 1, last + 3, last + 4]
    finally:
        pub.close(linger=0)
        ctx.term()


def test_stop_joins_promptly_and_silence_is_stale(threads: Threads) -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as pub:  # a publisher that never sends
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        sub = threads.subscriber(FeedSubscriber(f"tcp://127.0.0.1:{port}", lambda m: None, lambda r: None,
                                                stale_after=0.2, poll_ms=50))
        assert sub.stats.state == "connecting"
        wait_until(lambda: sub.stats.state == "stale", timeout=2, what="stale without any message")
        started = time.monotonic()
        sub.stop()
        sub.join(timeout=2)
        assert not sub.is_alive() and time.monotonic() - started < 0.5
        assert sub.stats.state == "stopped" and sub.error is None
        pub.close(linger=0)


def test_simulator_stops_promptly(threads: Threads) -> None:
    book = make_book()
    before = book.price.copy()
    sim, sub, _ = start_feed(threads, book, rate=0, batch=50)  # rate 0: as fast as possible
    wait_until(lambda: sub.stats.updates > 2000, what="a few thousand updates")
    assert threads.stop_simulator(sim) < 1.5
    assert np.all(book.price > 0) and not np.array_equal(book.price, before), "book.price is walked in place"


def test_subscriber_reports_a_bad_address_instead_of_dying_silently(threads: Threads) -> None:
    sub = threads.subscriber(FeedSubscriber("nonsense://nowhere", lambda m: None, lambda r: None, poll_ms=10))
    sub.join(timeout=2)
    assert not sub.is_alive() and sub.error is not None
    assert sub.stats.state == "stopped" and "subscriber stopped" in sub.stats.drop_reasons[-1][1]
