"""Backtesting: the event-driven loop (engine), fill and cost model (fills), account (portfolio)
and statistics (stats)."""
