// Sessionwire for a product's own front end: sign in, see and end the account's sessions,
// and hear at once, in words, when this device is signed out. One ES module, no
// dependencies; the API serves it at /sdk/sessionwire.js (types: /sdk/sessionwire.d.ts).
//
//   import { Sessionwire } from "https://auth.example.com/sdk/sessionwire.js";
//   const sw = new Sessionwire({ api: "https://auth.example.com" });
//   sw.on("signedOut", ({ text }) => showSignedOut(text));
//   await sw.resume() ?? await sw.signIn({ username, password });
//
// In a browser page the session lives in an HttpOnly cookie the page's script never sees
// (OWASP: no token in localStorage or sessionStorage); every tab of the browser shares it,
// so the browser is one device, and the tabs share one socket. Where there is no cookie
// jar (Node, a webview), pass `token:` or sign in: the token is then kept in memory only.

const PROTOCOL = "sessionwire.v1";
export const FIRST_DELAY_MS = 500;
export const MAX_DELAY_MS = 8000;
// What the gateway closes with when it wants the device back: going away (restart), an
// abnormal drop (network), a server error, "try again later" (the client fell behind).
export const RECONNECT_CODES = Object.freeze([1001, 1006, 1011, 1013]);

/** Codes 4500-4999 mean "do not reconnect" (4501: this session was revoked). */
export function isFinal(code) {
  return code >= 4500 && code <= 4999;
}

/** Whether a socket closed with `code` is opened again (RECONNECT_CODES and any other
 * code a network or a proxy may produce), which is every code but the final ones. */
export function shouldReconnect(code) {
  return !isFinal(code);
}

/**
 * The wait before reconnect attempt `failures` (1, 2, ...): exponential from 0.5 s,
 * capped at 8 s, and between half of that and all of it, so that the pages a gateway
 * restart dropped do not all come back in one wave.
 */
export function reconnectDelay(failures, random = Math.random) {
  const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.max(0, failures - 1));
  return base / 2 + random() * (base / 2);
}

/**
 * Every sentence the library says, in English. Pass `texts:` to replace any of them: a
 * string with `{name}` placeholders, or a function of those values (for plural rules).
 */
export const TEXTS = Object.freeze({
  // Why this device was signed out: the `text` of "signedOut", by reason.
  logout: "This device was signed out.",
  logout_here: "You signed out of this device in another tab.",
  revoked: "Another of your devices signed this one out.",
  revoke_others: "Another of your devices signed out all other devices.",
  logout_all: "Someone signed out everywhere, from another of your devices.",
  logout_all_here: "You signed out everywhere, in another tab.",
  expired: "Your session expired.",
  evicted:
    "You were signed in on too many devices, so this one, the least recently used, was signed out.",
  replaced: "You signed in again on this device, which ended this earlier sign-in.",
  admin: "An administrator signed this device out.",
  password_changed: "Your password was changed, so this device was signed out.",
  invalid: "Your sign-in is no longer valid.",
  // A sign-in on another device: the `text` of "newSignIn".
  new_sign_in: "New sign-in on {device}",
  new_sign_in_from: "New sign-in on {device} ({ip})",
  unknown_device: "an unknown device",
  // What went wrong: errorText(error), by the problem's code.
  invalid_credentials: "Wrong username or password.",
  rate_limited: "Too many failed sign-ins. Try again in {wait}.",
  session_too_new:
    "This device signed in too recently to sign out your older devices. Try again in {wait}.",
  session_not_found: "That device was already signed out.",
  csrf_refused: "This page may not do that: the server does not trust the page's address.",
  redis_unavailable: "The service is unavailable right now. Try again in a moment.",
  busy: "Many sign-ins are being checked right now. Try again in {wait}.",
  unreachable: "Can't reach the Sessionwire server. Check your connection and try again.",
  server_error: "The server had a problem. Try again in a moment.",
  failed: "The request failed (HTTP {status}).",
  page_error: "Something went wrong in this page. Reload and try again.",
  // Waits, rounded up: "40 seconds", "5 minutes", "23 hours", "2 days".
  second: "{n} second",
  seconds: "{n} seconds",
  minute: "{n} minute",
  minutes: "{n} minutes",
  hour: "{n} hour",
  hours: "{n} hours",
  day: "{n} day",
  days: "{n} days",
  // A device in words (seenText, whereText, deviceText, presenceText).
  online_now: "online now",
  active_now: "active now",
  ago: "{time} ago",
  this_network: "this network",
  browser_on_os: "{browser} on {os}",
  // Asked of a device that is signed out: what a call would have said, sent nowhere.
  signed_out: "This device is signed out.",
});

// What `sessionsChanged` tells of this device's own session.
const OWN_NEWS = new Set(["renamed", "online", "offline"]);
// "active now" for this long after the last request or socket refresh.
const ACTIVE_NOW_S = 120;
const AGO_UNITS = [["day", 86400], ["hour", 3600], ["minute", 60]];

function sayWith(texts, key, values = {}) {
  const text = texts?.[key] ?? TEXTS[key] ?? key;
  if (typeof text === "function") return String(text(values));
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/**
 * When a device was last seen, in words: "active now", "5 minutes ago", "2 hours ago",
 * "3 days ago" (rounded down; a time ahead of `now`, clock skew, is "active now").
 * `at`: a Date or an RFC 3339 string; `texts`: replacements for TEXTS.
 */
export function seenText(at, { now = Date.now(), texts } = {}) {
  const time = at instanceof Date ? at.getTime() : Date.parse(at);
  if (Number.isNaN(time)) return "";
  const seconds = (now - time) / 1000;
  if (seconds < ACTIVE_NOW_S) return sayWith(texts, "active_now");
  for (const [unit, size] of AGO_UNITS) {
    const n = Math.floor(seconds / size);
    if (n >= 1) return sayWith(texts, "ago", { time: sayWith(texts, n === 1 ? unit : `${unit}s`, { n }) });
  }
  return sayWith(texts, "active_now");
}

/** "online now" for a session with a live socket, else when it was last seen. */
export function presenceText(session, { now = Date.now(), texts } = {}) {
  if (session?.online) return sayWith(texts, "online_now");
  return seenText(session?.last_seen_at, { now, texts });
}

/** Where a session is: "Berlin, Germany", "this network", or "" when nobody knows. */
export function whereText(location, { texts } = {}) {
  if (!location) return "";
  if (location.this_network) return sayWith(texts, "this_network");
  const city = location.city || location.region;
  return [city, location.country || location.country_code].filter(Boolean).join(", ");
}

/** "Chrome 120 on Android 14"; the browser or the system alone; "" when neither is known. */
export function deviceText(session, { texts } = {}) {
  const { browser, os } = session ?? {};
  if (browser && os) return sayWith(texts, "browser_on_os", { browser, os });
  return browser || os || "";
}

const REASONS = new Set([
  "logout", "revoked", "revoke_others", "logout_all", "expired", "evicted", "replaced",
  "admin", "password_changed", "invalid",
]);
// [unit, its seconds, how many of it make the next unit]
const WAIT_UNITS = [["second", 1, 60], ["minute", 60, 60], ["hour", 3600, 24]];

/** The API answered with a problem (RFC 9457), or could not be reached (status 0). */
export class SessionwireError extends Error {
  constructor(status, problem = {}, retryAfter = null, options = undefined) {
    super(problem.detail || (status ? `HTTP ${status}` : "unreachable"), options);
    this.name = "SessionwireError";
    this.status = status;
    this.code = problem.code || (status ? "" : "unreachable");
    this.problem = problem;
    this.retryAfter = Number(retryAfter ?? problem.retry_after ?? 0) || 0;
  }
}

/** The client of one Sessionwire API for one device (in a browser: for the whole browser). */
export class Sessionwire {
  #api;
  #token;
  #deviceToken;
  #texts;
  #fetch;
  #WebSocket;
  #autoLive;
  #inPage;
  #handlers = new Map();
  #session = null;
  #username = null;
  #leaving = false;
  // Signed out (here, elsewhere, or told so by the API): until the next sign-in, no call
  // goes out with the credential that was revoked (the browser would still send its cookie).
  #ended = false;
  #config = null;
  #status = "off";
  #connection = null;
  #wantLive = false;
  #tabs = null;
  #lock = null; // { abort: AbortController, release: () => void } while this tab wants it

  /**
   * `api`: the API's address (default: the page's own origin). `token`: sign in with this
   * bearer token instead of the cookie. `texts`: replacements for TEXTS. `live`: open the
   * socket once signed in (default true). `fetch`, `WebSocket`: where the platform has
   * none, or for tests. `deviceToken`: from an earlier sign-in of this device (bearer mode).
   */
  constructor({ api, token, deviceToken, texts, live = true, fetch, WebSocket } = {}) {
    this.#api = String(api ?? globalThis.location?.origin ?? "").replace(/\/+$/, "");
    this.#token = token || null;
    this.#deviceToken = deviceToken || null;
    this.#texts = { ...TEXTS, ...texts };
    this.#fetch = fetch ?? globalThis.fetch?.bind(globalThis);
    this.#WebSocket = WebSocket ?? globalThis.WebSocket;
    this.#autoLive = live;
    this.#inPage = typeof document !== "undefined" && !this.#token;
    if (this.#inPage && typeof BroadcastChannel === "function") {
      this.#tabs = new BroadcastChannel(`sessionwire ${this.#api}`);
      this.#tabs.onmessage = (event) => this.#fromTab(event.data);
    }
  }

  /** The signed-in session (`session_id`, `device_name`, ...), or null. */
  get session() {
    return this.#session;
  }

  get username() {
    return this.#username;
  }

  /** "off", "connecting", "live" or "reconnecting": the socket's state. */
  get status() {
    return this.#status;
  }

  /** Bearer mode only: the session token, to keep where the platform keeps secrets. */
  get token() {
    return this.#token;
  }

  /** Bearer mode only: send it with this device's next sign-ins (see `deviceToken:`). */
  get deviceToken() {
    return this.#deviceToken;
  }

  /** Call `handler` on each `event`; returns a function that stops it. */
  on(event, handler) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  off(event, handler) {
    this.#handlers.get(event)?.delete(handler);
  }

  // ---- signing in and out ------------------------------------------------------------

  /** Sign in; resolves with `{ username, session }`, or rejects with a SessionwireError. */
  async signIn({ username, password, deviceName } = {}) {
    const answer = await this.#call("POST", "/login", {
      username,
      password,
      device_name: deviceName || undefined,
      device_token: this.#inPage ? undefined : this.#deviceToken || undefined,
      cookie: this.#inPage && !this.#token,
    });
    if (answer.token) this.#token = answer.token; // no cookie (AUTH_COOKIE=never): memory only
    if (answer.device_token) this.#deviceToken = answer.device_token;
    const me = { username, session: answer.session };
    this.#enter(me);
    this.#toTabs({ kind: "signedIn", me });
    return me;
  }

  /**
   * Pick up the session this browser (or `token:`) already has: resolves with `{
   * username, email, bio, session }` and goes live, or with null when signed out. If the
   * session ended while the page was away, "signedOut" says why first.
   */
  async resume() {
    if (!this.#token && !this.#inPage) return null;
    try {
      const me = await this.#call("GET", "/me");
      this.#enter(me);
      return me;
    } catch (error) {
      if (error.status !== 401) throw error;
      if (error.code !== "missing_token") this.#announceEnd(revocationOf(error), { own: null });
      this.#token = null;
      this.#ended = error.code !== "missing_token";
      return null;
    }
  }

  /** Who is signed in, and this session. */
  me() {
    return this.#authed("GET", "/me");
  }

  /** Sign this device out. */
  async signOut() {
    await this.#endOwn("POST", "/logout", "logout");
  }

  /** Sign out every device of the account, this one too; resolves with the ids ended. */
  signOutEverywhere() {
    return this.#endOwn("POST", "/logout-all", "logout_all");
  }

  // ---- the account's sessions -------------------------------------------------------------

  /** Every session of the account, most recently seen first, each with `current`. */
  async sessions() {
    return (await this.#authed("GET", "/sessions")).sessions;
  }

  /** Sign one device out (this one too, if it is its id); resolves with the ids ended. */
  async revoke(sessionId) {
    const path = `/sessions/${encodeURIComponent(sessionId)}`;
    if (sessionId === this.#session?.session_id) return this.#endOwn("DELETE", path, "logout");
    return (await this.#authed("DELETE", path)).revoked;
  }

  /** Sign out every other device; resolves with the ids ended. */
  async revokeOthers() {
    return (await this.#authed("POST", "/sessions/revoke-others")).revoked;
  }

  /** Rename a device of the account (this one too); resolves with the session. */
  async rename(sessionId, deviceName) {
    const path = `/sessions/${encodeURIComponent(sessionId)}`;
    const session = await this.#authed("PATCH", path, { device_name: deviceName });
    if (this.#session && session?.session_id === this.#session.session_id) {
      this.#session = { ...this.#session, ...session };
    }
    return session;
  }

  /** The account's recent session events, newest first. */
  async activity({ limit } = {}) {
    const query = limit ? `?limit=${encodeURIComponent(limit)}` : "";
    return (await this.#authed("GET", `/activity${query}`)).events;
  }

  // ---- words ------------------------------------------------------------------------------

  /** What went wrong, in words a person can act on. */
  errorText(error) {
    if (!(error instanceof SessionwireError)) return this.#say("page_error");
    if (error.code === "unreachable" || [502, 504].includes(error.status)) {
      return this.#say("unreachable");
    }
    switch (error.code) {
      case "rate_limited":
      case "session_too_new":
        return this.#say(error.code, { wait: this.waitText(error.retryAfter || 60) });
      case "busy": // the server says how long its sign-in queue takes to drain
        return this.#say(error.code, { wait: this.waitText(error.retryAfter || 1) });
      case "invalid_credentials":
      case "session_not_found":
      case "signed_out":
      case "csrf_refused":
      case "redis_unavailable":
        return this.#say(error.code);
    }
    if (error.status >= 500) return this.#say("server_error");
    return error.problem.detail || this.#say("failed", { status: error.status });
  }

  /** Why this device was signed out, in words (`by`: the device that did it, if any). */
  reasonText(reason, by = null, ownSessionId = this.#session?.session_id) {
    const key = REASONS.has(reason) ? reason : "logout";
    const here = by?.session_id && by.session_id === ownSessionId;
    return this.#say(here && (key === "logout" || key === "logout_all") ? `${key}_here` : key);
  }

  /** A wait in words, rounded up: "40 seconds", "5 minutes", "23 hours", "2 days". */
  waitText(seconds) {
    for (const [unit, size, next] of WAIT_UNITS) {
      const n = Math.max(1, Math.ceil(seconds / size));
      if (n < next) return this.#plural(n, unit); // 59 min 50 s is "1 hour", not "60 minutes"
    }
    return this.#plural(Math.ceil(seconds / 86400), "day");
  }

  /** seenText, presenceText, whereText and deviceText, in this client's texts. */
  seenText(at, now = Date.now()) {
    return seenText(at, { now, texts: this.#texts });
  }

  presenceText(session, now = Date.now()) {
    return presenceText(session, { now, texts: this.#texts });
  }

  whereText(location) {
    return whereText(location, { texts: this.#texts });
  }

  deviceText(session) {
    return deviceText(session, { texts: this.#texts });
  }

  /** Stop the socket and every listener (a page taken down). */
  close() {
    this.#stopLive();
    this.#tabs?.close();
    this.#tabs = null;
    this.#handlers.clear();
  }

  // ---- inside ---------------------------------------------------------------------------

  #say(key, values = {}) {
    return sayWith(this.#texts, key, values);
  }

  #plural(n, unit) {
    return this.#say(n === 1 ? unit : `${unit}s`, { n });
  }

  #emit(event, detail) {
    for (const handler of [...(this.#handlers.get(event) ?? [])]) {
      try {
        handler(detail);
      } catch (error) {
        queueMicrotask(() => {
          throw error; // the page's bug: reported, and the other handlers still run
        });
      }
    }
  }

  async #call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (this.#token) headers.Authorization = `Bearer ${this.#token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await this.#fetch(this.#api + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        // The cookie goes along (to the API on another origin too), unless a token is
        // what signs the calls: then no ambient credential rides with them.
        credentials: this.#token ? "omit" : "include",
        cache: "no-store",
      });
    } catch (cause) {
      throw new SessionwireError(0, {}, null, { cause });
    }
    let data = {};
    try {
      data = await response.json();
    } catch {
      // no JSON body: the status says it all
    }
    if (!response.ok) {
      throw new SessionwireError(response.status, data, response.headers.get("Retry-After"));
    }
    return data;
  }

  /** A call as the signed-in device: a 401 means this device is signed out, whatever the
   * call was, and "signedOut" says why. */
  async #authed(method, path, body) {
    // Signing out (its answer still on the way) counts: the credential is being revoked.
    if (this.#ended || this.#leaving) {
      throw new SessionwireError(401, { code: "signed_out", detail: this.#say("signed_out") });
    }
    try {
      return await this.#call(method, path, body);
    } catch (error) {
      if (error.status === 401 && this.#session) this.#announceEnd(revocationOf(error));
      throw error;
    }
  }

  /** End this device's own session ourselves: no "signedOut" here (the caller knows), but
   * the browser's other tabs hear it. */
  async #endOwn(method, path, reason) {
    if (this.#ended) return []; // signed out already: nothing to send the old credential for
    const own = this.#session;
    this.#leaving = true; // the gateway's notice of this is expected: not news here, and
    // the other devices' sign-outs it hears meanwhile must not call with this credential
    let revoked = [];
    try {
      revoked = (await this.#call(method, path)).revoked;
    } catch (error) {
      this.#leaving = false;
      if (error.status !== 401) throw error; // already signed out is what was asked
    }
    if (own) {
      // Told before this tab lets the socket go, so no other tab takes it up meanwhile.
      const by = { session_id: own.session_id, device_name: own.device_name, ip: own.ip };
      this.#toTabs({ kind: "signedOut", sessionId: own.session_id, revocation: { reason, by } });
    }
    this.#leave();
    return revoked;
  }

  #enter(me) {
    const changed = me.session?.session_id !== this.#session?.session_id;
    this.#session = me.session;
    this.#username = me.username;
    this.#leaving = false;
    this.#ended = false;
    if (changed) this.#stopLive();
    if (this.#autoLive) this.#goLive();
  }

  /** Forget the session and stop everything that used it. */
  #leave() {
    this.#ended = true;
    this.#session = null;
    this.#username = null;
    this.#token = null;
    this.#stopLive();
  }

  /** This device's session ended elsewhere: say so, once, here (and, unless the news came
   * from a tab, in the other tabs). */
  #announceEnd(revocation, { own = this.#session, fromTab = false } = {}) {
    if (this.#leaving) return;
    const ownId = own?.session_id ?? null;
    if (ownId && !fromTab) this.#toTabs({ kind: "signedOut", sessionId: ownId, revocation });
    this.#leave();
    const { reason = "invalid", at = null, by = null } = revocation;
    this.#emit("signedOut", { reason, at, by, text: this.reasonText(reason, by, ownId) });
  }

  #receive(message, fromTab = false) {
    switch (message?.type) {
      case "ready":
        // Whatever happened while the socket was away is in the API: look again.
        this.#emit("sessionsChanged", { event: "resync", session: null });
        break;
      case "session.revoked":
        if (this.#session && message.session_id === this.#session.session_id) {
          this.#announceEnd(message, { fromTab });
        }
        break;
      case "sessions.changed": {
        const { event, session } = message;
        if (!this.#session || !session) break;
        if (session.session_id === this.#session.session_id) {
          // This device's own sign-in and sign-out are no news here; a new name or its
          // presence is (another device may have renamed it).
          if (!OWN_NEWS.has(event)) break;
          this.#session = { ...this.#session, ...session };
        }
        this.#emit("sessionsChanged", { event, session });
        if (event === "created") {
          const device = session.device_name || this.#say("unknown_device");
          const text = session.ip
            ? this.#say("new_sign_in_from", { device, ip: session.ip })
            : this.#say("new_sign_in", { device });
          this.#emit("newSignIn", { session, text });
        }
        break;
      }
    }
  }

  #setStatus(status) {
    if (status === this.#status) return;
    this.#status = status;
    this.#emit("status", { status });
  }

  // ---- the socket, one per browser ---------------------------------------------------------
  //
  // In a page, the tab holding the Web Lock keeps the browser's one socket (a session may
  // have only a few sockets, and every tab is the same session) and passes what it hears
  // to the other tabs over a BroadcastChannel; when it closes, another tab takes over.

  #goLive() {
    if (this.#wantLive) return;
    this.#wantLive = true;
    const locks = this.#tabs && globalThis.navigator?.locks;
    if (!locks) {
      this.#connect();
      return;
    }
    this.#setStatus("connecting");
    const lock = { abort: new AbortController(), release: null };
    this.#lock = lock;
    locks
      .request(`sessionwire socket ${this.#api}`, { signal: lock.abort.signal }, () => {
        if (this.#lock !== lock) return undefined; // stopped meanwhile
        this.#connect();
        return new Promise((resolve) => {
          lock.release = resolve;
        });
      })
      .catch(() => {}); // aborted while waiting: another tab keeps the socket
    this.#toTabs({ kind: "hello" });
  }

  #stopLive() {
    this.#wantLive = false;
    this.#connection?.stop();
    this.#connection = null;
    if (this.#lock) {
      this.#lock.abort.abort();
      this.#lock.release?.();
      this.#lock = null;
    }
    this.#setStatus("off");
  }

  #connect() {
    this.#connection = new Connection({
      open: () => this.#openSocket(),
      message: (message) => {
        this.#toTabs({ kind: "message", message });
        this.#receive(message);
      },
      status: (status) => {
        this.#setStatus(status);
        this.#toTabs({ kind: "status", status });
      },
      // Before each reconnect: still signed in? A 401 here says why, and ends it.
      beforeRetry: () => this.#authed("GET", "/me"),
      // Told not to come back (4500-4999) without being told why: ask the API.
      final: () => {
        if (this.#session) this.#authed("GET", "/me").catch(() => {});
      },
    });
    this.#connection.start();
  }

  async #openSocket() {
    this.#config ??= await this.#call("GET", "/config");
    const protocols = [PROTOCOL];
    if (this.#token) {
      protocols.push(`bearer.${this.#token}`);
    } else if (this.#config.socket_ticket) {
      // The gateway is on another host, which the cookie does not reach.
      const { ticket } = await this.#authed("POST", "/socket-ticket");
      protocols.push(`bearer.${ticket}`);
    }
    if (!this.#WebSocket) throw new SessionwireError(0, { detail: "no WebSocket here" });
    return new this.#WebSocket(this.#config.gateway_url, protocols);
  }

  #toTabs(data) {
    this.#tabs?.postMessage(data);
  }

  #fromTab(data) {
    switch (data?.kind) {
      case "message":
        this.#receive(data.message, true);
        break;
      case "status":
        if (this.#wantLive && !this.#connection) this.#setStatus(data.status);
        break;
      case "hello":
        if (this.#connection) this.#toTabs({ kind: "status", status: this.#status });
        break;
      case "signedIn":
        if (data.me?.session?.session_id !== this.#session?.session_id) {
          this.#enter(data.me);
          this.#emit("signedIn", data.me);
        }
        break;
      case "signedOut":
        if (this.#session && data.sessionId === this.#session.session_id) {
          this.#announceEnd(data.revocation, { fromTab: true });
        }
        break;
    }
  }
}

/** One WebSocket kept open until stopped or told not to come back. */
class Connection {
  #hooks;
  #socket = null;
  #timer = null;
  #failures = 0;
  #stopped = false;

  constructor(hooks) {
    this.#hooks = hooks;
  }

  start() {
    globalThis.addEventListener?.("online", this.#onOnline);
    this.#open();
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#socket?.close(1000);
    this.#socket = null;
  }

  async #open() {
    this.#hooks.status(this.#failures ? "reconnecting" : "connecting");
    let socket;
    try {
      socket = await this.#hooks.open();
    } catch (error) {
      if (error instanceof SyntaxError) this.#giveUp(); // a malformed gateway URL
      else this.#retryLater(); // the API (config, ticket) is away: try again
      return;
    }
    if (this.#stopped) {
      socket.close(1000);
      return;
    }
    socket.onmessage = (event) => this.#receive(event.data);
    socket.onclose = (event) => this.#closed(socket, event);
    this.#socket = socket;
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message?.type === "ready") {
      this.#failures = 0;
      this.#hooks.status("live");
    }
    this.#hooks.message(message);
  }

  #closed(socket, event) {
    if (this.#stopped || socket !== this.#socket) return;
    this.#socket = null;
    if (shouldReconnect(event.code)) {
      this.#retryLater();
      return;
    }
    this.#giveUp();
    this.#hooks.final();
  }

  #giveUp() {
    this.#stopped = true;
    this.#hooks.status("off");
  }

  #retryLater() {
    if (this.#stopped) return;
    this.#failures += 1;
    this.#hooks.status("reconnecting");
    this.#timer = setTimeout(() => this.#retry(), reconnectDelay(this.#failures));
  }

  async #retry() {
    this.#timer = null;
    try {
      await this.#hooks.beforeRetry();
    } catch {
      // The API may be away too; a 401 has ended everything (stop() was called).
    }
    if (!this.#stopped) this.#open();
  }

  // Back online: try now rather than after the current wait.
  #onOnline = () => {
    if (this.#stopped || this.#socket || !this.#timer) return; // only while waiting
    clearTimeout(this.#timer);
    this.#retry();
  };
}

/** The revocation a 401 problem tells of, or one made from its code. */
function revocationOf(error) {
  if (error.problem?.revoked) return error.problem.revoked;
  return { reason: error.code === "token_expired" ? "expired" : "invalid", at: null, by: null };
}

export default Sessionwire;
