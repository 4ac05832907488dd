"""kill -9 the live trader at seeded random points and restart it: the store and the exchange agree
afterwards (every client id on the server is in the store once, with the server's state and filled
quantity; no duplicate on the server), and every open position has its stop.

The trader runs as a subprocess (this file is its entry point, see ``child``) with a real ccxt
object pointed at the loopback exchange that runs in the test process; the child's clock moves the
exchange on by one bar per poll through the exchange's HTTP control API, so nothing sleeps."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from exchange_sim import ExchangeServer
from mlcoord.live.records import OrderState
from mlcoord.live.runner import load_live_settings
from mlcoord.live.store import Store
from live_helpers import live_config
from test_live_trader import stops_cover_positions

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261124
_SERVER_STATE = {"NEW": OrderState.OPEN, "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED,
                 "FILLED": OrderState.FILLED, "CANCELED": OrderState.CANCELLED, "EXPIRED": OrderState.EXPIRED}


def _spawn(url: str, config: Path, cycles: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("engine", "plugins", "tests"))}
    return subprocess.Popen([sys.executable, str(Path(__file__)), url, str(config), str(cycles)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(config.parent))


def _beat(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _all_orders(store):
    from sqlalchemy import select

    from mlcoord.live import rows
    from mlcoord.live.schema import orders
    with store.engine.connect() as conn:
        return [rows.order_record(r) for r in conn.execute(select(orders)).mappings().all()]


def test_kill_9_at_random_points_and_restart(tmp_path):
    rng = random.Random(SEED)
    kills = rng.randint(12, 16)
    config = live_config(tmp_path)
    beat = tmp_path / "beat.json"
    with ExchangeServer(seed=SEED) as server:
        server.faults.partial_fill(fraction=0.5, probability=0.1)
        server.faults.lose_response(mode="drop", probability=0.03)
        during_startup = holding = 0
        start_ms = server.now_ms
        for k in range(kills):
            child = _spawn(server.url, config, 10_000)
            if rng.random() < 0.25:                  # somewhere in start-up: reconcile, setup, history
                during_startup += 1
                time.sleep(rng.uniform(0.3, 2.0))
            else:                                    # somewhere in the loop, a few cycles in
                deadline = time.monotonic() + 30
                target = rng.randint(1, 16)
                while time.monotonic() < deadline and child.poll() is None:
                    b = _beat(beat)
                    if b and b["pid"] == child.pid and b["beats"] >= target:
                        break
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.15))
            assert child.poll() is None, child.stderr.read().decode()[-3000:]
            holding += any(p.amt for p in server.state.futures.positions.values())
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stderr.close()
        final = _spawn(server.url, config, 40)
        _, err = final.communicate(timeout=60)
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
              f"tags={dict(tags)} bars={(server.now_ms - start_ms) // 3_600_000} faults={len(server.faults.log)}")
        store.close()


# -- the child process -------------------------------------------------------------------------------

class _Where:
    """What :func:`exchange_sim.futures_client` needs of a server in another process."""

    def __init__(self, url: str):
        from exchange_sim import API_KEY, SECRET
        self.url, self.api_key, self.secret = url, API_KEY, SECRET


class HttpBarClock:
    """The child's clock: a poll's wait asks the exchange (over HTTP) to replay the next bar."""

    def __init__(self, url: str):
        self.url = url

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/__control/advance?bars=1", method="POST"),
                               timeout=10).read()


def child(url: str, config: str, cycles: int) -> None:
    from exchange_sim import futures_client
    from mlcoord.live.retry import ManualClock
    from mlcoord.live.session import run_live
    from mlcoord.registry import load_plugins

    settings, options = load_live_settings(config)
    run_live(settings, options, futures_client(_Where(url), timeout_ms=2000), load_plugins(),
             clock=HttpBarClock(url), health_clock=ManualClock(), cycles=cycles)


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
