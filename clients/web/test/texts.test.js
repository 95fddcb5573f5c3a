// Every reason and error in words, and the `texts` option that replaces them.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  Sessionwire,
  SessionwireError,
  TEXTS,
  deviceText,
  presenceText,
  seenText,
  whereText,
} from "../sessionwire.js";

const REASONS = {
  logout: "This device was signed out.",
  revoked: "Another of your devices signed this one out.",
  revoke_others: "Another of your devices signed out all other devices.",
  logout_all: "Someone signed out everywhere, from another of your devices.",
  expired: "Your session expired.",
  evicted:
    "You were signed in on too many devices, so this one, the least recently used, was signed out.",
  replaced: "You signed in again on this device, which ended this earlier sign-in.",
  admin: "An administrator signed this device out.",
  password_changed: "Your password was changed, so this device was signed out.",
  invalid: "Your sign-in is no longer valid.",
};

function problem(status, code, extra = {}) {
  return new SessionwireError(status, { code, detail: `detail of ${code}`, ...extra });
}

describe("reasonText", () => {
  const sw = new Sessionwire({ api: "http://api.test" });

  it("says every reason of the contract in words", () => {
    for (const [reason, words] of Object.entries(REASONS)) {
      assert.equal(sw.reasonText(reason), words, reason);
    }
  });

  it("knows a sign-out from this browser's other tab (the device itself did it)", () => {
    const self = { session_id: "mine", device_name: "Laptop", ip: "1.2.3.4" };
    assert.equal(sw.reasonText("logout", self, "mine"), "You signed out of this device in another tab.");
    assert.equal(sw.reasonText("logout_all", self, "mine"), "You signed out everywhere, in another tab.");
    assert.equal(sw.reasonText("logout_all", self, "other"), REASONS.logout_all);
  });

  it("says something true for a reason it does not know", () => {
    assert.equal(sw.reasonText("some_new_reason"), REASONS.logout);
  });
});

describe("errorText", () => {
  const sw = new Sessionwire({ api: "http://api.test" });

  it("turns each problem code into words", () => {
    assert.equal(sw.errorText(problem(401, "invalid_credentials")), "Wrong username or password.");
    assert.equal(
      sw.errorText(new SessionwireError(429, { code: "rate_limited" }, "300")),
      "Too many failed sign-ins. Try again in 5 minutes.",
    );
    assert.equal(
      sw.errorText(problem(403, "session_too_new", { retry_after: 86390 })),
      "This device signed in too recently to sign out your older devices. Try again in 1 day.",
    );
    assert.equal(sw.errorText(problem(404, "session_not_found")), "That device was already signed out.");
    assert.match(sw.errorText(problem(403, "csrf_refused")), /does not trust the page/);
    assert.match(sw.errorText(problem(503, "redis_unavailable")), /unavailable right now/);
    assert.match(sw.errorText(problem(503, "busy")), /Try again in 1 second\./);
    assert.match(sw.errorText(problem(503, "busy", { retry_after: 12 })), /Try again in 12 seconds\./);
    assert.match(sw.errorText(new SessionwireError(0)), /Can't reach the Sessionwire server/);
    assert.match(sw.errorText(problem(502, "")), /Can't reach/);
    assert.equal(sw.errorText(problem(500, "internal_error")), "The server had a problem. Try again in a moment.");
    assert.equal(sw.errorText(problem(422, "validation_error")), "detail of validation_error");
    assert.equal(sw.errorText(new SessionwireError(418, {})), "The request failed (HTTP 418).");
    assert.match(sw.errorText(new TypeError("oops")), /Something went wrong in this page/);
  });

  it("says waits rounded up, in the largest unit that reads well", () => {
    const cases = [[0.2, "1 second"], [1, "1 second"], [40, "40 seconds"], [59.5, "1 minute"],
      [60, "1 minute"], [61, "2 minutes"], [3590, "1 hour"], [3601, "2 hours"],
      [23 * 3600, "23 hours"], [86399, "1 day"], [2 * 86400, "2 days"]];
    for (const [seconds, words] of cases) assert.equal(sw.waitText(seconds), words, seconds);
  });
});

describe("the texts option", () => {
  it("replaces sentences, with placeholders or as functions (plural rules)", () => {
    const sw = new Sessionwire({
      api: "http://api.test",
      texts: {
        admin: "Un administrateur a déconnecté cet appareil.",
        rate_limited: "Trop d'essais. Réessayez dans {wait}.",
        minutes: ({ n }) => `${n} minutes`,
        minute: "{n} minute",
      },
    });
    assert.equal(sw.reasonText("admin"), "Un administrateur a déconnecté cet appareil.");
    assert.equal(
      sw.errorText(new SessionwireError(429, { code: "rate_limited", retry_after: 120 })),
      "Trop d'essais. Réessayez dans 2 minutes.",
    );
    assert.equal(sw.waitText(60), "1 minute");
    // What it does not replace stays English; the defaults are left alone for others.
    assert.equal(sw.reasonText("expired"), "Your session expired.");
    assert.equal(new Sessionwire({ api: "http://api.test" }).reasonText("admin"), REASONS.admin);
    assert.ok(Object.isFrozen(TEXTS));
  });
});

describe("a device in words", () => {
  const now = Date.parse("2026-12-03T10:00:00Z");
  const ago = (seconds) => new Date(now - seconds * 1000).toISOString();

  it("says when it was last seen, rounded down", () => {
    const cases = [
      [0, "active now"], [119, "active now"], [-30, "active now"], [120, "2 minutes ago"],
      [3599, "59 minutes ago"], [3600, "1 hour ago"], [2 * 3600 + 1799, "2 hours ago"],
      [86400, "1 day ago"], [5 * 86400, "5 days ago"],
    ];
    for (const [seconds, words] of cases) assert.equal(seenText(ago(seconds), { now }), words, String(seconds));
    assert.equal(seenText(new Date(now - 7200_000), { now }), "2 hours ago");
    assert.equal(seenText("not a time", { now }), "");
  });

  it("says online now for a live socket, else when last seen", () => {
    assert.equal(presenceText({ online: true, last_seen_at: ago(9000) }, { now }), "online now");
    assert.equal(presenceText({ online: false, last_seen_at: ago(7200) }, { now }), "2 hours ago");
  });

  it("says where, and what", () => {
    const berlin = { country: "Germany", country_code: "DE", region: "Land Berlin", city: "Berlin", this_network: false };
    assert.equal(whereText(berlin), "Berlin, Germany");
    assert.equal(whereText({ ...berlin, city: null }), "Land Berlin, Germany");
    assert.equal(whereText({ ...berlin, city: null, region: null }), "Germany");
    assert.equal(whereText({ country: null, country_code: null, region: null, city: null, this_network: true }), "this network");
    assert.equal(whereText(null), "");
    assert.equal(deviceText({ browser: "Chrome 120", os: "Android 14" }), "Chrome 120 on Android 14");
    assert.equal(deviceText({ browser: null, os: "Linux" }), "Linux");
    assert.equal(deviceText({ browser: null, os: null }), "");
  });

  it("takes texts, as the client does", () => {
    const texts = { active_now: "gerade aktiv", ago: "vor {time}", hours: "{n} Stunden", this_network: "dieses Netz", online_now: "jetzt online" };
    assert.equal(seenText(ago(7200), { now, texts }), "vor 2 Stunden");
    assert.equal(seenText(ago(5), { now, texts }), "gerade aktiv");
    assert.equal(whereText({ this_network: true }, { texts }), "dieses Netz");
    const sw = new Sessionwire({ api: "http://api.test", texts });
    assert.equal(sw.presenceText({ online: true }), "jetzt online");
    assert.equal(sw.seenText(ago(7200), now), "vor 2 Stunden");
    assert.equal(sw.whereText({ this_network: true }), "dieses Netz");
    assert.equal(sw.deviceText({ browser: "Firefox 120", os: "Ubuntu" }), "Firefox 120 on Ubuntu");
  });
});
