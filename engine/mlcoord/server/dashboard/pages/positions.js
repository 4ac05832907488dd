// Open positions with live P&L (re-read at every cycle event), their legs, stop and take profit.

import {h, money, num, pct, section, sign, side, table, time} from "../dom.js";
import {canControl, control, controlButton} from "../ui.js";

export const page = {
  path: "positions", title: "Positions", events: ["cycle", "fill", "trade_closed", "control"],

  async render({client, role}) {
    const {positions, working_entries: working} = await client.get("/positions");
    const exit = p => control(client, {
      title: `Force-exit ${p.symbol}`, label: "Force exit",
      text: `Close the whole ${side(p.side)} position on ${p.symbol} (${num(p.quantity)}) at market at the bot's ` +
        "next cycle. The trade's exit reason will be api:force_exit.",
      path: "/force-exit", body: {symbol: p.symbol, fraction: 1.0},
    });
    const columns = [
      {label: "symbol", value: p => p.hedge ? `${p.symbol} (hedge)` : p.symbol},
      {label: "side", value: p => side(p.side)},
      {label: "quantity", value: p => num(p.quantity), num: true},
      {label: "entry", value: p => num(p.entry_price), num: true},
      {label: "price", value: p => num(p.price), num: true},
      {label: "unrealised P&L", value: p => money(p.unrealised_pnl), num: true, cls: p => sign(p.unrealised_pnl)},
      {label: "P&L %", value: p => pct((p.price / p.entry_price - 1) * p.side, 2), num: true,
        cls: p => sign(p.unrealised_pnl)},
      {label: "legs filled", value: p => `${p.entries_filled}/${p.entries_planned}`, num: true},
      {label: "stop", value: p => num(p.stop), num: true},
      {label: "take profit", value: p => num(p.take_profit), num: true},
      {label: "opened", value: p => time(p.opened_at)},
    ];
    const actions = canControl(role) ? [{label: "", value: p => p.hedge ? "" :
      controlButton(role, "Force exit", () => exit(p), {dataset: {symbol: p.symbol}, class: "control danger"})}] : [];
    const all = controlButton(role, "Force exit all", () => control(client, {
      title: "Force-exit every position", label: "Force exit all",
      text: "Close every open position at market at the bot's next cycle (and cancel working entries).",
      path: "/force-exit", body: {symbol: null, fraction: 1.0},
    }), {class: "control danger"});
    const unrealised = positions.reduce((a, p) => a + p.unrealised_pnl, 0);
    return h("div", {},
      section(`Open positions (${positions.length})`,
        h("p", {class: "note"}, `Unrealised P&L ${money(unrealised)}, marked to the last closed bar; updated every cycle.`),
        table([...columns, ...actions], positions, {empty: "no open position",
          rowAttrs: p => ({dataset: {symbol: p.symbol}, class: "position"})}),
        all),
      section("Working entry orders",
        table([
          {label: "symbol", value: e => e.symbol},
          {label: "side", value: e => side(e.side)},
          {label: "quantity", value: e => num(e.quantity), num: true},
          {label: "price", value: e => num(e.price), num: true},
        ], working, {empty: "no working entry"})));
  },
};
