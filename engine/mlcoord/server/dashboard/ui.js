// What every page shares: the confirmation step of a control, short notices, and sending a control.

import {h} from "./dom.js";

/** Ask before a control: resolves true only when the user presses the confirm button. */
export function confirmAction(title, text, confirmLabel = "Confirm") {
  const dialog = document.getElementById("confirm");
  dialog.querySelector("h3").textContent = title;
  dialog.querySelector("p").textContent = text;
  dialog.querySelector("#confirm-ok").textContent = confirmLabel;
  return new Promise(resolve => {
    const done = value => {
      dialog.removeEventListener("close", onClose);
      resolve(value);
    };
    const onClose = () => done(dialog.returnValue === "ok");
    dialog.addEventListener("close", onClose);
    dialog.returnValue = "";
    dialog.showModal();
  });
}

/** A notice in the corner for a few seconds (``kind``: info, ok, error). */
export function notify(text, kind = "info") {
  const box = document.getElementById("notices");
  const note = h("div", {class: `notice ${kind}`, role: "status"}, text);
  box.append(note);
  setTimeout(() => note.remove(), kind === "error" ? 12000 : 6000);
}

/** Confirm, then send a control; the API queues it for the trading loop (202) and the result
 *  arrives later as a ``control`` event. */
export async function control(client, {title, text, method = "post", path, body, label}) {
  if (!(await confirmAction(title, text, label))) return null;
  try {
    const answer = method === "delete" ? await client.del(path) : await client.post(path, body || {});
    notify(`${title}: ${answer.status || "done"}${answer.control_id ? ` (control ${answer.control_id})` : ""}`, "ok");
    return answer;
  } catch (exc) {
    notify(`${title}: refused (${exc.status}): ${exc.message}`, "error");
    return null;
  }
}

export function canControl(role) {
  return role === "trader" || role === "admin";
}

/** A button that exists only for roles that may control (a viewer gets nothing, not a disabled button). */
export function controlButton(role, label, onClick, attrs = {}) {
  if (!canControl(role)) return null;
  return h("button", {type: "button", class: "control", onclick: onClick, ...attrs}, label);
}
