// Stand-ins for the platform: a fetch that answers like the API, a WebSocket the test drives.

export const SESSION = {
  session_id: "s-laptop",
  device_id: null,
  device_name: "Laptop",
  user_agent: "node",
  ip: "127.0.0.1",
  created_at: "2026-01-01T00:00:00Z",
  last_seen_at: "2026-01-01T00:00:00Z",
  expires_at: "2026-01-08T00:00:00Z",
};
export const GATEWAY = "ws://gateway.test/ws";

/** A fetch whose answers the test sets per "METHOD /path"; every call is recorded. */
export function fakeApi(overrides = {}) {
  const calls = [];
  const answers = {
    "POST /login": [200, { token: "jwt-1", token_type: "Bearer", expires_at: "x", session: SESSION, device_token: "dt-1" }],
    "GET /me": [200, { username: "alice", email: null, bio: null, session: SESSION }],
    "GET /config": [200, { gateway_url: GATEWAY, socket_ticket: false }],
    "GET /sessions": [200, { sessions: [{ ...SESSION, current: true }] }],
    "POST /logout": [200, { revoked: [SESSION.session_id] }],
    ...overrides,
  };
  async function fetch(url, init = {}) {
    const path = new URL(url).pathname;
    const key = `${init.method ?? "GET"} ${path}`;
    calls.push({ key, url, init, body: init.body ? JSON.parse(init.body) : undefined });
    let answer = answers[key];
    if (typeof answer === "function") answer = await answer(); // the test decides when
    if (answer instanceof Error) throw answer;
    const [status, body, headers = {}] = answer ?? [404, { code: "not_found" }];
    return new Response(JSON.stringify(body), {
      status,
      headers: { "Content-Type": "application/json", ...headers },
    });
  }
  return { fetch, calls, answers };
}

/** A WebSocket class whose instances the test opens, feeds and closes. */
export function fakeSockets() {
  const opened = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.closedWith = null;
      opened.push(this);
    }
    close(code) {
      this.closedWith = code;
    }
    /** The server sends `message`. */
    send(message) {
      this.onmessage?.({ data: JSON.stringify(message) });
    }
    /** The connection ends with `code`. */
    drop(code) {
      this.onclose?.({ code });
    }
  }
  return { FakeSocket, opened };
}

/** Let every pending promise callback run (the client awaits fetch and JSON). */
export async function settle() {
  for (let i = 0; i < 10; i += 1) await new Promise((resolve) => setImmediate(resolve));
}
