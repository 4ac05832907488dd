// Every bot this browser watches, side by side: status, equity, open positions, realised P&L and
// the calibration drift state. Opening one makes it the bot the other pages show.

import {h, money, section, sign} from "../dom.js";

export const page = {
  path: "overview", title: "Overview", events: ["cycle", "trade_closed", "control"], everyBot: true,

  async render(ctx) {
    const cards = await Promise.all(ctx.clients.map(client => botCard(ctx, client)));
    return section("Bots",
      h("div", {class: "bots"}, cards),
      h("p", {}, h("a", {href: "#/login"}, "Add a bot"), " (its URL and a user's credentials; this browser keeps the " +
        "URL, the username and a refresh token, never the password)."));
  },
};

async function botCard(ctx, client) {
  const bot = client.bot;
  const active = bot.id === ctx.activeId;
  const head = h("h3", {}, bot.name || bot.url, " ", h("span", {class: `live ${client.live ? "on" : ""}`,
    title: client.live ? "live: event stream connected" : "event stream not connected"}, client.live ? "live" : "offline"));
  const meta = h("p", {class: "note"}, `${bot.url} — ${bot.username} (${client.role})`);
  const buttons = h("p", {},
    active ? h("b", {}, "shown on the other pages") :
      h("button", {type: "button", onclick: () => ctx.select(bot.id)}, "Open"),
    " ", h("button", {type: "button", onclick: () => ctx.logout(bot.id)}, "Log out"));
  try {
    const [status, balance, positions, profit, ml] = await Promise.all([client.get("/status"), client.get("/balance"),
      client.get("/positions"), client.get("/profit"), client.get("/ml")]);
    const unrealised = positions.positions.reduce((a, p) => a + p.unrealised_pnl, 0);
    const flags = [status.paused && "entries paused", status.stopped && "stopped", status.kill_switch && "KILL SWITCH",
      status.read_only && "read-only"].filter(Boolean);
    return h("div", {class: `bot ${active ? "active" : ""}`, dataset: {bot: bot.id}}, head, meta,
      h("dl", {},
        h("dt", {}, "status"), h("dd", {}, `${status.status || "–"}${status.running ? "" : " (not running)"}`),
        flags.length ? [h("dt", {}, "flags"), h("dd", {class: "neg"}, flags.join(", "))] : null,
        h("dt", {}, "equity"), h("dd", {}, money(balance.equity)),
        h("dt", {}, "open positions"), h("dd", {}, `${positions.positions.length} (unrealised `,
          h("span", {class: sign(unrealised)}, money(unrealised)), ")"),
        h("dt", {}, "realised P&L"), h("dd", {class: sign(profit.total)}, `${money(profit.total)} in ${profit.trades} trades`),
        h("dt", {}, "calibration"), h("dd", {class: ml.drift && ml.drift.state === "alert" ? "neg" : ""},
          ml.drift ? ml.drift.state : "–")),
      buttons);
  } catch (exc) {
    return h("div", {class: "bot error", dataset: {bot: bot.id}}, head, meta, h("p", {class: "neg"}, exc.message), buttons);
  }
}
