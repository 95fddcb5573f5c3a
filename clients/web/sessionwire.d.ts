// Types of the Sessionwire client library (sessionwire.js).

/** A session of the account, as the API lists it (times are RFC 3339, UTC). */
export interface Session {
  session_id: string;
  device_id: string | null;
  device_name: string;
  user_agent: string;
  /** Null when unknown (a session the admin API opened without one). */
  ip: string | null;
  created_at: string;
  /** Moves with requests, and while a socket is open. */
  last_seen_at: string;
  expires_at: string;
  /** A live socket holds this session right now (on any worker process). */
  online: boolean;
  /** From the User-Agent: "Chrome 120", "sessionwire 0.1"; null when unknown. */
  browser: string | null;
  /** "Android 14", "iOS 17.5", "Windows 10", "macOS 14", "Ubuntu"; null when unknown. */
  os: string | null;
  device_type: DeviceType;
  /** Null when the server has no GeoIP database, or it has no entry for the address. */
  location: Location | null;
}

export type DeviceType = "desktop" | "phone" | "tablet" | "terminal" | "unknown";

/** Where a session's address is (English names). */
export interface Location {
  country: string | null;
  /** ISO 3166-1 alpha-2, e.g. "DE". */
  country_code: string | null;
  region: string | null;
  city: string | null;
  /** A loopback or private address ("this network"); the other fields are then null. */
  this_network: boolean;
}

export interface SessionView extends Session {
  /** True for this device's session (in a browser: in every tab). */
  current: boolean;
}

/** The device that ended a session. */
export interface Actor {
  session_id: string;
  device_name: string;
  ip: string;
}

export type RevokeReason =
  | "logout"
  | "revoked"
  | "revoke_others"
  | "logout_all"
  | "expired"
  | "evicted"
  | "replaced"
  | "admin"
  | "password_changed";

export interface Me {
  username: string;
  email?: string | null;
  bio?: string | null;
  session: Session;
}

export interface ActivityEvent {
  id: string;
  type: "session.created" | "session.revoked" | "session.renamed" | "login.failed";
  at: string;
  session: { session_id: string; device_name: string; ip: string };
  reason: RevokeReason | null;
  by: Actor | null;
}

export interface SignedOut {
  /** Why; "invalid" when the server could not say (a token it no longer accepts). */
  reason: RevokeReason | "invalid";
  at: string | null;
  /** The device that did it; null for expiry and the admin API (the reason says who). */
  by: Actor | null;
  /** The reason in words (TEXTS, or the `texts` option). */
  text: string;
}

export interface SessionsChanged {
  /** "resync": the socket (re)connected, so anything may have changed: list again.
   * "renamed", "online", "offline" come for this device's own session too. */
  event: "created" | "revoked" | "renamed" | "online" | "offline" | "resync";
  session: Session | null;
}

export interface NewSignIn {
  session: Session;
  /** "New sign-in on Firefox on Ubuntu (203.0.113.5)". */
  text: string;
}

export type Status = "off" | "connecting" | "live" | "reconnecting";

export interface Events {
  /** This device's session ended (not by this tab's own signOut and the like). */
  signedOut: SignedOut;
  /** Another device signed in or out; or "resync". */
  sessionsChanged: SessionsChanged;
  /** Another device signed in to the account. */
  newSignIn: NewSignIn;
  /** Another tab of this browser signed in: this tab is signed in as that, too. */
  signedIn: { username: string; session: Session };
  /** The socket's state changed. */
  status: { status: Status };
}

/** A sentence: text with {placeholders}, or a function of their values. */
export type Text = string | ((values: Record<string, string | number>) => string);

export type TextKey =
  | RevokeReason
  | "invalid"
  | "logout_here"
  | "logout_all_here"
  | "new_sign_in"
  | "new_sign_in_from"
  | "unknown_device"
  | "invalid_credentials"
  | "rate_limited"
  | "session_too_new"
  | "session_not_found"
  | "csrf_refused"
  | "redis_unavailable"
  | "busy"
  | "unreachable"
  | "server_error"
  | "failed"
  | "page_error"
  | "second"
  | "seconds"
  | "minute"
  | "minutes"
  | "hour"
  | "hours"
  | "day"
  | "days"
  | "online_now"
  | "active_now"
  | "ago"
  | "this_network"
  | "browser_on_os"
  | "signed_out";

export const TEXTS: Readonly<Record<TextKey, Text>>;

export interface Options {
  /** The API's address; default: the page's own origin. */
  api?: string;
  /** Bearer mode: sign calls with this token instead of the browser's cookie. */
  token?: string;
  /** Bearer mode: the device token of this device's earlier sign-in. */
  deviceToken?: string;
  /** Replacements for any of TEXTS. */
  texts?: Partial<Record<TextKey, Text>>;
  /** Open the socket once signed in (default true). */
  live?: boolean;
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
}

/** The API answered with a problem (RFC 9457), or could not be reached (status 0). */
export class SessionwireError extends Error {
  readonly status: number;
  /** The problem's stable code: "invalid_credentials", "session_too_new", "unreachable"… */
  readonly code: string;
  readonly problem: Record<string, unknown>;
  /** Seconds to wait, when the API says (rate_limited, session_too_new, busy). */
  readonly retryAfter: number;
}

export class Sessionwire {
  constructor(options?: Options);
  readonly session: Session | null;
  readonly username: string | null;
  readonly status: Status;
  /** Bearer mode only: the session token (keep it where the platform keeps secrets). */
  readonly token: string | null;
  readonly deviceToken: string | null;

  on<E extends keyof Events>(event: E, handler: (detail: Events[E]) => void): () => void;
  off<E extends keyof Events>(event: E, handler: (detail: Events[E]) => void): void;

  signIn(credentials: {
    username: string;
    password: string;
    deviceName?: string;
  }): Promise<{ username: string; session: Session }>;
  /** The session this browser (or token) already has, or null when signed out. */
  resume(): Promise<Me | null>;
  me(): Promise<Me>;
  signOut(): Promise<void>;
  signOutEverywhere(): Promise<string[]>;
  sessions(): Promise<SessionView[]>;
  revoke(sessionId: string): Promise<string[]>;
  revokeOthers(): Promise<string[]>;
  activity(options?: { limit?: number }): Promise<ActivityEvent[]>;
  /** Rename a device (PATCH /sessions/{id}); rejects with 422 validation_error or 404
   * session_not_found. */
  rename(sessionId: string, deviceName: string): Promise<SessionView>;

  errorText(error: unknown): string;
  reasonText(reason: string, by?: Actor | null, ownSessionId?: string | null): string;
  waitText(seconds: number): string;
  /** The pure helpers below, in this client's texts. */
  seenText(at: string | Date, now?: number): string;
  presenceText(session: Pick<Session, "online" | "last_seen_at">, now?: number): string;
  whereText(location: Location | null): string;
  deviceText(session: Pick<Session, "browser" | "os">): string;
  /** Stop the socket and every listener. */
  close(): void;
}

export const FIRST_DELAY_MS: number;
export const MAX_DELAY_MS: number;
export const RECONNECT_CODES: readonly number[];
export function isFinal(code: number): boolean;
export function shouldReconnect(code: number): boolean;
export interface WordsOptions {
  /** Milliseconds since the epoch; default Date.now(). */
  now?: number;
  texts?: Partial<Record<TextKey, Text>>;
}
/** "active now" (under 2 minutes), "5 minutes ago", "2 hours ago", "3 days ago". */
export function seenText(at: string | Date, options?: WordsOptions): string;
/** "online now", else seenText(last_seen_at). */
export function presenceText(
  session: Pick<Session, "online" | "last_seen_at">,
  options?: WordsOptions,
): string;
/** "Berlin, Germany", "this network", or "" for null. */
export function whereText(location: Location | null, options?: WordsOptions): string;
/** "Chrome 120 on Android 14", the one that is known, or "". */
export function deviceText(session: Pick<Session, "browser" | "os">, options?: WordsOptions): string;
export function reconnectDelay(failures: number, random?: () => number): number;

export default Sessionwire;
