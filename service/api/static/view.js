// Drawing the page: screens, device cards, notices. Text only ever goes in as textContent.

import { deviceText, seenText, whereText } from "/sdk/sessionwire.js";
import { clockTime, eventInWords, lockoutInWords, relativeTime } from "./format.js";
import { deviceIcon, TYPE_WORDS } from "./icons.js";

const SCREENS = ["loading", "sign-in", "devices", "signed-out"];
const LIVE_WORDS = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  off: "Not live",
};
const NOTICE_MS = 8000;

export const $ = (id) => document.getElementById(id);

/** Show one screen, hide the others, and move focus to its heading. */
export function showScreen(id, { focus = true } = {}) {
  for (const screen of SCREENS) $(screen).hidden = screen !== id;
  if (focus) document.querySelector(`#${id} h1`)?.focus();
}

export function showLive(status) {
  const live = $("live");
  live.hidden = !status;
  live.dataset.status = status ?? "";
  live.textContent = LIVE_WORDS[status] ?? "";
}

/** Show `text` in a message element, or hide it when `text` is empty. */
export function showMessage(id, text) {
  $(id).textContent = text ?? "";
  $(id).hidden = !text;
}

let noticeTimer = null;

export function showNotice(text) {
  showMessage("notice", text);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => showMessage("notice", ""), NOTICE_MS);
}

/**
 * Draw this device and the other devices. `actions.signOut(session, button)` and
 * `actions.rename(session, name)` (a promise; rejects with the words to show) are each
 * card's controls; a card being renamed keeps its open form across redraws.
 */
export function renderDevices(sessions, currentId, actions) {
  const focused = document.activeElement?.closest("[data-session-id]");
  const focusedId = focused?.dataset.sessionId;
  const focusedClass = document.activeElement?.classList[0];
  const editing = openRenames();
  const namesTwice = repeatedNames(sessions);
  const card = (s, isCurrent) => deviceCard(s, actions, isCurrent, namesTwice, editing);
  const current = sessions.filter((s) => s.session_id === currentId);
  const others = sessions.filter((s) => s.session_id !== currentId);
  $("this-device").replaceChildren(...current.map((s) => card(s, true)));
  $("other-devices").replaceChildren(...others.map((s) => card(s, false)));
  $("no-others").hidden = others.length > 0;
  $("revoke-others").disabled = others.length === 0;
  if (focusedId) {
    const again = document.querySelector(`[data-session-id="${CSS.escape(focusedId)}"]`);
    (again?.querySelector(`.${focusedClass}`) ?? again?.querySelector("button"))?.focus();
  }
}

/** Close a card's rename form (after it saved), its button focused again. */
export function closeRename(sessionId) {
  const card = document.querySelector(`[data-session-id="${CSS.escape(sessionId)}"]`);
  const button = card?.querySelector(".rename");
  card?.querySelector(".rename-form")?.setAttribute("hidden", "");
  if (button) button.hidden = false;
  button?.focus();
}

/** Rename forms open now: session id -> { value, error }. */
function openRenames() {
  const open = new Map();
  for (const form of document.querySelectorAll(".device .rename-form:not([hidden])")) {
    const id = form.closest("[data-session-id]").dataset.sessionId;
    open.set(id, { value: form.elements.device_name.value, error: form.querySelector(".rename-error").textContent });
  }
  return open;
}

function repeatedNames(sessions) {
  const counts = new Map();
  for (const s of sessions) counts.set(nameOf(s), (counts.get(nameOf(s)) ?? 0) + 1);
  return new Set([...counts].filter(([, n]) => n > 1).map(([name]) => name));
}

const nameOf = (session) => session.device_name || "Unknown device";

function deviceCard(session, actions, isCurrent, namesTwice, editing) {
  const card = $("device-template").content.firstElementChild.cloneNode(true);
  const name = nameOf(session);
  const type = TYPE_WORDS[session.device_type] ? session.device_type : "unknown";
  card.dataset.sessionId = session.session_id;
  card.dataset.deviceType = type;
  card.dataset.online = session.online ? "true" : "false";
  card.querySelector(".device-icon").append(deviceIcon(type));
  card.querySelector(".device-name").textContent = name;
  card.querySelector(".device-name").title = session.user_agent || "";
  card.querySelector(".online").hidden = !session.online;
  card.querySelector(".device-what").textContent =
    [TYPE_WORDS[type], deviceText(session)].filter(Boolean).join(" · ");
  const where = whereText(session.location);
  card.querySelector(".where").textContent =
    [where, session.ip || (where ? "" : "unknown address")].filter(Boolean).join(" · ");
  setTime(card.querySelector(".created"), session.created_at);
  setTime(card.querySelector(".seen"), session.last_seen_at, seenText);
  if (namesTwice.has(name)) showTellApart(card.querySelector(".tell-apart"), session);
  const signOut = card.querySelector(".sign-out");
  signOut.setAttribute("aria-label", isCurrent ? "Sign out this device" : `Sign out ${name}`);
  signOut.addEventListener("click", () => actions.signOut(session, signOut));
  wireRename(card, session, name, isCurrent, actions.rename, editing.get(session.session_id));
  return card;
}

/** Two devices of one name: what tells them apart (when each signed in, from where). */
function showTellApart(element, session) {
  const first = new Date(session.created_at);
  const when = Number.isNaN(first.getTime()) ? "at an unknown time" : clockTime(first);
  element.textContent =
    `Another device has this name: this one signed in on ${when}` +
    `${session.ip ? `, last from ${session.ip}` : ""} (id ${session.session_id.slice(0, 8)}).`;
  element.hidden = false;
}

/** The card's Rename button opens an inline form: Enter saves, Escape cancels. */
function wireRename(card, session, name, isCurrent, rename, open) {
  const button = card.querySelector(".rename");
  const form = card.querySelector(".rename-form");
  const input = form.elements.device_name;
  const error = form.querySelector(".rename-error");
  const label = form.querySelector(".rename-label");
  const inputId = `rename-${session.session_id}`;
  input.id = inputId;
  label.htmlFor = inputId;
  label.textContent = isCurrent ? "New name for this device" : `New name for ${name}`;
  button.setAttribute("aria-label", isCurrent ? "Rename this device" : `Rename ${name}`);
  const show = (value, words = "") => {
    form.hidden = false;
    button.hidden = true;
    input.value = value;
    showError(error, words);
  };
  const close = () => {
    form.hidden = true;
    button.hidden = false;
    button.focus();
  };
  button.addEventListener("click", () => {
    show(session.device_name);
    input.select();
  });
  form.querySelector(".cancel").addEventListener("click", close);
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const wanted = input.value.trim();
    if (wanted === session.device_name) {
      close();
      return;
    }
    form.querySelector(".save").disabled = true;
    try {
      await rename(session, wanted); // redraws the list with the new name
    } catch (words) {
      showError(error, String(words));
      input.focus();
    } finally {
      form.querySelector(".save").disabled = false;
    }
  });
  if (open) show(open.value, open.error);
}

function showError(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

/** The "Recent activity" list: what happened, on which device, from where, when. */
export function renderActivity(events) {
  $("activity").replaceChildren(...events.map(activityItem));
  $("activity").hidden = events.length === 0;
  $("no-activity").hidden = events.length > 0;
}

function activityItem(event) {
  const item = $("activity-template").content.firstElementChild.cloneNode(true);
  const [words, by] = eventInWords(event);
  const what = item.querySelector(".what");
  what.append(words);
  if (by) what.append(" ", quoted(by, "by")); // a device's name, set apart from the words
  const on = item.querySelector(".on");
  if (event.type === "login.failed") {
    item.classList.add("failed");
    const lockout = lockoutInWords(event.failures);
    if (lockout) on.append(lockout, " · ");
    item.querySelector(".ip").textContent = event.failures.ips.map((s) => s.ip).join(", ");
  } else {
    const device = quoted(event.session.device_name || "Unknown device", "subject");
    on.append(event.type === "session.renamed" ? "to " : "on ", device, " · ");
    item.querySelector(".ip").textContent = event.session.ip || "unknown address";
  }
  setTime(item.querySelector(".when"), event.at);
  return item;
}

/** A device's name in quotation marks (a <q>: the marks are the browser's, not the text). */
function quoted(text, className) {
  const q = document.createElement("q");
  q.className = className;
  q.textContent = text;
  return q;
}

/** Fill a <time data-relative> with "5 minutes ago"; refreshRelativeTimes keeps it current. */
function setTime(element, value, words = relativeTime) {
  const date = value ? new Date(value) : null;
  if (!date || Number.isNaN(date.getTime())) {
    element.textContent = "unknown";
    return;
  }
  element.dateTime = date.toISOString();
  element.title = clockTime(date);
  element.textContent = words(date);
}

/** Keep every relative time current ("active now" for a last-seen, else "5 minutes ago"). */
export function refreshRelativeTimes() {
  for (const element of document.querySelectorAll("time[data-relative][datetime]")) {
    const words = element.dataset.relative === "seen" ? seenText : relativeTime;
    element.textContent = words(new Date(element.dateTime));
  }
}

/** The "You were signed out" screen: the reason in words, and who did it and when. */
export function renderSignedOut(revocation) {
  $("signed-out-reason").textContent = revocation.text;
  const by = $("signed-out-by");
  by.replaceChildren();
  if (revocation.by) {
    const device = document.createElement("strong");
    device.textContent = revocation.by.device_name || "another device";
    by.append("Signed out by ", device, revocation.by.ip ? ` (${revocation.by.ip})` : "");
  } else {
    by.append("Signed out");
  }
  if (revocation.at) {
    const time = document.createElement("time");
    time.dataset.relative = "";
    setTime(time, revocation.at);
    by.append(" ", time, ` (${time.title})`);
  }
  by.append(".");
}
