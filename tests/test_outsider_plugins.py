"""Four plugins a new author writes from the docs alone (examples/plugins/: a Donchian signal
source, an exit manager with a time stop, a per-side cap guard, an online River voter), as
one-file plugins against ``mlcoord.api`` only: they pass the conformance kit and trade."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mlcoord.api import plugin_checks
from mlcoord.backtest.run import configured_plugins, run_backtest
from mlcoord.components import build_market_data
from mlcoord.config import Settings, structure
from mlcoord.registry import load_plugin_file, plugin_files

FOLDER = Path(__file__).resolve().parents[1] / "examples" / "plugins"
FILES = plugin_files(FOLDER)


def test_there_are_the_four_outsider_plugins():
    assert set(FILES) == {"donchian", "time_stop", "side_cap", "river_voter"}


@pytest.mark.parametrize("name", sorted(FILES))
def test_each_imports_nothing_of_mlcoord_but_the_public_module(name):
    tree = ast.parse(FILES[name].read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in modules if m.split(".")[0] == "mlcoord"} == {"mlcoord.api"}


@pytest.mark.parametrize("name", sorted(FILES))
def test_each_passes_the_conformance_kit(name):
    checks = plugin_checks(load_plugin_file(name, FILES[name]), name=name)
    assert len(checks) > 5
    for check in checks:
        check()


def _settings(**raw) -> Settings:
    raw.setdefault("engine", {})["plugins_dir"] = str(FOLDER)
    return structure(raw, Settings)


def test_they_trade_together_in_a_backtest(short_candles):
    settings = _settings(engine={"enable": ["donchian", "river_voter", "side_cap"], "min_confidence": 0.5},
                         pipeline={"exit_manager": "time_stop"}, plugins={"time_stop": {"max_bars": 12}})
    result = run_backtest(settings, plugins=configured_plugins(settings), candles=[short_candles])
    assert result.components["signal_sources"] == ["technical", "donchian"]
    assert "river_voter" in result.components["ml_components"]
    assert result.components["entry_guards"] == ["protections", "side_cap"]
    assert result.components["exit_manager"] == "time_stop"
    votes = [v for d in result.raw.decisions for v in d.votes]
    assert any(v.component == "technical+donchian" and v.display_name == "Technical Analysis + Donchian Breakout"
               for v in votes)
    assert any(v.component == "river_voter" for v in votes)
    reasons = {t.exit_reason for t in result.raw.trades}
    assert "time_stop:time_stop" in reasons, reasons
    held = [t.closed_at - t.opened_at for t in result.raw.trades if t.exit_reason == "time_stop:time_stop"]
    assert held and max(held) <= 13 * 3_600_000_000_000


def test_the_side_cap_holds_however_many_symbols_signal_together(short_candles):
    """Three symbols with the same candles signal on the same bars: at most one long and one
    short are ever committed, counting plans approved earlier in the same bar."""
    candles = [short_candles.as_symbol(s) for s in ("AAA/USDT", "BBB/USDT", "CCC/USDT")]
    settings = _settings(engine={"enable": ["side_cap"], "min_confidence": 0.5},
                         pipeline={"ml_components": [], "portfolio_watchers": []},
                         plugins={"side_cap": {"max_per_side": 1}})
    result = run_backtest(settings, plugins=configured_plugins(settings), candles=candles)
    trades = [t for t in result.raw.trades if not t.hedge]
    assert len(trades) > 3
    for side in {t.side for t in trades}:
        spans = sorted((t.opened_at, t.closed_at) for t in trades if t.side == side)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"two {side.name} positions open at once"
    assert any(d.outcome == "vetoed:side_cap" for d in result.raw.decisions)


def test_the_river_voter_learns_and_its_state_round_trips(short_candles):
    module = load_plugin_file("river_voter", FILES["river_voter"])
    data = build_market_data(short_candles)
    voter = module.RiverVoter(module.RiverVoterOptions())
    voter.prepare(data)
    for k in range(200, 1200, 3):
        voter.learn(_outcome(short_candles, k))
    assert voter.outcomes > 100
    copy = module.RiverVoter(module.RiverVoterOptions())
    copy.load_state(json.loads(json.dumps(voter.state())))
    fresh = module.RiverVoter(module.RiverVoterOptions()).prepare(data)
    learned, restored = voter.prepare(data), copy.prepare(data)
    bars = range(60, len(data), 97)
    assert all(learned.vote(i, None) == restored.vote(i, None) for i in bars)
    assert any(learned.vote(i, None) != fresh.vote(i, None) for i in bars)       # it did learn
    assert learned.vote(10, None) is None                                        # warm-up: abstains


def _outcome(candles, k):
    from mlcoord.api import Outcome

    r = float(candles.close[k + 24] / candles.close[k] - 1.0)
    return Outcome(candles.symbol, k, int(candles.time[k]), 1, r, r >= 0.002, 0.6, 0.6)
