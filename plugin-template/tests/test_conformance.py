"""The mlcoord conformance kit over this plugin: one pytest case per check.

Checks registration, hooks version, name clashes with the built-ins, options through the config
converter, output types and ranges, empty and short data, no look-ahead, determinism, unmutated
and unwritten inputs, and a state round trip if a component has ``state()``. Every check that
builds a component runs again for each option set it declares in ``register(..., examples=...)``
(ids ending ``[example1]``). Keep this file when you copy the template: a plugin that passes it
behaves inside the engine the way the engine expects.
"""

from __future__ import annotations

import numpy as np

import mlcoord_volume_spike
from mlcoord.api import parametrize_with_checks


@parametrize_with_checks({"volume_spike": mlcoord_volume_spike})   # the entry point's name -> the plugin
def test_volume_spike_conforms(check):
    check()


def test_signals_on_the_kits_data(mlcoord_market_data):
    """The kit's pytest fixtures (installed with mlcoord) serve a plugin's own tests too."""
    series = mlcoord_volume_spike.VolumeSpike().prepare(mlcoord_market_data)
    assert set(np.unique(series.action)) == {-1, 0, 1}
