// The login page: a QR code from /pc_session, a long poll on /session_login until the phone confirms,
// a fresh code before the old one expires.

import { api, deviceName, say, webLogin } from "./api.js";

const REFRESH_MARGIN_MS = 5000; // replace the code this long before it expires
let current = null; // {token, abort}

async function newSession(note = "") {
  if (current) current.abort.abort();
  const r = await api("/pc_session", { body: { platform: "web", device_name: deviceName() } });
  if (r.code !== 0) {
    say("status", `Cannot get a code (${r.message}); retrying…`, "error");
    setTimeout(() => newSession(note), 3000);
    return;
  }
  const { token, qr_url, qr_text, expired } = r.result;
  current = { token, abort: new AbortController() };
  document.getElementById("qr").src = qr_url;
  document.getElementById("qr-text").textContent = qr_text;
  say("status", note || "Waiting for your phone to scan the code…");
  const mine = current;
  setTimeout(() => {
    if (current === mine) newSession("The code was renewed. Scan the new one.");
  }, Math.max(1000, expired - REFRESH_MARGIN_MS));
  poll(mine);
}

async function poll(session) {
  let failures = 0;
  while (current === session) {
    let r;
    try {
      r = await api(`/session_login/${encodeURIComponent(session.token)}`, { signal: session.abort.signal });
    } catch {
      return; // aborted: a newer session took over
    }
    if (current !== session) return;
    switch (r.code) {
      case 10: // not scanned yet: poll again
        failures = 0;
        break;
      case 9:
        failures = 0;
        say("status", `Scanned by ${r.result?.userName ?? "your phone"} — confirm on your phone.`, "scanned");
        break;
      case 0:
        webLogin.save(r.result.userId, r.result.token);
        say("status", "Logged in.", "ok");
        location.assign("chat.html");
        return;
      case 18:
        newSession("Cancelled on the phone. Here is a new code.");
        return;
      case 8:
      case 14:
        newSession("That code expired. Here is a new one.");
        return;
      default: // network or server trouble: back off a little, keep the session
        failures++;
        say("status", `Connection problem (${r.message}); retrying…`, "error");
        await new Promise((res) => setTimeout(res, Math.min(10000, 500 * 2 ** failures)));
    }
  }
}

async function main() {
  if (webLogin.token) {
    const me = await api("/me", { method: "GET", token: webLogin.token });
    if (me.code === 0) {
      location.assign("chat.html");
      return;
    }
    webLogin.clear();
  }
  newSession();
}

main();
