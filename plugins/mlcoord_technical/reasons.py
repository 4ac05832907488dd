"""Words for one bar's signal, built from the stored score arrays only when asked.

Values are read with ``ndarray.item``: a Python number directly, without a numpy scalar between
(the arrays are float64, the counts int8).

Each indicator reading that contributed to the bar is one line ending in its signed score
(``[+1.3]``), so a user can see which readings carried the signal and which fought it.
"""

from __future__ import annotations

from mlcoord_technical.scoring import Scores


def _pts(x: float) -> str:
    return f"[{x:+.1f}]"


def _rsi(s: Scores, i: int, o, pts: float) -> list[str]:
    if pts > 0:
        v = s.rsi.item(i)
        depth = "deeply oversold" if v < o.rsi_oversold - 10 else "oversold"
        return [f"RSI {v:.1f} {depth} (<{o.rsi_oversold:g}) {_pts(pts)}"]
    if pts < 0:
        v = s.rsi.item(i)
        depth = "deeply overbought" if v > o.rsi_overbought + 10 else "overbought"
        return [f"RSI {v:.1f} {depth} (>{o.rsi_overbought:g}) {_pts(pts)}"]
    return []


def _macd(s: Scores, i: int, pts: float) -> list[str]:
    cross = s.macd_cross.item(i)
    if cross:
        side = "above" if cross > 0 else "below"
        return [f"MACD crossed {side} signal (histogram {s.macd_hist.item(i):+.4g}) {_pts(pts)}"]
    if abs(pts) >= 0.05:
        way = "rising" if pts > 0 else "falling"
        return [f"MACD histogram {way} ({s.macd_hist.item(i - 1):+.4g} -> {s.macd_hist.item(i):+.4g}) "
                f"{_pts(pts)}"]
    return []


def _trend(s: Scores, i: int, o, pts: float) -> list[str]:
    c, f, m, t = s.close.item(i), s.ema_fast.item(i), s.ema_slow.item(i), s.ema_trend.item(i)
    label = ("uptrend" if pts == 1.5 else "downtrend" if pts == -1.5 else
             "leaning up" if pts > 0 else "leaning down")
    if c > f > m > t:
        text = f"price above EMA{o.ema_fast} > EMA{o.ema_slow} > EMA{o.ema_trend}"
    elif c < f < m < t:
        text = f"price below EMA{o.ema_fast} < EMA{o.ema_slow} < EMA{o.ema_trend}"
    else:
        text = (f"price {'above' if c > f else 'below'} EMA{o.ema_fast}, "
                f"EMA{o.ema_fast} {'>' if f > m else '<'} EMA{o.ema_slow}, "
                f"EMA{o.ema_slow} {'>' if m > t else '<'} EMA{o.ema_trend}")
    return [f"{text} ({label}) {_pts(pts)}"]


def _bollinger(s: Scores, i: int, pts: float) -> list[str]:
    if pts == 0:
        return []
    band = "lower" if pts > 0 else "upper"
    where = "near" if abs(pts) < 1 else ("below" if pts > 0 else "above")
    return [f"close {where} {band} Bollinger band (%b {s.percent_b.item(i):+.2f}) {_pts(pts)}"]


def _volume(s: Scores, i: int, o) -> list[str]:
    vr, k = s.volume_ratio.item(i), s.volume_factor.item(i)
    if vr != vr:  # NaN: no volume in the whole window
        return ["volume n/a (no volume in the average window)"]
    word = "confirms" if k > 1 else ("thin, damps" if k < 1 else "neutral")
    return [f"volume {vr:.1f}x {o.volume_period}-bar average ({word}, score x{k:.2f})"]


def _volatility(s: Scores, i: int, o, regime_damped: bool) -> list[str]:
    ratio = s.atr_ratio.item(i)
    out = [f"ATR {100 * s.atr_pct.item(i):.2f}% of price, {ratio:.1f}x its {o.atr_baseline}-bar average"]
    if ratio > o.atr_max_ratio:
        out[0] += f" (above {o.atr_max_ratio:g}x: volatile, confidence damped)"
    if regime_damped:
        out.append("HIGH_VOLATILITY regime: confidence damped")
    return out


def explain(s: Scores, i: int, options, regime_damped: bool) -> list[str]:
    """Reasons for bar ``i``: empty for HOLD, else the readings strongest first, then the verdict.

    The first reason is the headline: the reading that carried the signal most.
    """
    side = s.action.item(i)
    if side == 0:
        return []
    head = (f"{'BUY' if side > 0 else 'SELL'}: net score {s.net.item(i):+.2f} "
            f"(entry {options.entry_score:g}), {s.agreeing.item(i)} agreeing, "
            f"score against {s.opposing.item(i):.1f}, confidence {s.confidence.item(i):.2f}")
    rsi, macd, trend, bb = s.s_rsi.item(i), s.s_macd.item(i), s.s_trend.item(i), s.s_bb.item(i)
    # strongest in the signal's direction first, by the score each line shows (one decimal); a
    # stable sort keeps the order below for ties. Readings without a line are left out first:
    # the lines' order is the same, without rounding scores that show nothing.
    scored = [(-side * round(pts, 1), lines) for pts, lines in
              ((rsi, _rsi(s, i, options, rsi)), (macd, _macd(s, i, macd)), (trend, _trend(s, i, options, trend)),
               (bb, _bollinger(s, i, bb))) if lines]
    scored.sort(key=_first)
    readings = [line for _, lines in scored for line in lines]
    return [*readings, head, *_volume(s, i, options), *_volatility(s, i, options, regime_damped)]


def _first(item: tuple) -> float:
    return item[0]
