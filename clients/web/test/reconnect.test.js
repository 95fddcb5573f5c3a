// The reconnect schedule and which close codes end the socket for good.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  FIRST_DELAY_MS,
  MAX_DELAY_MS,
  RECONNECT_CODES,
  isFinal,
  reconnectDelay,
  shouldReconnect,
} from "../sessionwire.js";

describe("reconnectDelay", () => {
  it("doubles from half a second up to eight, with jitter between half and all of it", () => {
    const bounds = [1, 2, 3, 4, 5, 6, 10].map((n) => [
      reconnectDelay(n, () => 0),
      reconnectDelay(n, () => 1),
    ]);
    assert.deepEqual(bounds, [
      [250, 500],
      [500, 1000],
      [1000, 2000],
      [2000, 4000],
      [4000, 8000],
      [4000, 8000],
      [4000, 8000],
    ]);
    assert.equal(FIRST_DELAY_MS, 500);
    assert.equal(MAX_DELAY_MS, 8000);
  });

  it("spreads clients over the window (no two waves of the same size)", () => {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const delays = Array.from({ length: 1000 }, () => reconnectDelay(3, random));
    assert.ok(Math.min(...delays) >= 1000 && Math.max(...delays) <= 2000);
    const buckets = new Set(delays.map((d) => Math.floor(d / 100)));
    assert.equal(buckets.size, 10); // every tenth of the window is used
  });
});

describe("close codes", () => {
  it("reconnects after going away, a dropped network, a server error and try-again", () => {
    assert.deepEqual([...RECONNECT_CODES], [1001, 1006, 1011, 1013]);
    for (const code of [...RECONNECT_CODES, 1000, 1008, 4000, 4499]) {
      assert.equal(shouldReconnect(code), true, code);
      assert.equal(isFinal(code), false, code);
    }
  });

  it("never comes back after 4500-4999 (4501: the session was revoked)", () => {
    for (const code of [4500, 4501, 4700, 4999]) {
      assert.equal(isFinal(code), true, code);
      assert.equal(shouldReconnect(code), false, code);
    }
    assert.equal(isFinal(5000), false);
  });
});
