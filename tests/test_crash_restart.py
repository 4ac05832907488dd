"""kill -9 the live trader at seeded random points and restart it: the store and the exchange agree
afterwards (every client id on the server is in the store once, with the server's state and filled
quantity; no duplicate on the server), and every open position has its stop.

The trader runs as a subprocess (this file is its entry point, see ``child``) with a real ccxt
object pointed at the loopback exchange that runs in the test process; the child's clock moves the
exchange on by one bar per poll through the exchange's HTTP control API, so nothing sleeps.

A kill point is a request of the child's conversation with the exchange, drawn from the seed: the
server holds the n-th request after k bars (unprocessed, or processed with the answer lost) and the
test kills the child while it waits for it. The run is then the same on any machine under any
load. (It used to sleep a random 0.3-2 s or 0-0.15 s of wall time before the kill while the child
replayed bars as fast as the CPU allowed, so where the kills landed, and how many found a position
open, depended on the load: ``holding >= 2`` failed on a loaded machine.)"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from exchange_sim import venue_exchange_server
from mlcoord.live.records import OrderState
from mlcoord.live.runner import load_live_settings
from mlcoord.live.store import Store
from live_helpers import live_config
from test_live_trader import stops_cover_positions

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261124
_SERVER_STATE = {"NEW": OrderState.OPEN, "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED,
                 "FILLED": OrderState.FILLED, "CANCELED": OrderState.CANCELLED, "EXPIRED": OrderState.EXPIRED}


def _spawn(url: str, config: Path, cycles: int, venue: str = "binance") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("engine", "plugins", "tests"))}
    return subprocess.Popen([sys.executable, str(Path(__file__)), url, str(config), str(cycles), venue], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(config.parent))


def kill_points(seed: int, kills: int | None = None, holding: bool = False) -> list[dict]:
    """Where each child is killed: a quarter of them in start-up (reconcile, setup, history: one
    of its first 10 requests), the rest a few bars into the loop; about half before the exchange
    processed the request, the others after it did, with the answer never delivered. ``kills``:
    how many (default: 12 to 16, drawn from the seed). ``holding``: every other loop kill counts
    only requests made while a position is open (a short run then still kills next to a position)."""
    rng = random.Random(seed)
    drawn = rng.randint(12, 16)
    kills = drawn if kills is None else kills
    startup = set(rng.sample(range(kills), kills // 4))
    points = []
    for k in range(kills):
        if k in startup:
            point = {"after_advances": 0, "nth": rng.randint(1, 10)}
        else:
            point = {"after_advances": rng.randint(1, 16), "nth": rng.randint(1, 12)}
            if holding and k % 2:
                point["holding"] = True
        points.append({**point, "processed": rng.random() < 0.5})
    return points


def _all_orders(store):
    from sqlalchemy import select

    from mlcoord.live import rows
    from mlcoord.live.schema import orders
    with store.engine.connect() as conn:
        return [rows.order_record(r) for r in conn.execute(select(orders)).mappings().all()]


#: (exchange, kills): Bybit's and OKX's runs take fewer kills (half of its loop kills next to a position):
#: the same code paths at about a third of the CI time. ``MLCOORD_FULL_RUNS=1`` runs the issue's
#: full version instead: 20 kills on each exchange (a script's run, not CI's)
FULL_RUNS = os.environ.get("MLCOORD_FULL_RUNS") == "1"
VENUES = ([("binance", 20), ("bybit", 20), ("okx", 20)] if FULL_RUNS
          else [("binance", None), ("bybit", 5), ("okx", 5)])


@pytest.mark.parametrize("seed", [SEED])
@pytest.mark.parametrize(("venue", "kills"), VENUES, ids=[v for v, _ in VENUES])
def test_kill_9_at_random_points_and_restart(tmp_path, seed, venue, kills):
    points = kill_points(seed, kills, holding=kills is not None)
    kills = len(points)
    config = live_config(tmp_path)
    with venue_exchange_server(venue, seed=seed) as server:
        def position_open() -> bool:
            return any(p.amt for p in server.state.futures.positions.values())

        server.faults.partial_fill(fraction=0.5, probability=0.1)
        server.faults.lose_response(mode="drop", probability=0.03)
        during_startup = holding = 0
        start_ms = server.now_ms
        held_requests = []
        for point in points:
            held = server.hold_request(**{k: v for k, v in point.items() if k != "holding"},
                                       when=position_open if point.get("holding") else None)
            child = _spawn(server.url, config, 10_000, venue)
            deadline = time.monotonic() + 300
            while not held.reached.wait(0.05):       # an event wait: it returns as soon as the request is held
                assert child.poll() is None, child.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, f"the child never made request {point}"
            during_startup += point["after_advances"] == 0
            holding += position_open()
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stderr.close()
            held.release()
            held_requests.append(held.request)
        final = _spawn(server.url, config, 40, venue)
        _, err = final.communicate(timeout=300)     # 40 cycles: generous, for a loaded machine
        assert final.returncode == 0, err.decode()[-3000:]
        server.faults.clear()
        account = server.state.futures
        settings, options = load_live_settings(config)
        store = Store.open(options.store)
        ours = {r.client_order_id: r for r in _all_orders(store)}
        regular = Counter(o.client_id for o in account.orders.values())
        algos = Counter(o.client_id for o in account.algos.values())
        assert max(regular.values()) == 1 and max(algos.values()) == 1     # no duplicate on the server
        on_server = set(regular) | set(algos)
        placed = {cid for cid, r in ours.items() if r.state != OrderState.REJECTED}
        assert on_server == placed, on_server ^ placed
        orders = {o.client_id: o for o in account.orders.values()}
        algo_orders = {o.client_id: o for o in account.algos.values()}
        for cid in on_server:
            r = ours[cid]
            o = orders.get(cid)               # a triggered stop's child order carries its fills
            if o is not None:
                want = _SERVER_STATE[o.status]
                if venue == "bybit" and want == OrderState.EXPIRED:
                    want = OrderState.CANCELLED    # Bybit derivatives say "Cancelled" for both
                assert r.state == want or (want == OrderState.EXPIRED and r.state == OrderState.PARTIALLY_FILLED
                                           and o.executed > 0), (cid, r.order.tag, o.status, r.state)
                assert abs(float(o.executed) - r.filled_quantity) < 1e-9, (cid, r.order.tag)
                assert abs(sum(f.fill.quantity for f in store.fills(cid)) - float(o.executed)) < 1e-9, cid
            else:
                a = algo_orders[cid]
                assert r.state == {"NEW": OrderState.OPEN, "CANCELED": OrderState.CANCELLED,
                                   "EXPIRED": OrderState.EXPIRED}[a.status], (cid, a.status, r.state)
                assert r.filled_quantity == 0
        assert not [r for r in ours.values() if r.state == OrderState.PENDING]
        assert not stops_cover_positions(account)
        active = Counter(p.symbol for p in store.active_plans())
        assert all(n == 1 for n in active.values())
        tags = Counter(r.order.tag.split(":")[0] for r in ours.values())
        assert tags["entry"] >= 5 and tags["stop"] >= 5 and holding >= 2, (tags, holding)
        print(f"kills={kills} (start-up {during_startup}, holding a position {holding}) orders={len(ours)} "
              f"tags={dict(tags)} bars={(server.now_ms - start_ms) // 3_600_000} faults={len(server.faults.log)} "
              f"held={Counter(path for _, path in held_requests).most_common()}")
        store.close()


# -- the child process -------------------------------------------------------------------------------

class _Where:
    """What :func:`exchange_sim.venue_client` needs of a server in another process."""

    def __init__(self, url: str, venue: str = "binance"):
        from types import SimpleNamespace

        from exchange_sim import API_KEY, SECRET
        self.url, self.api_key, self.secret = url, API_KEY, SECRET
        self.dialect = SimpleNamespace(name=venue)


class HttpBarClock:
    """The child's clock: a poll's wait asks the exchange (over HTTP) to replay the next bar."""

    def __init__(self, url: str):
        self.url = url

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/__control/advance?bars=1", method="POST"),
                               timeout=60).read()


def child(url: str, config: str, cycles: int, venue: str) -> None:
    from exchange_sim import venue_client
    from mlcoord.live.retry import ManualClock
    from mlcoord.live.session import run_live
    from mlcoord.registry import load_plugins

    settings, options = load_live_settings(config)
    # a long timeout: a held request must still be waiting when the (perhaps loaded) test kills the child
    run_live(settings, options, venue_client(_Where(url, venue), "futures", timeout_ms=60_000), load_plugins(),
             clock=HttpBarClock(url), health_clock=ManualClock(), cycles=cycles)


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
