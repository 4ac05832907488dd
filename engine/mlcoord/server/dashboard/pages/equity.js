// Equity with its drawdown underneath (as the backtest report draws them) and realised P&L per day.

import {h, money, pct, section, sign} from "../dom.js";
import {dates, draw} from "../charts.js";
import {card} from "./trades.js";

export const page = {
  path: "equity", title: "Equity", events: ["cycle", "trade_closed"],

  async render({client, after}) {
    const [curve, profit] = await Promise.all([client.get("/equity"), client.get("/profit")]);
    const equityChart = h("div", {class: "chart", id: "equity-chart"});
    const dailyChart = h("div", {class: "chart", id: "daily-chart"});
    const last = curve.equity.value.length ? curve.equity.value[curve.equity.value.length - 1] : null;
    const first = curve.equity.value.length ? curve.equity.value[0] : null;
    after(() => {
      draw(equityChart, [
        {x: dates(curve.equity.time_ns), y: curve.equity.value, name: "equity", type: "scatter", mode: "lines",
          line: {color: "#2a6fdb"}},
        {x: dates(curve.drawdown.time_ns), y: curve.drawdown.value.map(v => -v * 100), name: "drawdown %",
          type: "scatter", mode: "lines", fill: "tozeroy", line: {color: "#c0392b"}, xaxis: "x", yaxis: "y2"},
      ], {height: 460, yaxis: {domain: [0.32, 1], title: {text: "equity"}},
        yaxis2: {domain: [0, 0.25], title: {text: "drawdown %"}, gridcolor: "#eceff3"},
        xaxis: {anchor: "y2"}});
      const days = Object.keys(profit.day);
      draw(dailyChart, [{x: days, y: days.map(d => profit.day[d]), type: "bar", name: "realised P&L",
        marker: {color: days.map(d => profit.day[d] >= 0 ? "#13803a" : "#c0392b")}}], {height: 300});
    });
    return h("div", {},
      section("Equity and drawdown",
        h("div", {class: "cards"},
          card("equity", money(last)),
          card("change", first ? pct(last / first - 1, 2) : "–", sign(last - first)),
          card("max drawdown", pct(curve.max_drawdown, 2)),
          card("points", curve.points)),
        h("p", {class: "note"}, curve.source === "cycles"
          ? "Marked to each closed bar the bot stepped (one point per cycle with a new bar)."
          : "Realised P&L of the latest paper session's closed trades (the bot runs elsewhere)."),
        equityChart),
      section("Realised P&L per day (UTC)", dailyChart));
  },
};
