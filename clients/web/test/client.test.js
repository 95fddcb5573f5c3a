// The client against a fake API and socket: sign-in, the socket, sign-outs in words, and
// when it reconnects (timers are mocked: no test waits for real time).

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";

import { Sessionwire, SessionwireError } from "../sessionwire.js";
import { GATEWAY, SESSION, fakeApi, fakeSockets, settle } from "./fakes.js";

const API = "http://api.test";
const LAPTOP = { session_id: SESSION.session_id, device_name: "Laptop", ip: "127.0.0.1" };
const PHONE = { ...SESSION, session_id: "s-phone", device_name: "Phone", ip: "203.0.113.5" };

function client(overrides = {}, options = {}) {
  const api = fakeApi(overrides);
  const sockets = fakeSockets();
  const sw = new Sessionwire({ api: `${API}/`, fetch: api.fetch, WebSocket: sockets.FakeSocket, ...options });
  const events = [];
  for (const name of ["signedOut", "sessionsChanged", "newSignIn", "status"]) {
    sw.on(name, (detail) => events.push([name, detail]));
  }
  return { sw, api, sockets, events, of: (name) => events.filter(([n]) => n === name).map(([, d]) => d) };
}

async function signedInAndLive(overrides, options) {
  const c = client(overrides, options);
  await c.sw.signIn({ username: "alice", password: "pw", deviceName: "Laptop" });
  await settle();
  assert.equal(c.sockets.opened.length, 1);
  c.sockets.opened[0].send({ type: "ready", session_id: SESSION.session_id, username: "alice" });
  return c;
}

beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
afterEach(() => mock.timers.reset());

describe("signing in without a cookie jar (bearer mode)", () => {
  it("keeps the token in memory, signs its calls with it and opens the socket with it", async () => {
    const { sw, api, sockets } = await signedInAndLive();
    const login = api.calls.find((call) => call.key === "POST /login");
    assert.deepEqual(login.body, { username: "alice", password: "pw", device_name: "Laptop", cookie: false });
    assert.equal(login.url, `${API}/login`);
    assert.equal(sw.token, "jwt-1");
    assert.equal(sw.deviceToken, "dt-1");
    assert.equal(sw.session.session_id, SESSION.session_id);
    assert.equal(sw.status, "live");
    const [socket] = sockets.opened;
    assert.equal(socket.url, GATEWAY);
    assert.deepEqual(socket.protocols, ["sessionwire.v1", "bearer.jwt-1"]);
    await sw.sessions();
    const listed = api.calls.at(-1);
    assert.equal(listed.init.headers.Authorization, "Bearer jwt-1");
    assert.equal(listed.init.credentials, "omit"); // no ambient cookie beside a token
  });

  it("sends the device token back with the next sign-in", async () => {
    const { sw, api } = client({}, { deviceToken: "dt-0", live: false });
    await sw.signIn({ username: "alice", password: "pw" });
    assert.equal(api.calls[0].body.device_token, "dt-0");
  });

  it("resumes with a `token:`, and says why when that session has ended", async () => {
    const revoked = { reason: "admin", at: "2026-01-02T00:00:00Z", by: null };
    const gone = client({ "GET /me": [401, { code: "session_revoked", revoked }] }, { token: "old" });
    assert.equal(await gone.sw.resume(), null);
    assert.deepEqual(gone.of("signedOut"), [{ ...revoked, text: "An administrator signed this device out." }]);
    const fine = client({}, { token: "jwt-1", live: false });
    assert.equal((await fine.sw.resume()).username, "alice");
    assert.equal(await client().sw.resume(), null); // nothing to resume with
  });

  it("rejects with the API's problem, in words", async () => {
    const { sw } = client({ "POST /login": [401, { code: "invalid_credentials" }] });
    const error = await sw.signIn({ username: "alice", password: "no" }).catch((e) => e);
    assert.ok(error instanceof SessionwireError);
    assert.equal(sw.errorText(error), "Wrong username or password.");
    assert.equal(sw.session, null);
    const away = client({ "POST /login": new TypeError("fetch failed") });
    const unreachable = await away.sw.signIn({ username: "a", password: "b" }).catch((e) => e);
    assert.equal(unreachable.code, "unreachable");
    assert.equal(unreachable.status, 0);
  });
});

describe("events from the socket", () => {
  it("tells of a new sign-in and of changes, and asks for a resync on every ready", async () => {
    const { sockets, of } = await signedInAndLive();
    const [socket] = sockets.opened;
    socket.send({ type: "sessions.changed", event: "created", session: PHONE });
    socket.send({ type: "sessions.changed", event: "revoked", session: PHONE });
    socket.send({ type: "sessions.changed", event: "created", session: { ...PHONE, ip: "" } });
    assert.deepEqual(of("newSignIn").map((e) => e.text), [
      "New sign-in on Phone (203.0.113.5)",
      "New sign-in on Phone",
    ]);
    assert.deepEqual(of("sessionsChanged").map((e) => e.event), ["resync", "created", "revoked", "created"]);
  });

  it("says why this device was signed out, and who did it, then never reconnects", async () => {
    const { sw, sockets, of, api } = await signedInAndLive();
    const [socket] = sockets.opened;
    socket.send({ type: "session.revoked", session_id: "someone-else", reason: "revoked", at: "t", by: null });
    assert.equal(of("signedOut").length, 0);
    socket.send({ type: "session.revoked", session_id: SESSION.session_id, reason: "revoked", at: "t", by: PHONE });
    socket.drop(4501);
    const [signedOut] = of("signedOut");
    assert.deepEqual(signedOut, {
      reason: "revoked",
      at: "t",
      by: PHONE,
      text: "Another of your devices signed this one out.",
    });
    assert.equal(sw.session, null);
    assert.equal(sw.token, null);
    assert.equal(sw.status, "off");
    mock.timers.tick(60_000);
    await settle();
    assert.equal(sockets.opened.length, 1);
    // Nothing goes out any more with the revoked credential (nor the browser's cookie).
    const sent = api.calls.length;
    const refused = await sw.sessions().catch((e) => e);
    assert.equal(refused.code, "signed_out");
    assert.equal(sw.errorText(refused), "This device is signed out.");
    await sw.signOut();
    assert.equal(api.calls.length, sent);
  });

  it("uses the texts option for what it says", async () => {
    const { sockets, of } = await signedInAndLive({}, { texts: { expired: "Session expirée." } });
    sockets.opened[0].send({ type: "session.revoked", session_id: SESSION.session_id, reason: "expired", at: "t", by: null });
    assert.equal(of("signedOut")[0].text, "Session expirée.");
  });

  it("a final close without a notice asks the API why", async () => {
    const { sockets, of, api } = await signedInAndLive();
    api.answers["GET /me"] = [401, { code: "session_revoked", revoked: { reason: "logout_all", at: "t", by: PHONE } }];
    sockets.opened[0].drop(4501);
    await settle();
    assert.equal(of("signedOut")[0].reason, "logout_all");
  });
});

describe("reconnecting", () => {
  for (const code of [1001, 1006, 1011, 1013]) {
    it(`comes back after ${code}, once its wait is over, having checked its session`, async () => {
      const { sockets, api, of } = await signedInAndLive();
      sockets.opened[0].drop(code);
      assert.equal(of("status").at(-1).status, "reconnecting");
      const checksBefore = api.calls.filter((c) => c.key === "GET /me").length;
      mock.timers.tick(249); // the first wait is 250-500 ms
      await settle();
      assert.equal(sockets.opened.length, 1);
      mock.timers.tick(251);
      await settle();
      assert.equal(sockets.opened.length, 2);
      assert.equal(api.calls.filter((c) => c.key === "GET /me").length, checksBefore + 1);
      assert.equal(api.calls.filter((c) => c.key === "GET /config").length, 1); // kept
      sockets.opened[1].send({ type: "ready", session_id: SESSION.session_id, username: "alice" });
      assert.equal(of("status").at(-1).status, "live");
    });
  }

  it("waits longer after each failure, and starts over once live", async () => {
    const { sockets } = await signedInAndLive();
    const waits = [];
    for (let n = 0; n < 6; n += 1) {
      sockets.opened.at(-1).drop(1006);
      let waited = 0;
      const before = sockets.opened.length;
      while (sockets.opened.length === before) {
        mock.timers.tick(50);
        waited += 50;
        await settle();
      }
      waits.push(waited);
    }
    // Within each window [half, all] of 0.5, 1, 2, 4, 8, 8 s (to the 50 ms step).
    const windows = [500, 1000, 2000, 4000, 8000, 8000];
    waits.forEach((w, i) => assert.ok(w >= windows[i] / 2 && w <= windows[i] + 50, `${i}: ${w}`));
    sockets.opened.at(-1).send({ type: "ready", session_id: SESSION.session_id, username: "alice" });
    sockets.opened.at(-1).drop(1006);
    mock.timers.tick(500);
    await settle();
    assert.equal(sockets.opened.length, 8); // back to the first wait
  });

  it("stops when the check before a reconnect finds the session ended", async () => {
    const { sockets, api, of, sw } = await signedInAndLive();
    sockets.opened[0].drop(1006);
    api.answers["GET /me"] = [401, { code: "session_revoked", revoked: { reason: "expired", at: "t", by: null } }];
    mock.timers.tick(500);
    await settle();
    assert.equal(of("signedOut")[0].text, "Your session expired.");
    assert.equal(sockets.opened.length, 1);
    assert.equal(sw.status, "off");
  });

  it("keeps trying while the API is away too", async () => {
    const { sockets, api } = await signedInAndLive();
    api.answers["GET /me"] = new TypeError("fetch failed");
    sockets.opened[0].drop(1006);
    mock.timers.tick(500);
    await settle();
    assert.equal(sockets.opened.length, 2);
  });
});

describe("signing out from here", () => {
  it("is no news to this page: no signedOut, the socket closes, the gateway's notice is ignored", async () => {
    const { sw, sockets, of } = await signedInAndLive();
    await sw.signOut();
    sockets.opened[0].send({ type: "session.revoked", session_id: SESSION.session_id, reason: "logout", at: "t", by: LAPTOP });
    assert.equal(of("signedOut").length, 0);
    assert.equal(sockets.opened[0].closedWith, 1000);
    assert.equal(sw.session, null);
    assert.equal(sw.token, null);
  });

  it("revoking its own id is signing out; revoking another is not", async () => {
    const { sw, api } = await signedInAndLive({
      "DELETE /sessions/s-phone": [200, { revoked: ["s-phone"] }],
      "DELETE /sessions/s-laptop": [200, { revoked: ["s-laptop"] }],
    });
    assert.deepEqual(await sw.revoke("s-phone"), ["s-phone"]);
    assert.ok(sw.session);
    assert.deepEqual(await sw.revoke(SESSION.session_id), ["s-laptop"]);
    assert.equal(sw.session, null);
    assert.ok(api.calls.some((c) => c.url === `${API}/sessions/s-laptop`));
  });

  it("a refused sign-out leaves this device signed in, and says why", async () => {
    const { sw } = await signedInAndLive({
      "POST /logout-all": [403, { code: "session_too_new", retry_after: 600 }, { "Retry-After": "600" }],
    });
    const error = await sw.signOutEverywhere().catch((e) => e);
    assert.equal(sw.errorText(error), "This device signed in too recently to sign out your older devices. Try again in 10 minutes.");
    assert.ok(sw.session);
  });
});

describe("after this device is signed out, no request goes out with its credential", () => {
  const endings = {
    "its own signOut()": async ({ sw }) => sw.signOut(),
    "a session.revoked notice": async ({ sockets }) => {
      sockets.opened[0].send({ type: "session.revoked", session_id: SESSION.session_id, reason: "revoked", at: "t", by: PHONE });
      sockets.opened[0].drop(4501);
    },
    "a 4501 close alone (the API says why, once)": async ({ sockets, api }) => {
      api.answers["GET /me"] = [401, { code: "session_revoked", revoked: { reason: "revoked", at: "t", by: PHONE } }];
      sockets.opened[0].drop(4501);
      await settle();
    },
    "a 401 answer to any call": async ({ sw, api }) => {
      api.answers["GET /sessions"] = [401, { code: "session_revoked", revoked: { reason: "admin", at: "t", by: null } }];
      await sw.sessions().catch(() => {});
    },
  };
  for (const [how, end] of Object.entries(endings)) {
    it(`after ${how}`, async () => {
      const c = await signedInAndLive({
        "DELETE /sessions/s-phone": [200, { revoked: ["s-phone"] }],
        "PATCH /sessions/s-phone": [200, PHONE],
        "GET /activity": [200, { events: [] }],
      });
      await end(c);
      await settle();
      const sent = c.api.calls.length;
      for (const call of [
        () => c.sw.sessions(),
        () => c.sw.me(),
        () => c.sw.activity(),
        () => c.sw.revoke("s-phone"),
        () => c.sw.revokeOthers(),
        () => c.sw.rename("s-phone", "x"),
        () => c.sw.signOut(),
        () => c.sw.signOutEverywhere(),
      ]) {
        await call().catch(() => {});
      }
      c.sockets.opened[0].drop(1006); // a late close of the old socket: no retry either
      mock.timers.tick(120_000);
      await settle();
      assert.deepEqual(c.api.calls.slice(sent).map((call) => call.key), []);
      assert.equal(c.sockets.opened.length, 1);
      // A new sign-in starts over.
      c.api.answers["GET /sessions"] = [200, { sessions: [] }];
      await c.sw.signIn({ username: "alice", password: "pw" });
      await c.sw.sessions();
      assert.equal(c.api.calls.at(-1).key, "GET /sessions");
    });
  }
});

describe("renaming", () => {
  it("PATCHes the device name and keeps this device's new name", async () => {
    const renamed = { ...SESSION, device_name: "Work laptop" };
    const { sw, api } = await signedInAndLive({ "PATCH /sessions/s-laptop": [200, renamed] });
    assert.deepEqual(await sw.rename("s-laptop", "Work laptop"), renamed);
    const call = api.calls.at(-1);
    assert.equal(call.init.method, "PATCH");
    assert.deepEqual(call.body, { device_name: "Work laptop" });
    assert.equal(sw.session.device_name, "Work laptop");
  });

  it("rejects with the API's words for a bad name or a device gone", async () => {
    const { sw } = await signedInAndLive({
      "PATCH /sessions/s-phone": [422, { code: "validation_error", detail: "device_name: at most 100 characters" }],
      "PATCH /sessions/gone": [404, { code: "session_not_found" }],
    });
    const bad = await sw.rename("s-phone", "x".repeat(101)).catch((e) => e);
    assert.equal(sw.errorText(bad), "device_name: at most 100 characters");
    const gone = await sw.rename("gone", "x").catch((e) => e);
    assert.equal(sw.errorText(gone), "That device was already signed out.");
  });
});

describe("sessionsChanged kinds", () => {
  it("tells of renamed, online and offline, this device's own too (but not its own sign-in)", async () => {
    const { sw, sockets, of } = await signedInAndLive();
    const [socket] = sockets.opened;
    socket.send({ type: "sessions.changed", event: "online", session: { ...PHONE, online: true } });
    socket.send({ type: "sessions.changed", event: "renamed", session: { ...PHONE, device_name: "Pixel" } });
    socket.send({ type: "sessions.changed", event: "offline", session: { ...PHONE, online: false } });
    socket.send({ type: "sessions.changed", event: "created", session: SESSION });
    socket.send({ type: "sessions.changed", event: "renamed", session: { ...SESSION, device_name: "Mine" } });
    assert.deepEqual(of("sessionsChanged").map((e) => [e.event, e.session?.device_name ?? null]), [
      ["resync", null],
      ["online", "Phone"],
      ["renamed", "Pixel"],
      ["offline", "Phone"],
      ["renamed", "Mine"],
    ]);
    assert.equal(sw.session.device_name, "Mine");
    assert.equal(of("newSignIn").length, 0);
  });
});

describe("while its own sign-out is on the way", () => {
  it("sends nothing more with the credential, whatever the socket tells meanwhile", async () => {
    let answer;
    const held = new Promise((resolve) => {
      answer = resolve;
    });
    const c = await signedInAndLive({ "POST /logout-all": () => held, "GET /activity": [200, { events: [] }] });
    c.sw.on("sessionsChanged", () => c.sw.activity().catch(() => {})); // as a page does
    const ending = c.sw.signOutEverywhere();
    await settle();
    const sent = c.api.calls.length;
    c.sockets.opened[0].send({ type: "sessions.changed", event: "revoked", session: PHONE });
    await settle();
    assert.deepEqual(c.api.calls.slice(sent).map((call) => call.key), []);
    answer([200, { revoked: [SESSION.session_id, PHONE.session_id] }]);
    assert.deepEqual(await ending, [SESSION.session_id, PHONE.session_id]);
    assert.equal(c.sw.session, null);
  });

  it("a refused sign-out leaves the device as it was: its calls go out again", async () => {
    const c = await signedInAndLive({ "POST /logout-all": [403, { code: "session_too_new", retry_after: 60 }] });
    await c.sw.signOutEverywhere().catch(() => {});
    await c.sw.sessions();
    assert.equal(c.api.calls.at(-1).key, "GET /sessions");
  });
});
