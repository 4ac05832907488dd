// The decision journal: every decision with each contributor's vote, weight and reasons, the
// plan, levels and sizing (the product's decision block), newest first.

import {h, num, pct, section, table} from "../dom.js";

const open = new Set();     // decisions the user expanded stay expanded across live refreshes
let symbol = "";

export const page = {
  path: "journal", title: "Journal", events: ["decision"],

  async render(ctx) {
    const {client} = ctx;
    const [found, status] = await Promise.all([client.get("/decisions", {limit: 100, symbol}), client.get("/status")]);
    const filter = h("select", {onchange: e => { symbol = e.target.value; ctx.refresh(); }},
      h("option", {value: ""}, "every symbol"),
      (status.symbols || []).map(s => h("option", {value: s, selected: s === symbol}, s)));
    return section(`Decisions (${found.total})`,
      h("p", {class: "note"}, "Symbol ", filter, " — the newest 100; each line opens its votes and reasons."),
      found.decisions.length ? found.decisions.map(decision) : h("p", {class: "empty"}, "no decision yet"));
  },
};

function decision(d) {
  const key = `${d.time}|${d.symbol}`;
  const outcome = d.outcome === "entered" ? "pos" : d.outcome.startsWith("vetoed") || d.outcome.startsWith("filtered") ? "neg" : "";
  const details = h("details", {class: "decision", open: open.has(key),
    ontoggle: e => e.target.open ? open.add(key) : open.delete(key)},
    h("summary", {},
      h("span", {class: "when"}, d.time.slice(0, 16).replace("T", " ")), " ",
      h("b", {}, d.symbol), " ", h("span", {class: `signal ${d.signal}`}, d.signal), " ",
      h("span", {class: `outcome ${outcome}`}, d.outcome), " ",
      h("span", {class: "note"}, `confidence ${num(d.raw_confidence, 3)} → ${num(d.confidence, 3)} ` +
        `(threshold ${num(d.threshold, 3)})`)),
    d.reasons.length ? h("p", {}, "Reasons: ", d.reasons.join("; ")) : null,
    table([
      {label: "contributor", value: v => v.display_name},
      {label: "vote", value: v => v.signal},
      {label: "confidence", value: v => num(v.confidence, 3), num: true},
      {label: "p up / down", value: v => v.p_up === undefined ? "–" : `${num(v.p_up, 3)} / ${num(v.p_down, 3)}`, num: true},
      {label: "weight", value: v => v.coefficient === undefined ? num(v.weight, 3) :
        `coef ${num(v.coefficient, 3)}${v.faded ? " (faded)" : ""}, contribution ${num(v.contribution, 3)}`, num: true},
      {label: "reasons", value: v => v.reasons.join("; "), cls: () => "wrap"},
    ], d.votes, {empty: "no vote (the signal was HOLD)"}),
    d.plan ? h("p", {}, `Plan (${d.plan.planner}, ${d.plan.side}): `,
      d.plan.legs.map(l => `${l.market ? "market" : num(l.price)} × ${pct(l.fraction, 0)}`).join(", "),
      d.plan.reasons.length ? ` — ${d.plan.reasons.join("; ")}` : "") : null,
    d.levels ? h("p", {}, `Stop ${num(d.levels.stop)}, take profit ${num(d.levels.take_profit)}`,
      d.levels.reasons.length ? ` — ${d.levels.reasons.join("; ")}` : "") : null,
    d.sizing ? h("p", {}, `Size ${num(d.sizing.quantity)}, risk ${num(d.sizing.risk)}`,
      d.sizing.veto ? ` — veto: ${d.sizing.veto}` : "", d.sizing.reasons.length ? ` — ${d.sizing.reasons.join("; ")}` : "")
      : null,
    d.expected_return ? h("p", {}, `Expected return: ${d.expected_return.text}`) : null,
    d.veto ? h("p", {class: "neg"}, `Veto: ${d.veto}`) : null);
  return details;
}
