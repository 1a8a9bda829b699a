// The REST API as the page uses it: the caller's key on every request, and every refusal turned into
// an ApiError whose message is what a person should read (never the raw JSON).
const KEY_STORAGE = "lce.apiKey";

export function savedKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function saveKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export class ApiError extends Error {
  constructor(status, message, { retryAfter = null, serverMessage = "" } = {}) {
    super(message);
    this.status = status; // 0: the server could not be reached
    this.retryAfter = retryAfter;
    this.serverMessage = serverMessage;
  }
}

export function authHeaders() {
  const key = savedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** A JSON request; resolves to the parsed body, rejects with an ApiError. */
export async function call(method, path, body = undefined) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "The server cannot be reached: check your connection and try again.");
  }
  if (!response.ok) throw await refusal(response);
  return response.json();
}

/** The ApiError for a response that is not 2xx. */
export async function refusal(response) {
  let serverMessage = "";
  let retryAfter = Number(response.headers.get("Retry-After")) || null;
  try {
    const body = await response.json();
    serverMessage = typeof body.error === "string" ? body.error : "";
    retryAfter = retryAfter || Number(body.retryAfter) || null;
  } catch {
    // not JSON (a proxy's page, say): the status alone says enough
  }
  return new ApiError(response.status, humanMessage(response.status, serverMessage, retryAfter), {
    retryAfter,
    serverMessage,
  });
}

function humanMessage(status, serverMessage, retryAfter) {
  const detail = serverMessage ? ` (${serverMessage})` : "";
  switch (status) {
    case 401:
      return savedKey()
        ? "This server refused your API key (unknown or revoked): enter another under “API key”."
        : "This server needs an API key: enter yours under “API key”.";
    case 404:
      return `Not found: it may have been removed, or belong to another API key${detail}.`;
    case 409:
      return /closed|INACTIVE|inactive/.test(serverMessage)
        ? "This session is closed: it can no longer be saved or run. Start a new session to go on."
        : `Not possible now${detail}.`;
    case 413:
      return `Too large for the server${detail}.`;
    case 429:
      return `Too many runs: try again in ${retryAfter || "a few"} s.`;
    case 503:
      return `The service is busy or partly down: try again in ${retryAfter || "a few"} s.`;
    default:
      return serverMessage || `The server answered ${status}.`;
  }
}
