// Calls to the Sessionwire API; failures become ApiError or Unreachable.

import { waitInWords } from "./format.js";

/** The API answered with an error (a problem+json body). */
export class ApiError extends Error {
  constructor(response, problem) {
    super(problem.detail || `HTTP ${response.status}`);
    this.status = response.status;
    this.code = problem.code || "";
    this.problem = problem;
    this.retryAfter = Number(response.headers.get("Retry-After") ?? problem.retry_after ?? 0);
  }
}

/** The API could not be reached at all. */
export class Unreachable extends Error {}

/** Send one request; resolve with the JSON body, or throw ApiError / Unreachable. */
export async function call(method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  } catch (error) {
    throw new Unreachable("The API could not be reached.", { cause: error });
  }
  const data = await readJson(response);
  if (!response.ok) throw new ApiError(response, data);
  return data;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

/** What went wrong, in words a person can act on. */
export function errorInWords(error) {
  if (error instanceof Unreachable || [502, 504].includes(error.status)) {
    return "Can't reach the Sessionwire server. Check your connection and try again.";
  }
  if (!(error instanceof ApiError)) return "Something went wrong in this page. Reload and try again.";
  switch (error.code) {
    case "invalid_credentials":
      return "Wrong username or password.";
    case "rate_limited":
      return `Too many failed sign-ins. Try again in ${waitInWords(error.retryAfter || 60)}.`;
    case "redis_unavailable":
      return "The service is unavailable right now. Try again in a moment.";
    case "busy":
      return `Many sign-ins are being checked right now. Try again in ${waitInWords(error.retryAfter || 1)}.`;
    case "session_not_found":
      return "That device was already signed out.";
  }
  if (error.status >= 500) return "The server had a problem. Try again in a moment.";
  return error.problem.detail || `The request failed (HTTP ${error.status}).`;
}
