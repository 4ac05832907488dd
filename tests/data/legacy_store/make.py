"""Writes ``v0-hedged.sqlite``: a live store as mlcoord wrote it before the one trading core
(commit 3d01ba3): an open plan with its stop, take profit and a hedge leg, on the loopback
exchange, stopped after the cycle that hedged it.

Run it from a checkout of that commit (its engine and tests importable), e.g.::

    git worktree add /tmp/v0 3d01ba3
    cd /tmp/v0 && PYTHONPATH=engine:tests python /path/to/this/make.py OUT_DIR

``tests/test_store_compat.py`` replays the same cycles with today's code against a fresh
loopback exchange (the client ids are derived from the plan and the tag, so the exchange ends
up holding the orders this store lists), then resumes on this store.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import structlog

from exchange_sim import ExchangeServer, futures_client
from live_helpers import BarClock, live_config
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.registry import load_plugins
from test_live_hedge import HEDGING          # the hedging guard's triggers the hedge tests use


def main(out: Path) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    path = live_config(work)
    text = path.read_text()
    for key in ("portfolio_guards", "portfolio_watchers"):     # the key before and after hook version 2
        text = text.replace(f'{key} = ["protections"]', f'{key} = ["protections", "hedging"]')
    path.write_text(text + HEDGING)
    settings, options = load_live_settings(path)
    cycles = []

    def stop_when_hedged(trader):
        cycles.append(trader.last_time)
        hedged = [p for p in trader.store.active_plans() if p.hedge is not None]
        if hedged:
            raise KeyboardInterrupt

    with ExchangeServer() as server:      # the fixture's exchange: bar 1000 of the bundled data
        try:
            run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                     health_clock=ManualClock(), cycles=60, on_cycle=stop_when_hedged)
        except KeyboardInterrupt:
            pass
    import sqlite3

    target = out / "v0-hedged.sqlite"
    target.unlink(missing_ok=True)
    with sqlite3.connect(options.store) as src, sqlite3.connect(target) as dst:
        src.backup(dst)        # the write-ahead log included
    (out / "v0-hedged.json").write_text(json.dumps({"commit": "3d01ba3", "cycles": len(cycles),
                                                    "last_bar_ns": cycles[-1]}, indent=1) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
