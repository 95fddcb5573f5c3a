// Drawing the page: screens, device cards, notices. Text only ever goes in as textContent.

import { clockTime, eventInWords, lockoutInWords, relativeTime } from "./format.js";

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

/** Draw this device and the other devices; `onSignOut(session)` is each card's button. */
export function renderDevices(sessions, currentId, onSignOut) {
  const focused = document.activeElement?.closest("[data-session-id]")?.dataset.sessionId;
  const current = sessions.filter((s) => s.session_id === currentId);
  const others = sessions.filter((s) => s.session_id !== currentId);
  $("this-device").replaceChildren(...current.map((s) => deviceCard(s, onSignOut, true)));
  $("other-devices").replaceChildren(...others.map((s) => deviceCard(s, onSignOut, false)));
  $("no-others").hidden = others.length > 0;
  $("revoke-others").disabled = others.length === 0;
  if (focused) document.querySelector(`[data-session-id="${CSS.escape(focused)}"] button`)?.focus();
}

function deviceCard(session, onSignOut, isCurrent) {
  const card = $("device-template").content.firstElementChild.cloneNode(true);
  const name = session.device_name || "Unknown device";
  card.dataset.sessionId = session.session_id;
  card.querySelector(".device-name").textContent = name;
  card.querySelector(".device-name").title = session.user_agent || "";
  card.querySelector(".ip").textContent = session.ip || "unknown";
  setTime(card.querySelector(".created"), session.created_at);
  setTime(card.querySelector(".seen"), session.last_seen_at);
  const button = card.querySelector(".sign-out");
  button.setAttribute("aria-label", isCurrent ? "Sign out this device" : `Sign out ${name}`);
  button.addEventListener("click", () => onSignOut(session, button));
  return card;
}

/** The "Recent activity" list: what happened, on which device, from where, when. */
export function renderActivity(events) {
  $("activity").replaceChildren(...events.map(activityItem));
  $("activity").hidden = events.length === 0;
  $("no-activity").hidden = events.length > 0;
}

function activityItem(event) {
  const item = $("activity-template").content.firstElementChild.cloneNode(true);
  item.querySelector(".what").textContent = eventInWords(event);
  if (event.type === "login.failed") {
    item.classList.add("failed");
    item.querySelector(".device").textContent = lockoutInWords(event.failures);
    item.querySelector(".ip").textContent = event.failures.ips.map((s) => s.ip).join(", ");
  } else {
    item.querySelector(".device").textContent = event.session.device_name || "Unknown device";
    item.querySelector(".ip").textContent = event.session.ip || "unknown address";
  }
  setTime(item.querySelector(".when"), event.at);
  return item;
}

/** Fill a <time data-relative> with "5 minutes ago"; refreshRelativeTimes keeps it current. */
function setTime(element, value) {
  const date = value ? new Date(value) : null;
  if (!date || Number.isNaN(date.getTime())) {
    element.textContent = "unknown";
    return;
  }
  element.dateTime = date.toISOString();
  element.title = clockTime(date);
  element.textContent = relativeTime(date);
}

export function refreshRelativeTimes() {
  for (const element of document.querySelectorAll("time[data-relative][datetime]")) {
    element.textContent = relativeTime(new Date(element.dateTime));
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
