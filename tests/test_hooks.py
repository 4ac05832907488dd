"""Tests of their own for the hooks no plugin test covers: the observer hooks ``on_startup`` and
``on_trade_closed``, and ``register_entry_guards``/``register_portfolio_watchers`` as hooks (what the engine does with a guard
registered through it), each in a short backtest on the bundled BTC/USDT data.

A spy plugin object implements the hooks; the built-in trading plugins run next to it, and
nothing else that happens to be installed.
"""

from __future__ import annotations

from typing import Optional

import attrs
import pytest
from click.testing import CliRunner

from mlcoord import Decision, Side, Trade, hookimpl
from mlcoord.backtest.run import run_backtest
from mlcoord.cli import main
from mlcoord.errors import PluginError
from mlcoord.config import Settings, structure
from mlcoord.pipeline import Components
from mlcoord.registry import discover_entry_points, load_plugins

from conftest import BUILTINS


@attrs.frozen
class RefuseOptions:
    """[plugins.refuse]: refuse_shorts=True."""

    refuse_shorts: bool = True


class RefuseShorts:
    """A guard that refuses short entries and records every bar it is shown."""

    def __init__(self, spy: "Spy", options: RefuseOptions):
        self.spy, self.options = spy, options

    def on_bar(self, portfolio):
        self.spy.events.append(("bar", portfolio.time))
        return []

    def allow_entry(self, symbol, side, portfolio) -> Optional[str]:
        self.spy.asked.append((symbol, side))
        return "no shorts in this test" if self.options.refuse_shorts and side is Side.SHORT else None


class Spy:
    """One plugin object implementing a register hook and both observer hooks."""

    MLCOORD_HOOKS_VERSION = 2

    def __init__(self):
        self.events: list[tuple] = []
        self.asked: list[tuple] = []
        self.startups: list[tuple] = []
        self.closed: list[tuple[Trade, Optional[Decision]]] = []
        self._factory = self._refuse

    def _refuse(self, options):
        return RefuseShorts(self, options)

    @hookimpl
    def register_entry_guards(self, register):
        register("refuse", self._factory, options=RefuseOptions, description="refuses shorts (test spy)")

    @hookimpl
    def register_portfolio_watchers(self, register):      # the same factory: one object in both roles
        register("refuse", self._factory, options=RefuseOptions, description="refuses shorts (test spy)")

    @hookimpl
    def on_startup(self, settings, components):
        self.events.append(("startup",))
        self.startups.append((settings, components))

    @hookimpl
    def on_trade_closed(self, trade, decision):
        self.closed.append((trade, decision))


class TradesOnly:
    """Implements ``on_trade_closed`` with a subset of its arguments (allowed by the contract)."""

    def __init__(self):
        self.trades: list[Trade] = []

    @hookimpl
    def on_trade_closed(self, trade):
        self.trades.append(trade)


class FailingStartup:
    @hookimpl
    def on_startup(self, settings):
        raise RuntimeError("cache directory missing")


class FailingObserver:
    @hookimpl
    def on_trade_closed(self, trade, decision):
        raise RuntimeError("observer bug")


def run(candles, config: dict, **extra):
    """A backtest with the built-ins and the ``extra`` test plugins enabled ([engine] enable)."""
    builtins = {n: ep for n, ep in discover_entry_points().items() if n in BUILTINS}
    config = {**config, "engine": {**config.get("engine", {}), "enable": sorted(extra)}}
    settings = structure(config, Settings)
    return settings, run_backtest(settings, plugins=load_plugins({}, entry_points=builtins, extra_plugins=extra),
                                  candles=[candles])


@pytest.fixture(scope="module")
def spied(short_candles):
    spy, subset = Spy(), TradesOnly()
    settings, result = run(short_candles, {}, spy=spy, subset=subset)
    return spy, subset, settings, result


# -- on_startup ----------------------------------------------------------------------------------

def test_on_startup_is_called_once_with_settings_and_components_before_the_first_bar(spied):
    spy, _, settings, result = spied
    assert len(spy.startups) == 1 and spy.events.count(("startup",)) == 1
    assert spy.events[0] == ("startup",) and len(spy.events) > 1     # before any bar
    seen_settings, components = spy.startups[0]
    assert seen_settings is settings
    assert isinstance(components, Components)
    assert components.describe() == result.components
    assert components.entry_planner.name == "dca" and type(components.entry_planner.obj).__name__ == "DCAPlanner"
    assert sorted(g.name for g in components.guards) == ["hedging", "protections", "refuse"]
    assert [g.name for g in components.entry_guards] == ["protections", "refuse"]
    assert [g.name for g in components.portfolio_watchers] == ["hedging", "protections", "refuse"]


def test_on_startup_that_raises_stops_the_run_with_an_error_naming_the_plugin(short_candles):
    """Issue 15: it ended in a bare traceback that named no plugin."""
    with pytest.raises(PluginError) as err:
        run(short_candles.slice(0, 800), {}, failing=FailingStartup())
    assert str(err.value) == ("plugin 'failing' failed at start-up (on_startup): RuntimeError: "
                              "cache directory missing")


def test_on_startup_that_raises_is_a_one_line_cli_error(tmp_path):
    plugin = tmp_path / "plugins" / "brokenstart.py"
    plugin.parent.mkdir()
    plugin.write_text("from mlcoord.api import hookimpl\nMLCOORD_HOOKS_VERSION = 2\n\n"
                      "@hookimpl\ndef on_startup(settings):\n    raise OSError('cache directory missing')\n")
    result = CliRunner().invoke(main, ["backtest", "--plugins-dir", str(plugin.parent), "--enable", "brokenstart",
                                       "--timerange", "20240101-20240103", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert ("error: plugin 'brokenstart' failed at start-up (on_startup): OSError: cache directory missing"
            in result.stderr)


# -- on_trade_closed -----------------------------------------------------------------------------

def test_on_trade_closed_receives_every_closed_trade_with_the_decision_that_opened_it(spied):
    spy, _, _, result = spied
    trades = [t for t in result.raw.trades if not t.hedge]
    assert len(trades) >= 5
    assert [t for t, _ in spy.closed] == trades            # every one, once, in closing order
    entered = {(d.symbol, d.time): d for d in result.raw.decisions if d.outcome == "entered"}
    for trade, decision in spy.closed:
        assert decision is not None and decision.outcome == "entered"
        assert entered[(decision.symbol, decision.time)] == decision
        assert decision.symbol == trade.symbol and decision.plan.side == trade.side
        assert decision.time < trade.opened_at <= trade.closed_at     # fills from the next bar on
        assert trade.entries_planned == len(decision.plan.legs)


def test_on_trade_closed_with_a_subset_of_its_arguments(spied):
    spy, subset, _, _ = spied
    assert subset.trades == [t for t, _ in spy.closed]


def test_on_trade_closed_that_raises_does_not_stop_the_run(short_candles, spied):
    _, _, _, plain = spied
    _, result = run(short_candles, {}, spy=Spy(), failing=FailingObserver())
    assert result.raw.trades == plain.raw.trades
    # counted under the plugin's own name (issue 15: it was "plugins", naming none)
    assert result.raw.errors.get("failing.on_trade_closed") == len([t for t in plain.raw.trades if not t.hedge])


# -- register_entry_guards / register_portfolio_watchers -------------------------------------------------------------------

def test_a_guard_registered_by_the_hook_sees_every_bar_and_vetoes_entries(spied):
    spy, _, _, result = spied
    bars = [e[1] for e in spy.events if e[0] == "bar"]
    assert bars == result.raw.times.tolist()                 # on_bar after every bar, in order
    shorts = [d for d in result.raw.decisions if d.signal.action < 0 and d.plan is not None]
    assert shorts and all(d.outcome in ("vetoed:refuse", "vetoed:protections", "vetoed:hedging") for d in shorts)
    assert any(d.outcome == "vetoed:refuse" and d.veto == "no shorts in this test" for d in shorts)
    assert not [t for t in result.raw.trades if t.side == Side.SHORT and not t.hedge]
    assert any(side is Side.LONG for _, side in spy.asked)


def test_a_guards_options_come_from_its_config_table(short_candles, spied):
    _, _, _, refused = spied
    spy = Spy()
    _, result = run(short_candles, {"plugins": {"refuse": {"refuse_shorts": False}}}, spy=spy)
    assert not any(d.outcome == "vetoed:refuse" for d in result.raw.decisions)
    assert any(t.side == Side.SHORT for t in result.raw.trades if not t.hedge)
    assert len(result.raw.trades) != len(refused.raw.trades)


def test_a_plugin_written_for_hooks_version_1_is_refused_naming_what_changed():
    """``register_portfolio_guards`` was split in hooks version 2; a plugin still implementing it
    would never be called: it is skipped with an error that says what replaced it."""
    from mlcoord.registry import load_plugins

    class OldGuardPlugin:
        MLCOORD_HOOKS_VERSION = 1

        @hookimpl
        def register_portfolio_guards(self, register):
            register("oldguard", lambda options: None)

    plugins = load_plugins({}, entry_points={}, extra_plugins={"oldguard": OldGuardPlugin()})
    status = plugins.statuses["oldguard"]
    assert not status.enabled
    assert "register_portfolio_guards" in status.reason
    assert "register_entry_guards" in status.reason and "register_portfolio_watchers" in status.reason
    assert "oldguard" not in plugins.components


def test_the_old_pipeline_key_is_an_error_naming_the_new_ones():
    from mlcoord.config import Settings, structure
    from mlcoord.errors import ConfigError

    with pytest.raises(ConfigError, match="entry_guards.*portfolio_watchers"):
        structure({"pipeline": {"portfolio_guards": ["protections"]}}, Settings)
