// Building the page from data without parsing markup: every value becomes a text node, so nothing a
// bot sends (a symbol, a reason, a username) can run as markup.

/** An element: h("td", {class: "num"}, "1.5", otherNode). Attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A table of rows; columns: [{label, value: row => cell, cls?: row => class, num?: true}]. */
export function table(columns, rows, {empty = "none", rowAttrs} = {}) {
  if (!rows.length) return h("p", {class: "empty"}, empty);
  const head = h("tr", {}, columns.map(c => h("th", {class: c.num ? "num" : ""}, c.label)));
  const body = rows.map(r => h("tr", rowAttrs ? rowAttrs(r) : {}, columns.map(c => {
    const cell = c.value(r);
    const cls = [c.num ? "num" : "", c.cls ? c.cls(r) : ""].filter(Boolean).join(" ");
    return h("td", {class: cls}, cell);
  })));
  return h("div", {class: "scroll"}, h("table", {}, h("thead", {}, head), h("tbody", {}, body)));
}

export function section(title, ...children) {
  return h("section", {}, h("h2", {}, title), ...children);
}

const MONEY = new Intl.NumberFormat("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});

export function money(x) {
  return x === null || x === undefined || Number.isNaN(x) ? "–" : MONEY.format(x);
}

export function num(x, digits = 6) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return Number(x).toPrecision(digits).replace(/\.?0+$/, "").replace(/\.?0+e/, "e");
}

export function pct(x, digits = 1) {
  return x === null || x === undefined ? "–" : `${(x * 100).toFixed(digits)} %`;
}

/** A bar time (ns since the epoch) or wall seconds as "2025-01-02 13:00 UTC". */
export function time(ns, {seconds = false} = {}) {
  if (ns === null || ns === undefined) return "–";
  const ms = seconds ? ns * 1000 : ns / 1e6;
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

export function sign(x) {
  return x > 0 ? "pos" : x < 0 ? "neg" : "";
}

export function side(s) {
  return s > 0 ? "long" : s < 0 ? "short" : "flat";
}
