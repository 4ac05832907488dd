// Closed trades by their DCA ladder: how many entries were planned and how many filled.

import {h, section, table} from "../dom.js";
import {draw} from "../charts.js";

export const page = {
  path: "dca", title: "DCA", events: ["trade_closed"],

  async render({client, after}) {
    const {bands} = await client.get("/dca");
    const names = Object.keys(bands);
    const chart = h("div", {class: "chart", id: "dca-chart"});
    if (names.length) {
      after(() => draw(chart, [{x: names, y: names.map(n => bands[n]), type: "bar", name: "trades",
        marker: {color: "#2a6fdb"}}], {height: 300}));
    }
    return section("DCA bands",
      h("p", {class: "note"}, "Closed trades by ladder: entries filled / entries planned."),
      table([{label: "band", value: n => n}, {label: "trades", value: n => bands[n], num: true}], names,
        {empty: "no closed trade yet"}),
      names.length ? chart : null);
  },
};
