// Closed trades (newest first, paged), the profit summary and performance per pair.

import {h, money, num, pct, section, sign, side, table, time} from "../dom.js";

const PAGE = 50;
let offset = 0;
let offsetOf = null;        // the bot the offset is of (another bot starts at its newest trades)

export const page = {
  path: "trades", title: "Trades", events: ["trade_closed"],

  async render(ctx) {
    const {client} = ctx;
    if (offsetOf !== client.bot.id) [offset, offsetOf] = [0, client.bot.id];
    const [found, profit, perf] = await Promise.all([
      client.get("/trades", {limit: PAGE, offset}), client.get("/profit"), client.get("/performance")]);
    const pager = h("p", {class: "pager"},
      h("button", {type: "button", disabled: offset === 0,
        onclick: () => { offset = Math.max(0, offset - PAGE); ctx.refresh(); }}, "newer"),
      ` ${found.total ? offset + 1 : 0}-${Math.min(offset + PAGE, found.total)} of ${found.total} `,
      h("button", {type: "button", disabled: offset + PAGE >= found.total,
        onclick: () => { offset += PAGE; ctx.refresh(); }}, "older"));
    return h("div", {},
      section("Profit",
        h("div", {class: "cards"},
          card("realised P&L", money(profit.total), sign(profit.total)),
          card("trades", profit.trades),
          card("win rate", profit.trades ? pct(profit.wins / profit.trades) : "–"),
          card("fees", money(profit.fees)))),
      section("Closed trades",
        table([
          {label: "closed", value: t => time(t.closed_at)},
          {label: "symbol", value: t => t.hedge ? `${t.symbol} (hedge)` : t.symbol},
          {label: "side", value: t => side(t.side)},
          {label: "entry", value: t => num(t.entry_price), num: true},
          {label: "exit", value: t => num(t.exit_price), num: true},
          {label: "quantity", value: t => num(t.quantity), num: true},
          {label: "P&L", value: t => money(t.pnl), num: true, cls: t => sign(t.pnl)},
          {label: "fees", value: t => money(t.fees), num: true},
          {label: "exit reason", value: t => t.exit_reason},
          {label: "entry reason", value: t => t.entry_reason},
          {label: "legs", value: t => `${t.entries_filled}/${t.entries_planned}`, num: true},
        ], found.trades, {empty: "no closed trade yet", rowAttrs: t => ({class: "trade", dataset: {symbol: t.symbol}})}),
        pager),
      section("Performance per pair", performance(perf.per_pair, "symbol")),
      section("Performance per exit reason", performance(perf.per_exit_reason, "exit_reason")));
  },
};

export function card(label, value, cls = "") {
  return h("div", {class: "card"}, h("div", {class: "label"}, label), h("div", {class: `value ${cls}`}, value));
}

function performance(rows, key) {
  return table([
    {label: key.replace("_", " "), value: r => r[key]},
    {label: "trades", value: r => r.trades, num: true},
    {label: "P&L", value: r => money(r.pnl), num: true, cls: r => sign(r.pnl)},
    {label: "win rate", value: r => pct(r.win_rate), num: true},
  ], rows, {empty: "no closed trade yet"});
}
