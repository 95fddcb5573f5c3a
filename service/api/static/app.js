// "Your devices": sign in, see every signed-in device, sign them out, hear about it live.

import { ApiError, call, errorInWords } from "./api.js";
import { Gateway } from "./gateway.js";
import {
  $,
  refreshRelativeTimes,
  renderActivity,
  renderDevices,
  renderSignedOut,
  showLive,
  showMessage,
  showNotice,
  showScreen,
} from "./view.js";

const TOKEN_KEY = "sessionwire.token";
const DEVICE_KEY = "sessionwire.device_id";
// Per username, in localStorage: it must outlive the tab and the session (see signIn).
const DEVICE_TOKEN_KEY = "sessionwire.device_token.";
const CLOCK_MS = 15_000;
const RESYNC_MS = 60_000;
const ACTIVITY_LIMIT = 20;
const ACTIVITY_SETTLE_MS = 100; // one re-read for a burst of changes (say, "sign out all")
const SIGN_OUT_EVERYWHERE_QUESTION =
  "Sign out everywhere? Every device signed in to your account will be signed out, this one too.";

// One tab is one device: the token and device id live in this tab's sessionStorage only.
const state = {
  username: "",
  sessionId: "",
  sessions: [],
  gateway: null,
  resync: null,
  activityTimer: null,
  leaving: false,
};

const token = () => sessionStorage.getItem(TOKEN_KEY);

function deviceId() {
  let id = sessionStorage.getItem(DEVICE_KEY);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    id = `tab-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    sessionStorage.setItem(DEVICE_KEY, id);
  }
  return id;
}

/** An authenticated call; a 401 means this device is signed out, whatever the call was. */
async function authed(method, path) {
  try {
    return await call(method, path, { token: token() });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signedOut(revocationFrom(error));
    throw error;
  }
}

function revocationFrom(error) {
  if (error.problem.revoked) return error.problem.revoked;
  const reason = error.code === "token_expired" ? "expired" : "invalid";
  return { reason, at: null, by: null };
}

// ---- screens ---------------------------------------------------------------

function showSignIn(note = "") {
  leave();
  showMessage("sign-in-note", note);
  showMessage("sign-in-error", "");
  $("username").value ||= state.username;
  showScreen("sign-in", { focus: false });
  ($("username").value ? $("password") : $("username")).focus();
}

/** This device's session ended elsewhere: drop the token and say why, who, and when. */
function signedOut(revocation) {
  if (!token() || state.leaving) return;
  leave();
  renderSignedOut(revocation);
  showScreen("signed-out");
}

/** Forget the token and stop everything that used it. */
function leave() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.gateway?.stop();
  state.gateway = null;
  clearInterval(state.resync);
  clearTimeout(state.activityTimer);
  state.sessions = [];
  renderActivity([]);
  showLive(null);
}

// ---- signed in -----------------------------------------------------------------

/** Load who we are and the device list, then go live. */
async function enter() {
  const me = await authed("GET", "/me");
  state.username = me.username;
  state.sessionId = me.session.session_id;
  state.leaving = false;
  $("who").textContent = me.username;
  await Promise.all([loadSessions(), loadActivity()]);
  showMessage("action-error", "");
  showScreen("devices");
  state.resync = setInterval(() => resync().catch(() => {}), RESYNC_MS);
  await goLive();
}

/** Re-read the device list and the activity log (after a reconnect, or once a minute). */
function resync() {
  return Promise.all([loadSessions(), loadActivity()]);
}

async function loadSessions() {
  const { sessions } = await authed("GET", "/sessions");
  state.sessions = sessions;
  draw();
}

function draw() {
  renderDevices(state.sessions, state.sessionId, signOutDevice);
}

async function loadActivity() {
  const { events } = await authed("GET", `/activity?limit=${ACTIVITY_LIMIT}`);
  if (token()) renderActivity(events);
}

function loadActivitySoon() {
  clearTimeout(state.activityTimer);
  state.activityTimer = setTimeout(() => loadActivity().catch(() => {}), ACTIVITY_SETTLE_MS);
}

async function goLive() {
  let config;
  try {
    config = await call("GET", "/config");
  } catch {
    showLive("off");
    return;
  }
  if (!token()) return;
  state.gateway = new Gateway(config.gateway_url, token(), {
    onMessage: receive,
    onStatus: showLive,
    onFinalClose: () => resync().catch(() => {}),
    beforeRetry: resync,
  });
  state.gateway.start();
}

function receive(message) {
  switch (message.type) {
    case "ready":
      // Whatever happened while we were away is in the API; catch up.
      resync().catch(() => {});
      break;
    case "session.revoked":
      signedOut(message);
      break;
    case "sessions.changed":
      sessionsChanged(message.event, message.session);
      loadActivitySoon();
      break;
  }
}

function sessionsChanged(event, session) {
  if (!session?.session_id || session.session_id === state.sessionId) return;
  state.sessions = state.sessions.filter((s) => s.session_id !== session.session_id);
  if (event === "created") {
    state.sessions.unshift(session);
    const from = session.ip ? ` (${session.ip})` : "";
    showNotice(`New sign-in on ${session.device_name || "an unknown device"}${from}`);
  }
  draw();
}

// ---- actions -------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const fields = Object.fromEntries(new FormData(form));
  const button = form.querySelector("button");
  button.disabled = true;
  showMessage("sign-in-error", "");
  const username = fields.username.trim();
  try {
    const result = await call("POST", "/login", {
      body: {
        username,
        password: fields.password,
        device_name: fields.device_name.trim() || undefined,
        device_id: deviceId(),
        // A browser that signed in as this user before has a failure budget of its own:
        // guesses from elsewhere can't lock its owner out of it.
        device_token: localStorage.getItem(DEVICE_TOKEN_KEY + username) || undefined,
      },
    });
    sessionStorage.setItem(TOKEN_KEY, result.token);
    if (result.device_token) {
      localStorage.setItem(DEVICE_TOKEN_KEY + username, result.device_token);
    }
  } catch (error) {
    showMessage("sign-in-error", errorInWords(error));
    return;
  } finally {
    button.disabled = false;
  }
  form.password.value = "";
  showMessage("sign-in-note", "");
  await enterOrExplain();
}

/** Enter the device list; if the API fails (other than a 401), say so on the sign-in form. */
async function enterOrExplain() {
  try {
    await enter();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return; // signed-out screen is up
    showMessage("sign-in-error", errorInWords(error));
    showScreen("sign-in", { focus: false });
  }
}

/** Run an action from a button; its errors are shown under the device list. */
async function act(button, action) {
  button.disabled = true;
  showMessage("action-error", "");
  try {
    await action();
  } catch (error) {
    if (token()) showMessage("action-error", errorInWords(error));
  } finally {
    button.disabled = false;
    if (token()) draw(); // some buttons' state follows the list
  }
}

function signOutDevice(session, button) {
  if (session.session_id === state.sessionId) {
    return signOutSelf(button, "POST", "/logout", "You signed out of this device.");
  }
  return act(button, async () => {
    try {
      await authed("DELETE", `/sessions/${encodeURIComponent(session.session_id)}`);
    } catch (error) {
      if (error.code !== "session_not_found") throw error; // already gone is fine
    }
    sessionsChanged("revoked", session);
    showNotice(`Signed out ${session.device_name}.`);
    $("other-devices-title").focus(); // its button is gone; keep keyboard users in place
  });
}

function signOutOthers(button) {
  return act(button, async () => {
    const { revoked } = await authed("POST", "/sessions/revoke-others");
    state.sessions = state.sessions.filter((s) => !revoked.includes(s.session_id));
    draw();
    const count = revoked.length;
    showNotice(`Signed out ${count} other device${count === 1 ? "" : "s"}.`);
  });
}

/** Every device, this one too: one click too many would be costly, so ask first. */
function signOutEverywhere(button) {
  if (!confirm(SIGN_OUT_EVERYWHERE_QUESTION)) return;
  return signOutSelf(button, "POST", "/logout-all", "You signed out on every device.");
}

/** Sign this device out ourselves: back to the form, not the "you were signed out" screen. */
function signOutSelf(button, method, path, note) {
  return act(button, async () => {
    state.leaving = true; // the gateway's own notice of this is expected; ignore it
    try {
      await authed(method, path);
    } catch (error) {
      state.leaving = false;
      // Already signed out (401): that is what we wanted.
      if (!(error instanceof ApiError && error.status === 401)) throw error;
    }
    showSignIn(note);
  });
}

// ---- start -----------------------------------------------------------------------

async function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-in-again").addEventListener("click", () => showSignIn());
  $("revoke-others").addEventListener("click", (e) => signOutOthers(e.currentTarget));
  $("logout-all").addEventListener("click", (e) => signOutEverywhere(e.currentTarget));
  setInterval(refreshRelativeTimes, CLOCK_MS);
  if (token()) await enterOrExplain();
  else showSignIn();
}

start();
