// The ML view: each contributor's ensemble coefficient, rolling accuracy and log-loss, and the
// live reliability diagram against the reference saved with the model (calibration drift).

import {h, num, pct, section, table} from "../dom.js";
import {draw} from "../charts.js";
import {card} from "./trades.js";

export const page = {
  path: "ml", title: "ML", events: ["cycle"],

  async render({client, after}) {
    const ml = await client.get("/ml");
    const drift = ml.drift || {};
    const weights = h("div", {class: "chart", id: "ml-weights"});
    const reliability = h("div", {class: "chart", id: "ml-reliability"});
    const rows = ml.components || [];
    after(() => {
      if (rows.length) {
        draw(weights, [
          {x: rows.map(r => r.component), y: rows.map(r => r.coefficient), type: "bar", name: "ensemble coefficient",
            marker: {color: rows.map(r => (r.coefficient ?? 0) < 0 ? "#c0392b" : "#2a6fdb")}},
          {x: rows.map(r => r.component), y: rows.map(r => r.accuracy), type: "scatter", mode: "markers",
            name: "rolling accuracy", yaxis: "y2", marker: {size: 11, color: "#e67e22"}},
        ], {height: 320, yaxis: {title: {text: "coefficient"}},
          yaxis2: {title: {text: "accuracy"}, overlaying: "y", side: "right", range: [0, 1], showgrid: false}});
      }
      const live = (ml.reliability || {}).live || [];
      const ref = (ml.reliability || {}).reference;
      const traces = [
        {x: [0, 1], y: [0, 1], type: "scatter", mode: "lines", name: "perfect", line: {dash: "dot", color: "#999"}},
        binTrace(live, "live", "#2a6fdb"),
      ];
      if (Array.isArray(ref)) traces.push(binTrace(ref, "reference", "#13803a"));
      draw(reliability, traces, {height: 360, xaxis: {title: {text: "predicted"}, range: [0, 1]},
        yaxis: {title: {text: "observed"}, range: [0, 1]}});
    });
    return h("div", {},
      section("Calibration drift",
        h("div", {class: "cards"},
          card("drift", drift.state || "–", drift.state === "alert" ? "neg" : drift.state === "ok" ? "pos" : ""),
          card("ECE live", num(drift.ece_live, 3)),
          card("ECE reference", num(drift.ece_reference, 3)),
          card("outcomes", `${ml.outcomes_seen ?? 0}`)),
        h("p", {class: "note"}, ml.running === false ? ml.note :
          `Rolling window of ${ml.window} outcomes. Alert when the live ECE exceeds the reference's by more than ` +
          `${drift.threshold ?? 0.05} over at least ${drift.min_outcomes ?? 50} outcomes.`),
        reliability),
      section("Components",
        table([
          {label: "component", value: r => r.component},
          {label: "ensemble coefficient", value: r => r.coefficient === null ? "no ensemble" :
            `${num(r.coefficient, 3)}${r.coefficient < 0 ? " (faded)" : ""}`, num: true},
          {label: "outcomes", value: r => r.outcomes, num: true},
          {label: "rolling accuracy", value: r => pct(r.accuracy), num: true},
          {label: "log-loss", value: r => num(r.log_loss, 3), num: true},
        ], rows, {empty: "no ML component reports yet"}),
        rows.length ? weights : null));
  },
};

function binTrace(bins, name, color) {
  const kept = bins.filter(b => b.count > 0 && b.predicted !== null);
  return {x: kept.map(b => b.predicted), y: kept.map(b => b.observed), text: kept.map(b => `${b.count} outcomes`),
    type: "scatter", mode: "lines+markers", name, line: {color}, marker: {size: kept.map(b => 6 + Math.sqrt(b.count))}};
}
