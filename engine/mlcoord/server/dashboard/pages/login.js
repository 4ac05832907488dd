// Adding a bot: its API's URL and a user's credentials (as FreqUI does). The password is sent once,
// to the bot's login route; what is kept is the refresh token it answers.

import {h, section} from "../dom.js";
import {login} from "../api.js";
import {botId, normaliseUrl} from "../bots.js";

export const page = {
  path: "login", title: "Add a bot", events: [], public: true,

  async render(ctx) {
    const error = h("p", {class: "neg", id: "login-error", role: "alert"});
    const field = (label, attrs) => h("label", {}, label, h("input", attrs));
    const form = h("form", {id: "login", onsubmit: async e => {
      e.preventDefault();
      const data = new FormData(form);
      error.textContent = "";
      let url;
      try {
        url = normaliseUrl(data.get("url"));
      } catch {
        error.textContent = `url: not a URL: ${data.get("url")}`;
        return;
      }
      const username = String(data.get("username"));
      try {
        const answer = await login(url, username, String(data.get("password")));
        form.reset();
        ctx.added({id: botId(url, username), name: String(data.get("name") || "") || url, url, username,
          role: answer.role, refresh_token: answer.refresh_token}, answer);
      } catch (exc) {
        error.textContent = exc.status === 0 && url !== location.origin
          ? `${exc.message} (is ${url} listed in this server's [api] dashboard_origins, and this dashboard's origin ` +
            "in that bot's [api] cors_origins?)"
          : `login refused: ${exc.message}`;
      }
    }},
    field("Bot URL", {name: "url", value: location.origin, required: true, autocomplete: "url"}),
    field("Name (optional)", {name: "name", placeholder: "e.g. BTC paper"}),
    field("Username", {name: "username", required: true, autocomplete: "username"}),
    field("Password", {name: "password", type: "password", required: true, autocomplete: "current-password"}),
    h("button", {type: "submit"}, "Log in"), error);
    return section("Log in to a bot", form,
      h("p", {class: "note"}, "The access token lives in this page's memory only; the refresh token is kept in this " +
        "browser's local storage until you log out."));
  },
};
