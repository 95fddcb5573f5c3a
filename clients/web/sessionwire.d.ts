// Types of the Sessionwire client library (sessionwire.js).

/** A session of the account, as the API lists it (times are RFC 3339, UTC). */
export interface Session {
  session_id: string;
  device_id: string | null;
  device_name: string;
  user_agent: string;
  ip: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
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
  type: "session.created" | "session.revoked";
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
  /** "resync": the socket (re)connected, so anything may have changed: list again. */
  event: "created" | "revoked" | "resync";
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
  | "days";

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

  errorText(error: unknown): string;
  reasonText(reason: string, by?: Actor | null, ownSessionId?: string | null): string;
  waitText(seconds: number): string;
  /** Stop the socket and every listener. */
  close(): void;
}

export const FIRST_DELAY_MS: number;
export const MAX_DELAY_MS: number;
export const RECONNECT_CODES: readonly number[];
export function isFinal(code: number): boolean;
export function shouldReconnect(code: number): boolean;
export function reconnectDelay(failures: number, random?: () => number): number;

export default Sessionwire;
