"""DCA legs never outlive their stop (issue 14): a long's buy legs at or below the stop (a short's
sell legs at or above it) are cancelled by the loop the bar the stop passes them, as a
``CancelEntries`` intent with ``beyond=stop``, so no venue fills a leg the stop has passed; a
stop-out cancels the plan's remaining legs. The simulator here; the exchange venue on the loopback
emulator in ``test_live_stop_passes_legs.py``."""

from __future__ import annotations

import pytest

from mlcoord.model import CancelEntries, ExitLevels
from test_simulated_venue import FLAT, H, T0, Levels, Planted, frame, run


class RaiseStop(Levels):
    """Fixed levels, the stop raised to ``raised`` from bar ``at`` on (mirrored for a short)."""

    def __init__(self, stop, tp, raised, at):
        super().__init__(stop, tp)
        self.raised, self.at = raised, at

    def update(self, i, position, levels):
        if i >= self.at and levels.stop != self.raised:
            return ExitLevels(stop=self.raised, take_profit=levels.take_profit)
        return levels


def test_a_stop_raised_past_a_resting_leg_cancels_it_and_it_never_fills():
    # bar 4 decides (market leg + a limit at 97), bar 5 fills the market leg, bar 6 raises the
    # stop to 98 (above the leg); bar 7 drops to 96: the stop takes the position, the leg at 97
    # (which the stop passed at bar 6) is never bought
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 2 + [(100, 100.2, 96, 96.5), (96.5, 97, 95, 96)]
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, limits=(97.0,), levels=RaiseStop(90.0, 110.0, 98.0, 6)))
    entries = [f for f in raw.fills if not f.reduce_only]
    assert [f.tag for f in entries] == ["entry:1/2"]                     # the leg at 97 never filled
    assert len(raw.trades) == 1
    trade = raw.trades[0]
    assert trade.exit_reason == "trailing_stop" and trade.closed_at == T0 + 7 * H
    assert trade.quantity == pytest.approx(0.5)


def test_a_short_stop_lowered_past_a_resting_leg_cancels_it():
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 2 + [(100, 104, 99.8, 103.5), (103.5, 105, 103, 104)]
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: -1}}, limits=(103.0,),
                                     levels=RaiseStop(110.0, 90.0, 102.0, 6)))
    assert [f.tag for f in raw.fills if not f.reduce_only] == ["entry:1/2"]
    assert raw.trades[0].quantity == pytest.approx(0.5) and raw.trades[0].closed_at == T0 + 7 * H


def test_legs_the_stop_has_not_passed_keep_working():
    # stop raised to 98, legs at 99 (above it) and 97 (below): only the one at 97 is cancelled
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 2 + [(100, 100.2, 98.5, 99.5)] + [(99.5, 100, 99, 99.5)]
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, limits=(99.0, 97.0),
                                     levels=RaiseStop(90.0, 110.0, 98.0, 6)))
    assert [f.tag for f in raw.fills if not f.reduce_only] == ["entry:1/3", "entry:2/3"]


def test_a_stop_out_cancels_the_plans_remaining_legs():
    # legs at 97 and 95, stop 94 raised to 96 at bar 6 (the leg at 95 cancelled); bar 7 fills the
    # leg at 97 and takes the stop; bar 8 drops to 93: no leg of the stopped-out plan is bought
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 2 + [(99, 99.5, 95.5, 96), (95, 95.5, 93, 94), (94, 94, 93, 93.5)]
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, limits=(97.0, 95.0),
                                     levels=RaiseStop(94.0, 110.0, 96.0, 6)))
    assert [f.tag for f in raw.fills if not f.reduce_only] == ["entry:1/3", "entry:2/3"]
    assert len(raw.trades) == 1 and raw.trades[0].exit_reason == "trailing_stop"
    assert raw.trades[0].closed_at == T0 + 7 * H and raw.trades[0].quantity == pytest.approx(2 / 3)


def test_the_loop_asks_for_the_cancel_before_moving_the_stop():
    """The intent the venues execute: ``CancelEntries(beyond=stop)`` first, then the new levels."""
    from mlcoord.simulated import SimulatedVenue

    seen = []
    submit = SimulatedVenue.submit

    def spy(self, intent):
        seen.append(intent)
        return submit(self, intent)

    bars = FLAT + [(100, 100.5, 99.5, 100)] * 2 + [(100, 100.2, 96, 96.5), (96.5, 97, 95, 96)]
    mp = pytest.MonkeyPatch()
    mp.setattr(SimulatedVenue, "submit", spy)
    try:
        run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, limits=(97.0,), levels=RaiseStop(90.0, 110.0, 98.0, 6)))
    finally:
        mp.undo()
    kinds = [type(i).__name__ for i in seen]
    k = kinds.index("CancelEntries")
    cancel = seen[k]
    assert isinstance(cancel, CancelEntries) and cancel.beyond == 98.0 and cancel.reason == "stop_passed"
    assert kinds[k + 1] == "SetLevels"
