"""Telegram's commands: the API's reads and controls, answered in text.

Reads come from the API's :class:`~mlcoord.server.readers.BotReader` and its ``profit`` /
``performance`` helpers (the same numbers as ``/api/v1/profit``...). Controls need the trader
role, as on the API, and go the API's way: an audit row (user ``telegram:<chat id>``, address
``telegram``) and a :class:`~mlcoord.live.controls.Control` on the session's channel, applied by
the trading loop at its next cycle; the loop's result is written to the audit row and sent back to
the chat (:meth:`Commands.result_for`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from mlcoord.live.controls import Control, ControlChannel
from mlcoord.server.accounts import Accounts, User
from mlcoord.server.readers import BotReader, performance, profit

AUDIT_ADDRESS = "telegram"
USER_PREFIX = "telegram:"
#: command -> (role needed, help text)
COMMANDS = {
    "/status": ("viewer", "running state and open positions"),
    "/profit": ("viewer", "closed trades' P&L, total and today"),
    "/balance": ("viewer", "equity, cash and exposure"),
    "/trades": ("viewer", "the newest closed trades (/trades 10)"),
    "/performance": ("viewer", "P&L per pair"),
    "/locks": ("viewer", "pair locks (the API's and each guard's)"),
    "/health": ("viewer", "last cycle and the notification channels"),
    "/stopentry": ("trader", "no new entries (exits still managed)"),
    "/startentry": ("trader", "entries again after /stopentry"),
    "/stop": ("trader", "stop the bot (paper steps no bar; live manages open plans)"),
    "/start": ("trader", "start it again"),
    "/forceexit": ("trader", "close a position at market: /forceexit BTC/USDT [fraction] or /forceexit all"),
    "/help": ("viewer", "this list"),
}
#: trader commands -> the control they queue
CONTROLS = {"/stopentry": "pause", "/startentry": "resume", "/stop": "stop", "/start": "start",
            "/forceexit": "force_exit"}
RANKS = {"viewer": 0, "trader": 1}


class Commands:
    """Answers of one bot. ``health`` adds the notifier's health to ``/health``."""

    def __init__(self, reader: BotReader, accounts: Accounts, channel: ControlChannel,
                 health: Optional[Callable[[], dict[str, Any]]] = None):
        self.reader, self.accounts, self.channel, self.health = reader, accounts, channel, health

    def answer(self, chat: str, role: str, text: str) -> str:
        words = text.strip().split()
        if not words:
            return "send /help for the commands"
        command = words[0].split("@", 1)[0].lower()
        if command not in COMMANDS:
            return f"unknown command {command[:40]}: send /help"
        needed = COMMANDS[command][0]
        user = User(USER_PREFIX + chat, role)
        if RANKS[role] < RANKS[needed]:
            self.accounts.audit(user, CONTROLS.get(command, command), {"command": command}, AUDIT_ADDRESS,
                                f"refused: the {role} role may not do this (needs {needed})")
            return f"refused: {command} needs the {needed} role (this chat is a {role})"
        if command in CONTROLS:
            return self._control(user, command, words[1:])
        return getattr(self, "_" + command[1:])(words[1:], role)

    def _control(self, user: User, command: str, args: list[str]) -> str:
        kind = CONTROLS[command]
        fields: dict[str, Any] = {}
        if kind == "force_exit":
            if not args:
                return "usage: /forceexit SYMBOL [fraction] or /forceexit all"
            symbol = None if args[0].lower() == "all" else args[0].upper()
            try:
                fraction = float(args[1]) if len(args) > 1 else 1.0
            except ValueError:
                fraction = -1.0
            if not 0.0 < fraction <= 1.0:
                return f"fraction must be a number in (0, 1], got {args[1][:20]!r}"
            fields = {"symbol": symbol, "fraction": fraction}
        audit_id = self.accounts.audit(user, kind, fields, AUDIT_ADDRESS, "queued")
        self.channel.submit(Control(kind, user=user.username, audit_id=audit_id, **fields))
        return f"{command[1:]} queued (control {audit_id}): the trading loop applies it at its next cycle"

    @staticmethod
    def result_for(control: Control, result: str) -> Optional[tuple[str, str]]:
        """(chat id, text) telling the chat that queued ``control`` what the loop did; None for
        another's control."""
        if not control.user.startswith(USER_PREFIX):
            return None
        return control.user[len(USER_PREFIX):], f"control {control.audit_id} ({control.kind}): {result}"

    # -- reads ---------------------------------------------------------------------------------
    def _help(self, args: list[str], role: str) -> str:
        return "\n".join(f"{c} - {text}" + ("" if RANKS[role] >= RANKS[need] else f" ({need} only)")
                         for c, (need, text) in COMMANDS.items())

    def _status(self, args: list[str], role: str) -> str:
        s = self.reader.snapshot()
        head = (f"status {s.get('status') or 'no cycle yet'}; running {bool(s.get('running'))}; entries "
                f"{'paused' if s.get('paused') else 'on'}; {'stopped; ' if s.get('stopped') else ''}kill switch "
                f"{'on' if s.get('kill_switch') else 'off'}")
        rows = [f"{p['symbol']}{' hedge' if p['hedge'] else ''} {'long' if p['side'] > 0 else 'short'} "
                f"{p['quantity']:g} @ {p['entry_price']:g}, now {p['price']:g}, P&L {p['unrealised_pnl']:+.2f}"
                + (f", stop {p['stop']:g}" if p.get("stop") is not None else "")
                + (f", take profit {p['take_profit']:g}" if p.get("take_profit") is not None else "")
                for p in s.get("positions", [])]
        return "\n".join([head, *(rows or ["no open position"])])

    def _profit(self, args: list[str], role: str) -> str:
        p = profit(self.reader.trades())
        today = list(p["day"].items())[-1] if p["day"] else None
        return (f"P&L {p['total']:+.2f} over {p['trades']} trades ({p['wins']} won), fees {p['fees']:.2f}"
                + (f"; {today[0]}: {today[1]:+.2f}" if today else ""))

    def _balance(self, args: list[str], role: str) -> str:
        s = self.reader.snapshot()
        return "; ".join(f"{k} {s[k]:,.2f}" if isinstance(s.get(k), (int, float)) else f"{k} unknown"
                         for k in ("equity", "cash", "exposure"))

    def _trades(self, args: list[str], role: str) -> str:
        n = int(args[0]) if args and args[0].isdigit() else 5
        found = self.reader.trades()[::-1][:max(1, min(n, 50))]
        return "\n".join(f"{t['symbol']} {'long' if t['side'] > 0 else 'short'} {t['pnl']:+.2f} ({t['exit_reason']})"
                         for t in found) or "no closed trade yet"

    def _performance(self, args: list[str], role: str) -> str:
        rows = performance(self.reader.trades(), "symbol")
        return "\n".join(f"{r['symbol']}: {r['pnl']:+.2f} over {r['trades']} trades, win rate {r['win_rate']:.0%}"
                         for r in rows) or "no closed trade yet"

    def _locks(self, args: list[str], role: str) -> str:
        s = self.reader.snapshot()
        rows = [f"{sym}: api" + ("" if until is None else f" until {until:.0f}") for sym, until in
                (s.get("locks") or {}).items()]
        rows += [f"{pair}: {guard} ({lock['why']})" for guard, found in (s.get("guard_locks") or {}).items()
                 for pair, lock in found.items()]
        return "\n".join(rows) or "no lock"

    def _health(self, args: list[str], role: str) -> str:
        h = self.reader.health()
        age = h["last_cycle_age_seconds"]
        lines = [f"status {h['status']}; last cycle {'never' if age is None else f'{age:.0f} s ago'}"]
        for name, c in ((self.health() if self.health else {}).get("channels") or {}).items():
            lines.append(f"{name}: {c['state']}, sent {c['sent']}, failed {c['failed']}, dropped {c['dropped']}, "
                         f"queued {c['queued']}")
        return "\n".join(lines)
