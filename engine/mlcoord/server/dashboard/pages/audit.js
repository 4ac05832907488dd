// The audit log (admin): every control and reload with who, role, from where, when, and the result.

import {h, section, table, time} from "../dom.js";

export const page = {
  path: "audit", title: "Audit", events: ["control"], role: "admin",

  async render({client}) {
    const {audit} = await client.get("/audit", {limit: 200});
    return section("Audit log",
      h("p", {class: "note"}, "The newest 200 rows; a queued control's result is the trading loop's once applied."),
      table([
        {label: "id", value: r => r.id, num: true},
        {label: "time", value: r => time(r.time)},
        {label: "user", value: r => r.username},
        {label: "role", value: r => r.role},
        {label: "action", value: r => r.action},
        {label: "params", value: r => JSON.stringify(r.params), cls: () => "wrap"},
        {label: "address", value: r => r.address},
        {label: "result", value: r => r.result, cls: () => "wrap"},
      ], audit, {empty: "nothing audited yet", rowAttrs: r => ({class: "audit", dataset: {action: r.action}})}));
  },
};
