// One bot's API: login and refresh (JWT), authenticated calls, and the event stream. The access
// token goes in the Authorization header, never in a URL; the websocket takes its own 60-second
// token in the query string, as the API designed it (a fresh one for each connection).

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail))
      : response.statusText;
    throw new ApiError(response.status, detail);
  }
  return body;
}

async function call(url, options) {
  try {
    return await fetch(url, options);
  } catch (exc) {
    throw new ApiError(0, `cannot reach ${new URL(url).origin}: ${exc.message}`);
  }
}

/** Log in at ``url`` (an origin): {access_token, refresh_token, role, expires_in}. */
export async function login(url, username, password) {
  return answer(await call(`${url}/api/v1/auth/login`, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({username, password}),
  }));
}

export class BotClient {
  /** ``bot``: the stored entry (url, username, refresh_token); ``onLoggedOut`` when the refresh token fails. */
  constructor(bot, {onLoggedOut = () => {}} = {}) {
    this.bot = bot;
    this.access = null;
    this.expires = 0;
    this.role = bot.role || "viewer";
    this.onLoggedOut = onLoggedOut;
    this.socket = null;
    this.listeners = new Set();
    this.closed = false;
    this.retry = 1000;
    this.live = false;
    this.connecting = false;
  }

  get base() {
    return `${this.bot.url}/api/v1`;
  }

  /** A fresh access token from the refresh token (and the role as the API says it is now). */
  async refresh() {
    if (!this.bot.refresh_token) throw new ApiError(401, "not logged in");
    const r = await call(`${this.base}/auth/refresh`, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({refresh_token: this.bot.refresh_token}),
    });
    if (r.status === 401) {
      this.onLoggedOut(this);
      throw new ApiError(401, "the session expired: log in again");
    }
    const body = await answer(r);
    this.setAccess(body.access_token, body.expires_in);
    this.role = body.role;
    return body;
  }

  /** Keep an access token; it is renewed 30 s before it expires (not after a refused call). */
  setAccess(token, seconds) {
    this.access = token;
    this.expires = Date.now() + (seconds - 30) * 1000;
  }

  async request(method, path, body) {
    if (!this.access || Date.now() >= this.expires) await this.refresh();
    const send = () => call(`${this.base}${path}`, {
      method, headers: {"Authorization": `Bearer ${this.access}`, ...(body ? {"Content-Type": "application/json"} : {})},
      body: body ? JSON.stringify(body) : undefined,
    });
    let r = await send();
    if (r.status === 401) {       // the token was refused all the same (a clock off): once more with a fresh one
      await this.refresh();
      r = await send();
    }
    return answer(r);
  }

  get(path, params) {
    const query = params ? "?" + new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== ""))
      : "";
    return this.request("GET", path + query);
  }

  post(path, body = {}) {
    return this.request("POST", path, body);
  }

  del(path) {
    return this.request("DELETE", path);
  }

  /** Call ``listener(event)`` for every event of the stream (connected on first use, reconnected with backoff). */
  subscribe(listener) {
    this.listeners.add(listener);
    if (!this.socket && !this.connecting) this.connect();
    return () => this.listeners.delete(listener);
  }

  async connect() {
    if (this.closed) return;
    this.connecting = true;
    let token;
    try {
      token = (await this.post("/auth/ws-token")).ws_token;
    } catch {
      this.connecting = false;
      this.reconnectLater();
      return;
    }
    this.connecting = false;
    const url = this.bot.url.replace(/^http/, "ws") + "/api/v1/ws?token=" + encodeURIComponent(token);
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.retry = 1000;
      this.setLive(true);
    });
    socket.addEventListener("message", message => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      for (const listener of this.listeners) listener(event, this);
    });
    socket.addEventListener("close", () => {
      if (this.socket === socket) this.socket = null;
      this.setLive(false);
      this.reconnectLater();
    });
  }

  setLive(live) {
    this.live = live;
    for (const listener of this.listeners) listener({type: "_connection", live}, this);
  }

  reconnectLater() {
    if (this.closed) return;
    setTimeout(() => { if (!this.socket && !this.connecting) this.connect(); }, this.retry);
    this.retry = Math.min(this.retry * 2, 30000);
  }

  close() {
    this.closed = true;
    if (this.socket) this.socket.close();
    this.socket = null;
  }
}
