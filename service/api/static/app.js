// "Your devices": sign in, see every signed-in device, sign them out, hear about it live.
// Everything that talks to Sessionwire goes through its client library, the very module a
// product's own page imports: the session is in an HttpOnly cookie this script never sees,
// shared by every tab of the browser (one browser, one device).

import { Sessionwire } from "/sdk/sessionwire.js";
import {
  $,
  closeRename,
  refreshRelativeTimes,
  renderActivity,
  renderDevices,
  renderSignedOut,
  showLive,
  showMessage,
  showNotice,
  showScreen,
} from "./view.js";

const CLOCK_MS = 15_000;
const RESYNC_MS = 60_000;
const ACTIVITY_LIMIT = 20;
const ACTIVITY_SETTLE_MS = 100; // one re-read for a burst of changes (say, "sign out all")
const BAD_NAME =
  "That name can't be used: a name has 1 to 100 characters, none of them control or " +
  "format characters (such as a line break).";
const SIGN_OUT_EVERYWHERE_QUESTION =
  "Sign out everywhere? Every device signed in to your account will be signed out, this one too.";

const sw = new Sessionwire();
const state = {
  username: "",
  sessions: [],
  // While the list is being read: every change made or heard since the read was sent,
  // replayed on its answer (which may predate them); null when no read is in flight.
  replay: null,
  resync: null,
  activityTimer: null,
  live: false,
};

const signedIn = () => sw.session !== null;

// ---- what the library hears --------------------------------------------------------------

sw.on("status", ({ status }) => {
  showLive(signedIn() ? status : null);
  // This device's own "online now" follows its socket: redraw when that flips.
  const live = status === "live";
  if (live !== state.live && signedIn() && !$("devices").hidden) {
    state.live = live;
    draw();
  }
});

/** This device's session ended elsewhere (another device, an administrator, expiry...). */
sw.on("signedOut", (signedOut) => {
  leave();
  renderSignedOut(signedOut);
  showScreen("signed-out");
});

/** Another tab of this browser signed in: so is this one. */
sw.on("signedIn", (me) => enterOrExplain(me));

sw.on("sessionsChanged", ({ event, session }) => {
  if (event === "resync") {
    resync().catch(() => {});
    return;
  }
  change((sessions) => {
    const known = sessions.find((s) => s.session_id === session.session_id);
    if (event === "revoked") return sessions.filter((s) => s !== known);
    // renamed, online, offline: the same device, told afresh (`current` stays ours)
    if (known) return sessions.map((s) => (s === known ? { ...s, ...session } : s));
    return [session, ...sessions];
  });
  if (event !== "online" && event !== "offline") loadActivitySoon();
});

sw.on("newSignIn", ({ text }) => showNotice(text));

// ---- screens ---------------------------------------------------------------------------

function showSignIn(note = "") {
  leave();
  showMessage("sign-in-note", note);
  showMessage("sign-in-error", "");
  $("username").value ||= state.username;
  showScreen("sign-in", { focus: false });
  ($("username").value ? $("password") : $("username")).focus();
}

/** Stop what the signed-in screen keeps running. */
function leave() {
  clearInterval(state.resync);
  clearTimeout(state.activityTimer);
  state.sessions = [];
  state.replay = null; // a read still in flight is dropped
  renderActivity([]);
  showLive(null);
}

// ---- signed in ---------------------------------------------------------------------------

/** Load the device list and the activity log, then show them (the library is live). */
async function enter(me) {
  clearInterval(state.resync);
  state.username = me.username;
  $("who").textContent = me.username;
  await Promise.all([loadSessions(), loadActivity()]);
  showMessage("action-error", "");
  showScreen("devices");
  showLive(sw.status);
  state.resync = setInterval(() => resync().catch(() => {}), RESYNC_MS);
}

/** Enter the device list; if the API fails (other than a sign-out), say so on the form. */
async function enterOrExplain(me) {
  try {
    await enter(me);
  } catch (error) {
    if (!signedIn()) return; // a 401: the signed-out screen is up
    showMessage("sign-in-error", sw.errorText(error));
    showScreen("sign-in", { focus: false });
  }
}

/** Re-read the device list and the activity log (after a reconnect, or once a minute). */
function resync() {
  return Promise.all([loadSessions(), loadActivity()]);
}

async function loadSessions() {
  const replay = [];
  state.replay = replay;
  const sessions = await sw.sessions();
  if (state.replay !== replay) return; // a newer read is on its way, or we signed out
  state.replay = null;
  state.sessions = replay.reduce((list, edit) => edit(list), sessions);
  draw();
}

/** Change the list now, and again on the answer of a read in flight (it may be older). */
function change(edit) {
  state.sessions = edit(state.sessions);
  state.replay?.push(edit);
  draw();
}

function draw() {
  // This device is online while its own socket is live: the page knows that first-hand
  // (the list may have been read before the socket came up; the gateway tells the others).
  const own = sw.session?.session_id;
  const live = sw.status === "live";
  state.live = live;
  const sessions = state.sessions.map((s) => (s.session_id === own ? { ...s, online: live } : s));
  renderDevices(sessions, own, { signOut: signOutDevice, rename });
}

async function loadActivity() {
  const events = await sw.activity({ limit: ACTIVITY_LIMIT });
  if (signedIn()) renderActivity(events);
}

function loadActivitySoon() {
  clearTimeout(state.activityTimer);
  state.activityTimer = setTimeout(() => loadActivity().catch(() => {}), ACTIVITY_SETTLE_MS);
}

// ---- actions -----------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const fields = Object.fromEntries(new FormData(form));
  const button = form.querySelector("button");
  button.disabled = true;
  showMessage("sign-in-error", "");
  let me;
  try {
    me = await sw.signIn({
      username: fields.username.trim(),
      password: fields.password,
      deviceName: fields.device_name.trim(),
    });
  } catch (error) {
    showMessage("sign-in-error", sw.errorText(error));
    return;
  } finally {
    button.disabled = false;
  }
  form.password.value = "";
  showMessage("sign-in-note", "");
  await enterOrExplain(me);
}

/** Run an action from a button; its errors are shown, in words, under the device list. */
async function act(button, action) {
  button.disabled = true;
  showMessage("action-error", "");
  try {
    await action();
  } catch (error) {
    if (signedIn()) showMessage("action-error", sw.errorText(error));
  } finally {
    button.disabled = false;
    if (signedIn()) draw(); // some buttons' state follows the list
  }
}

function signOutDevice(session, button) {
  if (session.session_id === sw.session?.session_id) {
    return signOutSelf(button, () => sw.signOut(), "You signed out of this device.");
  }
  return act(button, async () => {
    try {
      await sw.revoke(session.session_id);
    } catch (error) {
      if (error.code !== "session_not_found") throw error; // already gone is fine
    }
    change((sessions) => sessions.filter((s) => s.session_id !== session.session_id));
    showNotice(`Signed out ${session.device_name}.`);
    $("other-devices-title").focus(); // its button is gone; keep keyboard users in place
  });
}

/** Rename a device; rejects with what went wrong, in words, for its card to show. */
async function rename(session, name) {
  let renamed;
  try {
    renamed = await sw.rename(session.session_id, name);
  } catch (error) {
    if (!signedIn()) return; // a 401: the signed-out screen is up
    throw error.code === "validation_error" ? BAD_NAME : sw.errorText(error);
  }
  change((sessions) =>
    sessions.map((s) => (s.session_id === renamed.session_id ? { ...s, ...renamed } : s)),
  );
  closeRename(session.session_id);
  showNotice(`Renamed ${session.device_name || "the device"} to ${renamed.device_name}.`);
}

function signOutOthers(button) {
  return act(button, async () => {
    const revoked = await sw.revokeOthers();
    change((sessions) => sessions.filter((s) => !revoked.includes(s.session_id)));
    const count = revoked.length;
    showNotice(`Signed out ${count} other device${count === 1 ? "" : "s"}.`);
  });
}

/** Every device, this one too: one click too many would be costly, so ask first. */
function signOutEverywhere(button) {
  if (!confirm(SIGN_OUT_EVERYWHERE_QUESTION)) return;
  return signOutSelf(button, () => sw.signOutEverywhere(), "You signed out on every device.");
}

/** Sign this device out ourselves: back to the form, not the "you were signed out" screen. */
function signOutSelf(button, action, note) {
  return act(button, async () => {
    await action();
    showSignIn(note);
  });
}

// ---- start -------------------------------------------------------------------------------

async function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-in-again").addEventListener("click", () => showSignIn());
  $("revoke-others").addEventListener("click", (e) => signOutOthers(e.currentTarget));
  $("logout-all").addEventListener("click", (e) => signOutEverywhere(e.currentTarget));
  setInterval(refreshRelativeTimes, CLOCK_MS);
  let me;
  try {
    me = await sw.resume(); // this browser's cookie, if it has one
  } catch (error) {
    showSignIn();
    showMessage("sign-in-error", sw.errorText(error));
    return;
  }
  if (me) await enterOrExplain(me);
  else if ($("signed-out").hidden) showSignIn(); // else it says why this device was signed out
}

start();
