// The bots this browser watches, kept in localStorage as FreqUI does: URL, name, username, role and
// the refresh token. Never a password; never an access token (those live in memory only).

const KEY = "mlcoord.dashboard.bots";
const ACTIVE = "mlcoord.dashboard.active";

export function loadBots() {
  try {
    const list = JSON.parse(localStorage.getItem(KEY) || "[]");
    return Array.isArray(list) ? list.filter(b => b && b.id && b.url) : [];
  } catch {
    return [];
  }
}

export function saveBots(bots) {
  localStorage.setItem(KEY, JSON.stringify(bots.map(({id, name, url, username, role, refresh_token}) =>
    ({id, name, url, username, role, refresh_token}))));
}

export function upsertBot(bot) {
  const bots = loadBots().filter(b => b.id !== bot.id);
  bots.push(bot);
  saveBots(bots);
  return bots;
}

export function removeBot(id) {
  const bots = loadBots().filter(b => b.id !== id);
  saveBots(bots);
  if (activeBotId() === id) localStorage.removeItem(ACTIVE);
  return bots;
}

export function activeBotId() {
  return localStorage.getItem(ACTIVE);
}

export function setActiveBot(id) {
  localStorage.setItem(ACTIVE, id);
}

/** A bot's key: its API origin and the user (the same bot may be watched as two users). */
export function botId(url, username) {
  return `${username}@${url}`;
}

/** "http://127.0.0.1:8080/" or "127.0.0.1:8080" -> "http://127.0.0.1:8080" (an origin, no path). */
export function normaliseUrl(text) {
  const raw = String(text || "").trim();
  const url = new URL(/^https?:\/\//i.test(raw) ? raw : `http://${raw}`);
  return url.origin;
}
