// The dashboard: a bot selector, pages picked by the URL's hash (#/positions), each page re-read
// when an event it depends on arrives on a bot's websocket. Roles come from the API: controls are
// not built at all for a viewer, and the API refuses them anyway.

import {h, money} from "./dom.js";
import {BotClient} from "./api.js";
import {activeBotId, loadBots, removeBot, setActiveBot, upsertBot} from "./bots.js";
import {notify} from "./ui.js";
import {page as overview} from "./pages/overview.js";
import {page as positions} from "./pages/positions.js";
import {page as trades} from "./pages/trades.js";
import {page as equity} from "./pages/equity.js";
import {page as ml} from "./pages/ml.js";
import {page as dca} from "./pages/dca.js";
import {page as journal} from "./pages/journal.js";
import {page as controls} from "./pages/controls.js";
import {page as audit} from "./pages/audit.js";
import {page as login} from "./pages/login.js";

const PAGES = [overview, positions, trades, equity, ml, dca, journal, controls, audit, login];
const RANK = {viewer: 0, trader: 1, admin: 2};
const ACTIVITY = 50;         // control results kept per bot

const clients = new Map();   // bot id -> BotClient
const activity = new Map();  // bot id -> control events, newest first
let shown = 0;               // the latest render's number: an older one finishing late is dropped
let timer = null;

function allowed(page, role) {
  return !page.role || (RANK[role] ?? -1) >= RANK[page.role];
}

function currentPage() {
  const path = location.hash.replace(/^#\/?/, "") || "overview";
  return PAGES.find(p => p.path === path) || overview;
}

function activeClient() {
  const id = activeBotId();
  return clients.get(id) || clients.values().next().value || null;
}

function clientFor(bot, login = null) {
  const client = new BotClient(bot, {onLoggedOut: expired});
  if (login) client.setAccess(login.access_token, login.expires_in);
  clients.set(bot.id, client);
  activity.set(bot.id, activity.get(bot.id) || []);
  client.subscribe(onEvent);
  return client;
}

function expired(client) {
  notify(`${client.bot.name}: the session expired; log in again`, "error");
  forget(client.bot.id);
}

function forget(id) {
  const client = clients.get(id);
  if (client) client.close();
  clients.delete(id);
  removeBot(id);
  if (!clients.size) location.hash = "#/login";
  render();
}

function onEvent(event, client) {
  const active = activeClient();
  if (event.type === "control") {
    const list = activity.get(client.bot.id) || [];
    list.unshift({...event, received: new Date().toISOString().slice(11, 19) + " UTC"});
    list.length = Math.min(list.length, ACTIVITY);
    activity.set(client.bot.id, list);
    notify(`${client.bot.name}: ${event.user || "?"} ${event.kind} ${event.symbol || ""} — ${event.result}`,
      event.result.startsWith("refused") || event.result.startsWith("failed") ? "error" : "ok");
  }
  if (event.type === "_connection" || (event.type === "cycle" && client === active)) scheduleBar();
  const page = currentPage();
  if (page.events.includes(event.type) && (page.everyBot || client === active)) schedule(300);
  if (event.type === "_connection" && page.everyBot) schedule(300);
}

/** Render again after ``delay`` ms: the events of a burst make one render, and a steady stream
 *  never postpones it (a render already due is kept). ``delay`` 0: now, whatever is due. */
function schedule(delay = 0) {
  if (delay > 0 && timer) return;
  clearTimeout(timer);
  timer = setTimeout(() => { timer = null; render(); }, delay);
}

let barTimer = null;
function scheduleBar() {
  if (barTimer) return;
  barTimer = setTimeout(() => { barTimer = null; renderBar(); }, 200);
}

async function renderBar() {
  const bar = document.getElementById("botbar");
  const client = activeClient();
  if (!client) {
    bar.replaceChildren();
    return;
  }
  const select = h("select", {id: "bot-select", "aria-label": "bot", onchange: e => select_(e.target.value)},
    [...clients.values()].map(c => h("option", {value: c.bot.id, selected: c === client}, c.bot.name)));
  const live = h("span", {class: `live ${client.live ? "on" : ""}`}, client.live ? "live" : "offline");
  const who = h("span", {id: "whoami", dataset: {role: client.role}}, `${client.bot.username} (${client.role})`);
  const out = h("button", {type: "button", id: "logout", onclick: () => forget(client.bot.id)}, "Log out");
  let summary = null;
  try {
    const [status, balance] = await Promise.all([client.get("/status"), client.get("/balance")]);
    const flags = [status.paused && "ENTRIES PAUSED", status.stopped && "STOPPED", status.kill_switch && "KILL SWITCH"]
      .filter(Boolean);
    summary = h("span", {class: "summary"}, `${status.status || "no cycle yet"} · equity ${money(balance.equity)}`,
      flags.length ? h("b", {class: "flag"}, " · " + flags.join(" · ")) : null);
  } catch (exc) {
    summary = h("span", {class: "summary neg"}, exc.message);
  }
  if (client !== activeClient()) return;
  bar.replaceChildren(select, live, summary, who, out);
  renderNav(client);
}

function renderNav(client) {
  const page = currentPage();
  const links = PAGES.filter(p => !p.public && allowed(p, client ? client.role : null)).map(p =>
    h("a", {href: `#/${p.path}`, class: p === page ? "current" : "", dataset: {page: p.path}}, p.title));
  links.push(h("a", {href: "#/login", class: page === login ? "current" : "", dataset: {page: "login"}}, "Add a bot"));
  document.getElementById("nav").replaceChildren(...(client ? links : []));
}

function select_(id) {
  setActiveBot(id);
  renderBar();
  render();
}

function added(bot, login) {
  const old = clients.get(bot.id);
  if (old) old.close();
  upsertBot(bot);
  setActiveBot(bot.id);
  clientFor(bot, login);
  renderBar();
  location.hash = "#/overview";
  render();
}

async function render() {
  const number = ++shown;
  const main = document.getElementById("view");
  let page = currentPage();
  const client = activeClient();
  if (!client && !page.public) {
    page = login;
  } else if (client && !allowed(page, client.role)) {
    location.hash = "#/overview";
    return;
  }
  renderNav(client);
  const after = [];
  const ctx = {client, role: client ? client.role : null, clients: [...clients.values()],
    activeId: client ? client.bot.id : null, activity: client ? activity.get(client.bot.id) || [] : [],
    after: fn => after.push(fn), refresh: () => schedule(0), select: select_, logout: forget, added};
  let node;
  try {
    node = await page.render(ctx);
  } catch (exc) {
    node = h("section", {}, h("p", {class: "neg"}, `${page.title}: ${exc.message}`));
  }
  if (number !== shown) return;       // a newer render started meanwhile
  if (client && client.role !== client.bot.role) {      // the API says the role changed: keep it, redraw the nav
    client.bot.role = client.role;
    upsertBot(client.bot);
    renderNav(client);
  }
  main.replaceChildren(node);
  main.dataset.page = page.path;
  for (const fn of after) fn();
}

function boot() {
  for (const bot of loadBots()) clientFor(bot);
  window.addEventListener("hashchange", () => render());
  document.addEventListener("securitypolicyviolation", e =>
    notify(`blocked by this dashboard's content security policy: ${e.blockedURI} (${e.violatedDirective})`, "error"));
  renderBar();
  render();
}

boot();
