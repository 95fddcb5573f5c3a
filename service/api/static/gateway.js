// The live connection to the gateway: token in the subprotocol, reconnect with backoff.

const PROTOCOL = "sessionwire.v1";
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 8000;

/** Close codes 4500-4999 mean "do not reconnect" (e.g. 4501, session revoked). */
export function isFinal(code) {
  return code >= 4500 && code <= 4999;
}

/**
 * Keeps one WebSocket open until stopped or told not to come back.
 *
 * `handlers`: onMessage(message), onStatus("connecting" | "live" | "reconnecting" | "off"),
 * onFinalClose(event), beforeRetry() (may return a promise; runs before each reconnect).
 */
export class Gateway {
  #url;
  #token;
  #handlers;
  #socket = null;
  #timer = null;
  #failures = 0;
  #stopped = false;

  constructor(url, token, handlers) {
    this.#url = url;
    this.#token = token;
    this.#handlers = handlers;
  }

  start() {
    window.addEventListener("online", this.#onOnline);
    this.#open();
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    window.removeEventListener("online", this.#onOnline);
    this.#socket?.close(1000);
    this.#socket = null;
  }

  #open() {
    this.#handlers.onStatus(this.#failures ? "reconnecting" : "connecting");
    let socket;
    try {
      socket = new WebSocket(this.#url, [PROTOCOL, `bearer.${this.#token}`]);
    } catch {
      this.#stopped = true; // a malformed address: retrying cannot help
      this.#handlers.onStatus("off");
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
    if (message.type === "ready") {
      this.#failures = 0;
      this.#handlers.onStatus("live");
    }
    this.#handlers.onMessage(message);
  }

  #closed(socket, event) {
    if (this.#stopped || socket !== this.#socket) return;
    this.#socket = null;
    if (isFinal(event.code)) {
      this.#stopped = true;
      this.#handlers.onStatus("off");
      this.#handlers.onFinalClose(event);
      return;
    }
    this.#failures += 1;
    this.#handlers.onStatus("reconnecting");
    this.#timer = setTimeout(() => this.#retry(), this.#delay());
  }

  async #retry() {
    try {
      await this.#handlers.beforeRetry();
    } catch {
      // The API may be down too; keep trying the gateway anyway.
    }
    if (!this.#stopped) this.#open();
  }

  // Exponential, capped, with jitter so many pages don't come back in one wave.
  #delay() {
    const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (this.#failures - 1));
    return base / 2 + Math.random() * (base / 2);
  }

  // Back online: try now rather than after the current wait.
  #onOnline = () => {
    if (this.#stopped || this.#socket) return;
    clearTimeout(this.#timer);
    this.#retry();
  };
}
