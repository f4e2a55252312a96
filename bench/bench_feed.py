"""Benchmark ``feed.throughput``: item updates/s a `FeedSubscriber` validates and applies over tcp loopback.

A publisher in a separate process (so it does not share our GIL) binds a PUB socket on 127.0.0.1 and,
once the subscriber is connected, publishes 1,000-item ``px`` messages as fast as it can for ~2 s.
The items are encoded once; only the small header (seq, ts) is formatted per message, so the bytes
are exactly what `services.feed.wire.encode` produces. The consumer stands in for the engine: it
maps codes to indices with a dict and writes the prices into a numpy array.

The baseline is the naive loop: one blocking ``recv`` per message, ``json.loads``, per-item Python
validation and a per-item dict lookup and array write, without batching.

A PUB socket drops messages once a slow subscriber's queue reaches the high-water mark (1,000
messages each side by default), so "received < sent" means the backlog grew to the HWM and the rest
was dropped: the figure is then the subscriber's saturated rate. A third run paces the publisher at
the 500,000 updates/s target and checks that everything sent was received (no backlog). On a 2-core
machine the unpaced publisher spins a core of its own, so the saturated figure is a floor.
Run: ``python bench/bench_feed.py``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.feed.subscriber import FeedStats, FeedSubscriber  # noqa: E402
from services.feed.wire import Message  # noqa: E402

NAMES = ("feed.throughput",)
N_SEC = 5_000
ITEMS_PER_MESSAGE = 1_000
SECONDS = 2.0
TARGET = 500_000.0

# The publisher process. Protocol on its stdin/stdout: it prints the endpoint, sends heartbeats until
# it reads "go", publishes for SECONDS (paced to a rate, or as fast as it can with rate 0), prints a
# JSON line of what it sent, then waits for "quit".
_PUBLISHER = r"""
import itertools, json, random, select, sys, time
import zmq
from services.feed.wire import encode

n_sec, n_items, seconds, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
interval = n_items / rate if rate > 0 else 0.0  # seconds per message; 0 = as fast as possible
codes = [f"{i:05d}.HK" for i in range(1, n_sec + 1)]
rng = random.Random(1)
bodies = []
for _ in range(40):
    items = [[c, round(rng.uniform(1.0, 500.0), 3)] for c in rng.sample(codes, n_items)]
    frames = encode("px", "bench", 0, items, ts=1.0)
    head, body = frames[1].split(b',"items":', 1)
    assert head == b'{"v":1,"epoch":"bench","seq":0,"ts":1.0'
    bodies.append(b',"items":' + body)

ctx = zmq.Context()
sock = ctx.socket(zmq.PUB)
port = sock.bind_to_random_port("tcp://127.0.0.1")
print(f"tcp://127.0.0.1:{port}", flush=True)
seq = 0
while not select.select([sys.stdin], [], [], 0.01)[0]:  # heartbeats until "go"
    sock.send_multipart(encode("hb", "bench", seq, []))
    seq += 1
sys.stdin.readline()
sent = 0
start = time.perf_counter()
end = start + seconds
send = sock.send_multipart
for body in itertools.cycle(bodies):
    ts = repr(time.time()).encode()
    send([b"px", b'{"v":1,"epoch":"bench","seq":' + str(seq).encode() + b',"ts":' + ts + body])
    seq += 1
    sent += 1
    if interval:
        delay = start + sent * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if time.perf_counter() >= end:
            break
    elif not sent % 64 and time.perf_counter() >= end:
        break
elapsed = time.perf_counter() - start
print(json.dumps({"sent_messages": sent, "sent_updates": sent * n_items, "elapsed": elapsed}), flush=True)
sys.stdin.readline()
sock.close(linger=0)
ctx.term()
"""


class _Publisher:
    """The publisher process, driven over its stdin/stdout."""

    def __init__(self, rate: float = 0.0) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PUBLISHER, str(N_SEC), str(ITEMS_PER_MESSAGE), str(SECONDS), str(rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint.startswith("tcp://"):
            self.close()
            raise RuntimeError("the publisher process did not start")

    def blast(self) -> dict[str, Any]:
        """Publish for SECONDS; return what was sent."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


class _Engine:
    """Stand-in for the engine: applies px messages to a price array, a whole message at a time."""

    def __init__(self) -> None:
        self.index = {f"{i:05d}.HK": i - 1 for i in range(1, N_SEC + 1)}
        self.prices = np.zeros(N_SEC)
        self.updates = 0
        self.first: float | None = None
        self.last = 0.0

    def on_batch(self, messages: list[Message]) -> None:
        index, prices = self.index, self.prices
        lookup = index.__getitem__
        n = 0
        for m in messages:
            if m.topic != "px" or not m.items or m.columns is None:
                continue
            codes, px = m.columns
            try:
                idx = np.fromiter(map(lookup, codes), np.intp, len(codes))
            except KeyError:  # an unknown code: the real consumer reports it through FeedStats.drop
                known = np.array([c in index for c in codes])
                idx = np.fromiter((index[c] for c in codes if c in index), np.intp)
                px = px[known]
            prices[idx] = px
            n += len(idx)
        if n:
            now = time.perf_counter()
            if self.first is None:
                self.first = now
            self.last = now
            self.updates += n


def _wait_quiet(counter: Any, quiet: float = 0.3, timeout: float = 30.0) -> None:
    """Wait until ``counter()`` has not changed for ``quiet`` seconds (the backlog is drained)."""
    deadline = time.monotonic() + timeout
    last, since = counter(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now_value = counter()
        if now_value != last:
            last, since = now_value, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def _measure_subscriber(rate: float = 0.0) -> dict[str, Any]:
    """The FeedSubscriber against a publisher at ``rate`` updates/s (0: as fast as it can)."""
    pub = _Publisher(rate)
    engine = _Engine()
    stats = FeedStats()
    sub = FeedSubscriber(pub.endpoint, engine.on_batch, lambda reason: None, stats=stats, poll_ms=20)
    sub.start()
    try:
        deadline = time.monotonic() + 10
        while stats.messages == 0 and time.monotonic() < deadline:  # slow joiner
            time.sleep(0.01)
        sent = pub.blast()
        _wait_quiet(lambda: engine.updates)
    finally:
        sub.stop()
        sub.join(timeout=5)
        pub.close()
    if sub.is_alive():
        raise RuntimeError("the subscriber thread did not stop")
    span = engine.last - (engine.first or engine.last)
    return {"rate": engine.updates / span if span > 0 else 0.0, "received": engine.updates, **sent,
            "gaps": stats.gaps, "dropped": stats.dropped}


def _measure_naive() -> dict[str, Any]:
    """The baseline loop: a message at a time, per-item validation and update."""
    pub = _Publisher()
    index = {f"{i:05d}.HK": i - 1 for i in range(1, N_SEC + 1)}
    prices = np.zeros(N_SEC)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(pub.endpoint)
    received = 0
    first: float | None = None
    last = 0.0
    try:
        sock.recv_multipart()  # slow joiner: the first heartbeat
        result: dict[str, Any] = {}
        blast = threading.Thread(target=lambda: result.update(pub.blast()), daemon=True)
        blast.start()
        idle_since = time.monotonic()
        while True:
            if not sock.poll(20):
                if not blast.is_alive() and time.monotonic() - idle_since > 0.3:
                    break
                continue
            idle_since = time.monotonic()
            topic, payload = sock.recv_multipart()
            doc = json.loads(payload)
            if topic != b"px":
                continue
            for code, price in doc["items"]:
                if not isinstance(code, str) or not isinstance(price, (int, float)):
                    raise ValueError("bad item")
                if not (math.isfinite(price) and price > 0):
                    raise ValueError("bad price")
                prices[index[code]] = price
                received += 1
            last = time.perf_counter()
            if first is None:
                first = last
        blast.join(timeout=5)
    finally:
        sock.close(linger=0)
        ctx.term()
        pub.close()
    span = last - (first or last)
    return {"rate": received / span if span > 0 else 0.0, "received": received, **result}


def run(selected: Iterable[str] | None = None) -> list[dict]:
    """Measure ``feed.throughput`` against the naive baseline and return its row.

    ``selected`` (names from `NAMES`, as `bench/run.py` passes them) defaults to all. The human
    summary goes to stderr: stdout is left to the runner's one-JSON-object-per-line output.
    """
    if selected is not None and "feed.throughput" not in selected:
        return []
    fast = _measure_subscriber()
    naive = _measure_naive()
    paced = _measure_subscriber(TARGET)
    value, baseline = fast["rate"], naive["rate"]
    kept_up = fast["received"] >= fast["sent_updates"]
    result = {
        "name": "feed.throughput",
        "value": round(value),
        "unit": "updates/s",
        "baseline": round(baseline),
        "ratio": round(value / baseline, 2) if baseline else math.inf,
        "target": TARGET,
        "meets_target": value >= TARGET,
        "sent_updates": fast["sent_updates"],
        "received_updates": fast["received"],
        "publisher_updates_per_s": round(fast["sent_updates"] / fast["elapsed"]),
        "backlog_grew": not kept_up,
        "note": ("received == sent: the subscriber kept up, no backlog" if kept_up else
                 f"the publisher outran the subscriber: the backlog grew to the HWM and "
                 f"{fast['sent_updates'] - fast['received']:,} updates were dropped by the PUB socket "
                 f"({fast['gaps']} gaps seen); the value is the subscriber's saturated rate"),
        "baseline_received_updates": naive["received"],
        "at_target": {"sent_updates": paced["sent_updates"], "received_updates": paced["received"],
                      "publisher_updates_per_s": round(paced["sent_updates"] / paced["elapsed"]),
                      "kept_up": paced["received"] >= paced["sent_updates"]},
    }
    say = functools.partial(print, file=sys.stderr)
    say(f"feed.throughput: {result['value']:,} updates/s (baseline {result['baseline']:,}, "
          f"ratio {result['ratio']}x, target {TARGET:,.0f}: {'met' if result['meets_target'] else 'NOT met'})")
    say(f"  publisher sent {result['sent_updates']:,} updates at {result['publisher_updates_per_s']:,}/s; "
          f"received {result['received_updates']:,}. {result['note']}")
    at = result["at_target"]
    say(f"  paced at {at['publisher_updates_per_s']:,} updates/s: sent {at['sent_updates']:,}, received "
          f"{at['received_updates']:,}: {'kept up, no backlog' if at['kept_up'] else 'FELL BEHIND'}")
    return [result]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
