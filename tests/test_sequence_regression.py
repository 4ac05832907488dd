"""The shipped sequence models vote bit for bit as before the models moved into their plugins.

``tests/data/sequence_votes.npz`` was written by ``python tests/test_sequence_regression.py``
with the code of commit c2e251f (when ``mlcoord.nn`` still held the LSTM and attention nets):
probabilities, attention weights and a few votes of the shipped ``models/default.npz`` of both
plugins on fixed slices of the bundled 1h data. Any change to a forward pass, the normalisation,
the windows or the batching shows up here as an exact mismatch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "data" / "sequence_votes.npz"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
START, STOP = 30_000, 30_600        # bars of the bundled file (window warm-up inside the slice)
SCORED = np.arange(400, 600)        # bars of the slice whose probabilities are recorded
VOTED = (400, 401, 500, 599)        # bars voted one at a time (the live path: lazy batches)


def _components():
    from mlcoord_attention import Attention, AttentionOptions
    from mlcoord_lstm import Lstm, LstmOptions
    return {"lstm": Lstm(LstmOptions()), "attention": Attention(AttentionOptions())}


def compute() -> dict[str, np.ndarray]:
    """Everything the fixture records, computed with the code under test."""
    from mlcoord.candles import load_candles
    from mlcoord.components import build_market_data
    from mlcoord.datasets import bundled_path
    from mlcoord.model import Action, Signal

    out: dict[str, np.ndarray] = {}
    for symbol in SYMBOLS:
        data = build_market_data(load_candles(bundled_path(symbol), symbol=symbol).slice(START, STOP))
        tag = symbol.split("/")[0]
        for name, component in _components().items():
            voter = component.prepare(data)
            out[f"{tag}.{name}.p"] = voter.probabilities(SCORED)
            if voter.extra is not None:
                out[f"{tag}.{name}.extra"] = voter.extra[SCORED]
            lazy = component.prepare(data)      # a fresh voter: each vote computes its own block
            votes = [lazy.vote(i, Signal(Action.BUY, 0.6)) for i in VOTED]
            out[f"{tag}.{name}.vote_p"] = np.array([[v.p_up, v.p_down, v.confidence] for v in votes])
            out[f"{tag}.{name}.vote_text"] = np.array([f"{v.component}|{v.action.name}|" + "|".join(v.reasons)
                                                       for v in votes])
    return out


@pytest.fixture(scope="module")
def now() -> dict[str, np.ndarray]:
    return compute()


def test_fixture_covers_both_models_and_symbols(now):
    with np.load(FIXTURE, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(now)
        assert {k.split(".")[1] for k in z.files} == {"lstm", "attention"}


def test_shipped_models_vote_bit_for_bit_as_before(now):
    with np.load(FIXTURE, allow_pickle=False) as z:
        for key in z.files:
            assert z[key].dtype == now[key].dtype and z[key].shape == now[key].shape, key
            assert np.array_equal(z[key], now[key]), key


if __name__ == "__main__":      # (re)write the fixture: only ever from the code it pins down
    if "--write" not in sys.argv:
        raise SystemExit("pass --write to overwrite " + str(FIXTURE))
    np.savez_compressed(FIXTURE, **compute())
    print("wrote", FIXTURE)
