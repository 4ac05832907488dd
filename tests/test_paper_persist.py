"""A paper session keeps its work: its closed trades, fills and a summary go to the store
(``[live] store``, tables ``paper_*``, schema v5) as it runs, and Ctrl-C ends it cleanly with the
summary saved and printed (``mlcoord paper`` exits with 130)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

from exchange_sim import ccxt_table, exchange_server, spot_client  # noqa: F401 (fixture)
from live_helpers import BarClock, live_config
from mlcoord.cli import main
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings, paper_summary_line, run_paper
from mlcoord.live.store import Store
from mlcoord.registry import load_plugins
from test_exchange_overrides import ccxt_lines


class InterruptingClock(BarClock):
    """One bar per poll; the ``at``-th wait is a Ctrl-C."""

    def __init__(self, server, at: int):
        super().__init__(server)
        self.at, self.waits = at, 0

    def sleep(self, seconds):
        self.waits += 1
        if self.waits == self.at:
            raise KeyboardInterrupt
        super().sleep(seconds)


def _config(tmp_path):
    return live_config(tmp_path, "spot", leverage=None, history_bars=300, poll_seconds=60)


def test_an_interrupted_paper_session_leaves_its_trades_and_summary_in_the_store(exchange_server, tmp_path):
    """The bug: Ctrl-C ended paper trading with a traceback and nothing kept."""
    settings, options = load_live_settings(_config(tmp_path))
    with capture_logs() as logs:
        trader = run_paper(settings, options, spot_client(exchange_server), load_plugins(),
                           clock=InterruptingClock(exchange_server, 200))
    assert trader.interrupted
    trades, fills = list(trader.engine.trades), list(trader.engine.fills)
    assert len(trades) >= 2 and len(fills) >= 4
    [summary] = [e for e in logs if e["event"] == "paper_summary"]
    assert summary["status"] == "interrupted" and summary["bars"] == len(trader.engine.loop.times) == 199
    assert summary["trades"] == len(trades) and summary["pnl"] == pytest.approx(sum(t.pnl for t in trades))
    assert summary["equity"] == pytest.approx(trader.portfolio.equity) and summary["cycles"] == 200
    with Store.open(tmp_path / "live.db") as store:
        [kept] = store.paper_sessions()
        sid = kept["session_id"]
        assert sid == summary["session_id"] and kept["status"] == "interrupted" and kept["bars"] == 199
        assert store.paper_trades(sid) == trades and store.paper_fills(sid) == fills
        assert store.orders() == [] and store.fills() == [] and store.positions() == []   # live tables untouched
    line = paper_summary_line(summary)
    assert f"{len(trades)} trades" in line and "199 bars processed" in line and "interrupted" in line


def test_a_paper_session_saves_as_it_goes_and_a_second_one_gets_its_own_record(exchange_server, tmp_path):
    """Trades are saved after each cycle with a bar (a crash keeps all but the last cycle); each
    save adds only what is new; a second session on the same store has its own id and rows."""
    settings, options = load_live_settings(_config(tmp_path))
    seen = []

    def kept(trader):
        with Store.open(tmp_path / "live.db") as store:
            [s] = store.paper_sessions()[-1:]
            seen.append((len(store.paper_trades(s["session_id"])), len(trader.engine.trades)))

    with capture_logs():
        first = run_paper(settings, options, spot_client(exchange_server), load_plugins(),
                          clock=BarClock(exchange_server), cycles=150, on_cycle=kept)
        second = run_paper(settings, options, spot_client(exchange_server), load_plugins(),
                           clock=ManualClock(), cycles=2)
    assert all(stored == made for stored, made in seen) and seen[-1][1] >= 1
    assert not first.interrupted and first.summary["status"] == "stopped"
    with Store.open(tmp_path / "live.db") as store:
        one, two = store.paper_sessions()
        assert one["session_id"] != two["session_id"] == second.summary["session_id"]
        assert len(store.paper_trades(one["session_id"])) == len(first.engine.trades)
        assert store.paper_trades(two["session_id"]) == [] and two["bars"] == 0


def test_mlcoord_paper_prints_the_summary_on_ctrl_c_and_exits_130(exchange_server, tmp_path, monkeypatch):
    from mlcoord.live import retry

    path = _config(tmp_path)
    path.write_text(path.read_text() + ccxt_lines(ccxt_table(exchange_server, "spot")))

    def ctrl_c(self, seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(retry.SystemClock, "sleep", ctrl_c)
    result = CliRunner().invoke(main, ["paper", "--config", str(path), "--cycles", "5"], catch_exceptions=False)
    assert result.exit_code == 130, result.output
    assert "paper session paper-" in result.output and "interrupted: 0 bars processed, 0 trades" in result.output
    with Store.open(tmp_path / "live.db") as store:
        [kept] = store.paper_sessions()
    assert kept["status"] == "interrupted" and kept["cycles"] == 1
