"""The state round trip for any component with ``state()`` / ``load_state()`` (here: sizers and exit
managers; guards and ML components have theirs in test_kit_guards.py and test_conformance.py):
driven, saved as JSON, loaded into a fresh instance, which must answer as the original."""

from __future__ import annotations

import pytest

from mlcoord import ExitLevels, Side, Sizing
from mlcoord.testing import ConformanceError, plugin_checks

from fake_plugins import Components


def checks(role: str, factory):
    class Plugin(Components):
        MLCOORD_HOOKS_VERSION = 2

    return {c.id.removeprefix("fake-"): c for c in plugin_checks(Plugin(**{role: {"fake": factory}}), name="fake")}


class StreakSizer:
    """Risks 1 % of equity, halved after each loss in a row (a win resets it); the streak is its state."""

    def __init__(self, options=None):
        self.streak = 0
        self.seen = 0

    def on_trade_closed(self, trade, decision=None):
        self.streak = self.streak + 1 if trade.pnl < 0 else 0
        self.seen += 1

    def risk(self) -> float:
        return 0.01 / 2 ** self.streak

    def size(self, request):
        loss = abs(request.plan.average_price - request.stop)
        quantity = self.risk() * request.equity / loss if loss > 0 else 0.0
        if quantity <= 0:
            return Sizing(quantity=0.0, veto="no distance to the stop")
        return Sizing(quantity=quantity, reasons=(f"risk {self.risk():.2%} after {self.streak} losses",))

    def state(self):
        return {"streak": self.streak}

    def load_state(self, state):
        self.streak = int(state["streak"])


class StreakSizerCountsTooMuch(StreakSizer):
    """Also shrinks with every trade it has seen, which its state leaves out."""

    def risk(self) -> float:
        return super().risk() * 0.9 ** self.seen


class SetStateExits:
    """Widens its stop after each stop-out; keeps the stopped symbols as a set (not JSON)."""

    def __init__(self, options=None):
        self.stopped: set[str] = set()

    def on_trade_closed(self, trade, decision=None):
        if trade.exit_reason.startswith("stop"):
            self.stopped.add(trade.symbol)

    def prepare(self, data):
        width = 0.03 if data.symbol in self.stopped else 0.02

        class Levels:
            def initial(self, i, side, plan):
                factor = 1 - width if side is Side.LONG else 1 + width
                return ExitLevels(plan.worst_price * factor, reasons=(f"{width:.0%} stop",))

            def update(self, i, position, levels):
                return levels
        return Levels()

    def state(self):
        return {"stopped": self.stopped}

    def load_state(self, state):
        self.stopped = set(state["stopped"])


class ListStateExits(SetStateExits):
    def state(self):
        return {"stopped": sorted(self.stopped)}


def test_a_sizer_whose_state_carries_what_it_sizes_by_passes():
    checks("sizers", StreakSizer)["state_roundtrip"]()


def test_the_kit_catches_a_sizer_whose_state_misses_what_it_sizes_by():
    found = checks("sizers", StreakSizerCountsTooMuch)
    found["output"]()
    with pytest.raises(ConformanceError, match=r"sizer 'fake' .*: a fresh instance loaded with the saved state\(\) sizes "
                                               r"differently than the original; state\(\) misses part"):
        found["state_roundtrip"]()


def test_the_kit_catches_exit_manager_state_that_is_not_json():
    checks("exit_managers", ListStateExits)["state_roundtrip"]()
    with pytest.raises(ConformanceError, match=r"state\(\) is not JSON-serialisable: state\(\)\['stopped'\] is "
                                               r"\{'BTC/USDT'\} \(set\), which JSON cannot hold"):
        checks("exit_managers", SetStateExits)["state_roundtrip"]()
