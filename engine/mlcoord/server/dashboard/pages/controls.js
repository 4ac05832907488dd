// Controls (trader and admin): pause entries, stop, the kill switch, force exit, pair locks. Each
// asks for confirmation, is queued by the API for the trading loop and comes back as a ``control``
// event with the loop's result (listed under Activity).

import {h, section, table, time} from "../dom.js";
import {control, controlButton} from "../ui.js";

export const page = {
  path: "controls", title: "Controls", events: ["control", "cycle", "guard_action"], role: "trader",

  async render(ctx) {
    const {client, role} = ctx;
    const [status, locks] = await Promise.all([client.get("/status"), client.get("/locks")]);
    const send = (title, text, path, body, label) => control(client, {title, text, path, body, label});
    const switches = h("div", {class: "buttons"},
      status.paused
        ? controlButton(role, "Resume entries", () => send("Resume entries", "New entries are allowed again.", "/resume"))
        : controlButton(role, "Pause entries", () => send("Pause entries",
          "No new entry until resumed; open positions keep their stops, take profits and exits.", "/pause")),
      status.stopped
        ? controlButton(role, "Start", () => send("Start", "The bot steps bars again (missed ones are replayed).", "/start"))
        : controlButton(role, "Stop", () => send("Stop",
          "A paper session steps no bar until started; on live, entries stop and open plans stay managed.", "/stop")),
      status.kill_switch
        ? controlButton(role, "Kill switch off", () => send("Kill switch off", "Remove the kill switch file.",
          "/kill", {on: false}))
        : controlButton(role, "Kill switch on", () => send("Kill switch on",
          "Write the kill switch file: the session stops at its next cycle.", "/kill", {on: true}, "Engage"),
        {class: "control danger"}),
      controlButton(role, "Force exit all", () => send("Force-exit every position",
        "Close every open position at market at the bot's next cycle (and cancel working entries).", "/force-exit",
        {symbol: null, fraction: 1.0}, "Force exit all"), {class: "control danger"}));
    const lockRows = [
      ...Object.entries(locks.locks || {}).map(([symbol, until]) => ({by: "api", symbol,
        until: until === null ? "until removed" : time(until, {seconds: true}), why: "set through the API"})),
      ...Object.entries(locks.guard_locks || {}).flatMap(([guard, found]) => Object.entries(found).map(([symbol, l]) =>
        ({by: guard, symbol, until: time(l.until_ns), why: l.why}))),
    ];
    const unlock = r => controlButton(role, "Remove", () => control(client, {title: `Unlock ${r.symbol}`,
      text: `Lift the locks on ${r.symbol} that can be lifted (the API's, and a guard's that offers it).`,
      method: "delete", path: `/locks/${r.symbol}`, label: "Unlock"}), {dataset: {symbol: r.symbol}});
    const symbolField = h("select", {name: "symbol"}, (status.symbols || []).map(s => h("option", {value: s}, s)));
    const minutes = h("input", {type: "number", name: "minutes", min: "1", placeholder: "minutes (empty: until removed)"});
    const addLock = h("form", {class: "inline", onsubmit: e => {
      e.preventDefault();
      const body = {symbol: symbolField.value};
      if (minutes.value) body.minutes = Number(minutes.value);
      send(`Lock ${body.symbol}`, `No new entry on ${body.symbol} ` +
        (body.minutes ? `for ${body.minutes} minutes.` : "until removed."), "/locks", body, "Lock");
    }}, symbolField, minutes, h("button", {type: "submit", class: "control"}, "Add lock"));
    return h("div", {},
      section("Bot", h("p", {}, `Status: ${status.status || "–"}; entries ${status.paused ? "PAUSED" : "allowed"}; ` +
        `${status.stopped ? "STOPPED" : "stepping"}; kill switch ${status.kill_switch ? "ON" : "off"}` +
        `${status.read_only ? " (read-only: this server is attached to a store)" : ""}; ` +
        `${status.pending_controls ?? 0} control(s) waiting for the next cycle.`), switches),
      section("Pair locks",
        table([{label: "by", value: r => r.by}, {label: "symbol", value: r => r.symbol},
          {label: "until", value: r => r.until}, {label: "why", value: r => r.why, cls: () => "wrap"},
          {label: "", value: unlock}], lockRows, {empty: "no lock"}),
        addLock),
      section("Activity", activity(ctx.activity)));
  },
};

/** Control results as the loop applied them (``control`` events), newest first. */
export function activity(events) {
  return table([
    {label: "received", value: e => e.received},
    {label: "user", value: e => e.user},
    {label: "control", value: e => e.kind},
    {label: "symbol", value: e => e.symbol ?? "every"},
    {label: "result", value: e => e.result, cls: () => "wrap"},
  ], events, {empty: "no control applied since this page opened", rowAttrs: () => ({class: "activity"})});
}
