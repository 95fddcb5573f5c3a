// Words for times and for the activity log, in the page's language (the reasons a device
// was signed out, and errors, are the client library's words).

const LANG = document.documentElement.lang || "en";
const relativeFormat = new Intl.RelativeTimeFormat(LANG, { numeric: "auto" });
const clockFormat = new Intl.DateTimeFormat(LANG, { dateStyle: "medium", timeStyle: "medium" });
const UNITS = [["day", 86400], ["hour", 3600], ["minute", 60]];

// The activity log's words for a session that ended; when a device did it, its name
// follows the words (the page sets it apart: "Signed out by “Firefox on Ubuntu”").
const SIGNED_OUT = {
  logout: "Signed out",
  revoked: "Signed out by",
  revoke_others: "Signed out with all other devices, by",
  logout_all: "Signed out everywhere, by",
  expired: "Session expired",
  evicted: "Signed out: too many devices",
  replaced: "Replaced by a new sign-in on the same device",
  admin: "Signed out by an administrator",
  password_changed: "Signed out: password changed",
};
const BY_DEVICE = new Set(["revoked", "revoke_others", "logout_all"]);

/** "just now", "5 minutes ago", "yesterday"; a past time, so clock skew never says "in …". */
export function relativeTime(date, now = Date.now()) {
  const seconds = Math.min(0, Math.round((date.getTime() - now) / 1000));
  if (Math.abs(seconds) < 45) return "just now";
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size) return relativeFormat.format(Math.round(seconds / size), unit);
  }
  return relativeFormat.format(Math.round(seconds / 60), "minute");
}

/** "Nov 27, 2026, 7:31:05 AM": the exact time, for tooltips and sentences. */
export function clockTime(date) {
  return clockFormat.format(date);
}

/** What an activity event says happened, and the name of the device that did it (or
 * null): ["Signed in", null], ["Signed out by", "Firefox on Ubuntu"]… */
export function eventInWords(event) {
  if (event.type === "session.created") return ["Signed in", null];
  if (event.type === "login.failed") return [failuresInWords(event.failures), null];
  if (event.type === "session.renamed") {
    return event.by ? ["Renamed by", event.by.device_name || "another device"] : ["Renamed by an administrator", null];
  }
  const reason = event.reason in SIGNED_OUT ? event.reason : "logout";
  if (!BY_DEVICE.has(reason)) return [SIGNED_OUT[reason], null];
  return [SIGNED_OUT[reason], event.by?.device_name || "another device"];
}

/** "Someone tried your password 4 times from 203.0.113.9 and 2 other addresses". */
export function failuresInWords(failures) {
  const tries = failures.attempts + failures.refused;
  const [first, ...others] = failures.ips;
  const more = others.length + (failures.other_ips > 0 ? 1 : 0);
  const elsewhere = failures.other_ips > 0 ? "more addresses" : plural(more, "other address", "other addresses");
  return `Someone tried your password ${plural(tries, "time")} from ${first?.ip || "an unknown address"}` +
    (more ? ` and ${elsewhere}` : "");
}

/** "Sign-ins were paused until 10:05:30 AM", for a lockout; else "". */
export function lockoutInWords(failures) {
  if (!failures.locked_until) return "";
  return `Sign-ins were paused until ${clockTime(new Date(failures.locked_until))}`;
}

function plural(count, unit, units = `${unit}s`) {
  return `${count} ${count === 1 ? unit : units}`;
}
