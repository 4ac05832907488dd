"""Words for one bar's signal, built from the stored score arrays only when asked.

Each indicator reading that contributed to the bar is one line ending in its signed score
(``[+1.3]``), so a user can see which readings carried the signal and which fought it.
"""

from __future__ import annotations

from mlcoord_technical.scoring import Scores


def _pts(x: float) -> str:
    return f"[{x:+.1f}]"


def _rsi(s: Scores, i: int, o) -> list[str]:
    v, pts = float(s.rsi[i]), float(s.s_rsi[i])
    if pts > 0:
        depth = "deeply oversold" if v < o.rsi_oversold - 10 else "oversold"
        return [f"RSI {v:.1f} {depth} (<{o.rsi_oversold:g}) {_pts(pts)}"]
    if pts < 0:
        depth = "deeply overbought" if v > o.rsi_overbought + 10 else "overbought"
        return [f"RSI {v:.1f} {depth} (>{o.rsi_overbought:g}) {_pts(pts)}"]
    return []


def _macd(s: Scores, i: int) -> list[str]:
    pts, cross, hist = float(s.s_macd[i]), int(s.macd_cross[i]), float(s.macd_hist[i])
    if cross:
        side = "above" if cross > 0 else "below"
        return [f"MACD crossed {side} signal (histogram {hist:+.4g}) {_pts(pts)}"]
    if abs(pts) >= 0.05:
        way = "rising" if pts > 0 else "falling"
        return [f"MACD histogram {way} ({float(s.macd_hist[i - 1]):+.4g} -> {hist:+.4g}) {_pts(pts)}"]
    return []


def _trend(s: Scores, i: int, o) -> list[str]:
    c, f, m, t = (float(a[i]) for a in (s.close, s.ema_fast, s.ema_slow, s.ema_trend))
    pts = float(s.s_trend[i])
    label = {1.5: "uptrend", -1.5: "downtrend"}.get(pts, "leaning up" if pts > 0 else "leaning down")
    if c > f > m > t:
        text = f"price above EMA{o.ema_fast} > EMA{o.ema_slow} > EMA{o.ema_trend}"
    elif c < f < m < t:
        text = f"price below EMA{o.ema_fast} < EMA{o.ema_slow} < EMA{o.ema_trend}"
    else:
        text = (f"price {'above' if c > f else 'below'} EMA{o.ema_fast}, "
                f"EMA{o.ema_fast} {'>' if f > m else '<'} EMA{o.ema_slow}, "
                f"EMA{o.ema_slow} {'>' if m > t else '<'} EMA{o.ema_trend}")
    return [f"{text} ({label}) {_pts(pts)}"]


def _bollinger(s: Scores, i: int) -> list[str]:
    pb, pts = float(s.percent_b[i]), float(s.s_bb[i])
    if pts == 0:
        return []
    band = "lower" if pts > 0 else "upper"
    where = "near" if abs(pts) < 1 else ("below" if pts > 0 else "above")
    return [f"close {where} {band} Bollinger band (%b {pb:+.2f}) {_pts(pts)}"]


def _volume(s: Scores, i: int, o) -> list[str]:
    vr, k = float(s.volume_ratio[i]), float(s.volume_factor[i])
    if vr != vr:  # NaN: no volume in the whole window
        return ["volume n/a (no volume in the average window)"]
    word = "confirms" if k > 1 else ("thin, damps" if k < 1 else "neutral")
    return [f"volume {vr:.1f}x {o.volume_period}-bar average ({word}, score x{k:.2f})"]


def _volatility(s: Scores, i: int, o, regime_damped: bool) -> list[str]:
    out = [f"ATR {100 * float(s.atr_pct[i]):.2f}% of price, {float(s.atr_ratio[i]):.1f}x its "
           f"{o.atr_baseline}-bar average"]
    if float(s.atr_ratio[i]) > o.atr_max_ratio:
        out[0] += f" (above {o.atr_max_ratio:g}x: volatile, confidence damped)"
    if regime_damped:
        out.append("HIGH_VOLATILITY regime: confidence damped")
    return out


def explain(s: Scores, i: int, options, regime_damped: bool) -> list[str]:
    """Reasons for bar ``i``: empty for HOLD, else the readings strongest first, then the verdict.

    The first reason is the headline: the reading that carried the signal most.
    """
    side = int(s.action[i])
    if side == 0:
        return []
    head = (f"{'BUY' if side > 0 else 'SELL'}: net score {float(s.net[i]):+.2f} "
            f"(entry {options.entry_score:g}), {int(s.agreeing[i])} agreeing, "
            f"score against {float(s.opposing[i]):.1f}, confidence {float(s.confidence[i]):.2f}")
    scored = [(float(s.s_rsi[i]), _rsi(s, i, options)), (float(s.s_macd[i]), _macd(s, i)),
              (float(s.s_trend[i]), _trend(s, i, options)), (float(s.s_bb[i]), _bollinger(s, i))]
    # strongest in the signal's direction first, by the score each line shows (one decimal); a
    # stable sort keeps the order above for ties
    scored.sort(key=lambda item: -side * round(item[0], 1))
    readings = [line for _, lines in scored for line in lines]
    return [*readings, head, *_volume(s, i, options), *_volatility(s, i, options, regime_damped)]
