// The HTTP API (SPEC §3): one fetch wrapper that always resolves to the envelope, and the stored login.

/** POST (or GET) a JSON API endpoint. Resolves to {code, message, result, status}; a network failure or a
 * non-envelope answer becomes code -1 with a message, so callers handle one shape. */
export async function api(path, { method = "POST", body, token, signal } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers["Authorization"] = `Bearer ${token}`;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    return { code: -1, message: "network error", result: null, status: 0 };
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!data || typeof data.code !== "number") {
    return { code: -1, message: `HTTP ${resp.status}`, result: null, status: resp.status };
  }
  return { code: data.code, message: data.message ?? data.msg ?? "", result: data.result ?? null, status: resp.status };
}

/** The login kept by this browser (one per storage area: the phone page uses its own). */
export class Login {
  constructor(prefix) {
    this.prefix = prefix;
  }
  get token() {
    return localStorage.getItem(`${this.prefix}.token`);
  }
  get userId() {
    return Number(localStorage.getItem(`${this.prefix}.userId`)) || 0;
  }
  save(userId, token) {
    localStorage.setItem(`${this.prefix}.token`, token);
    localStorage.setItem(`${this.prefix}.userId`, String(userId));
  }
  clear() {
    localStorage.removeItem(`${this.prefix}.token`);
    localStorage.removeItem(`${this.prefix}.userId`);
  }
}

export const webLogin = new Login("magpie.web");

/** The web login's user (`/me`), or null after sending the browser to the login page (no or a dead token). */
export async function whoAmI() {
  const token = webLogin.token;
  if (token) {
    const who = await api("/me", { method: "GET", token });
    if (who.code === 0) return who.result;
    webLogin.clear();
  }
  location.assign("index.html");
  return null;
}

/** A short description of this device for the phone to show ("who is asking"). */
export function deviceName() {
  const ua = navigator.userAgent;
  const browser = /Firefox\//.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrom/.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "Browser";
  const os = /Windows/.test(ua) ? "Windows" : /Mac OS/.test(ua) ? "macOS" : /Android/.test(ua) ? "Android" : /Linux/.test(ua) ? "Linux" : /iPhone|iPad/.test(ua) ? "iOS" : "";
  return os ? `${browser} on ${os}` : browser;
}

/** Set the text of the element with this id. */
export function say(id, text, kind = "") {
  const el = document.getElementById(id);
  el.textContent = text;
  el.dataset.kind = kind;
}
