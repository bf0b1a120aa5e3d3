// The phone simulator: SMS login, then "scan" a QR code (a camera photo or a screenshot, decoded with
// jsQR) or paste its text, see who is asking, confirm or cancel.

import { api, Login, say } from "./api.js";

const phoneLogin = new Login("magpie.phone");
const QR_PREFIX = "magpie://pcsession/";
let scanned = null; // the QR session token being answered

function showLoggedIn() {
  const on = Boolean(phoneLogin.token);
  document.getElementById("scan-card").classList.toggle("disabled", !on);
  if (on) say("login-status", `Logged in as user ${phoneLogin.userId}.`, "ok");
}

document.getElementById("code-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const mobile = document.getElementById("mobile").value.trim();
  const r = await api("/send_code", { body: { mobile } });
  say("login-status", r.code === 0 ? "Code sent. Enter it below." : `Could not send a code: ${r.message}`, r.code === 0 ? "ok" : "error");
  if (r.code === 0) document.getElementById("code").focus();
});

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const mobile = document.getElementById("mobile").value.trim();
  const code = document.getElementById("code").value.trim();
  const r = await api("/login", { body: { mobile, code, platform: "phone-sim" } });
  if (r.code !== 0) {
    say("login-status", `Login failed: ${r.message}`, "error");
    return;
  }
  phoneLogin.save(r.result.userId, r.result.token);
  showLoggedIn();
});

/** The session token inside a scanned or pasted text (the QR text, or the bare token). */
function tokenFrom(text) {
  const t = text.trim();
  return t.startsWith(QR_PREFIX) ? t.slice(QR_PREFIX.length) : t;
}

async function decodeImage(file) {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const code = window.jsQR(img.data, img.width, img.height);
  return code ? code.data : null;
}

async function scan(text) {
  if (!phoneLogin.token) {
    say("scan-status", "Log in first.", "error");
    return;
  }
  const token = tokenFrom(text);
  if (!token) return;
  const r = await api(`/scan_pc/${encodeURIComponent(token)}`, { token: phoneLogin.token });
  if (r.code !== 0) {
    document.getElementById("asking").hidden = true;
    say("scan-status", `Cannot use this code: ${r.message}`, "error");
    return;
  }
  scanned = token;
  const info = r.result;
  document.getElementById("ask-device").textContent = info.device_name || "unknown device";
  document.getElementById("ask-ua").textContent = info.user_agent || "unknown";
  document.getElementById("ask-ip").textContent = info.ip || "unknown";
  document.getElementById("ask-created").textContent = info.created ? new Date(info.created).toLocaleString() : "";
  document.getElementById("asking").hidden = false;
  say("scan-status", "Scanned. Check who is asking, then confirm.", "scanned");
  document.getElementById("confirm").focus();
}

document.getElementById("scan-file").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  let text = null;
  try {
    text = await decodeImage(file);
  } catch {
    text = null;
  }
  ev.target.value = "";
  if (!text) {
    say("scan-status", "No QR code found in that picture.", "error");
    return;
  }
  scan(text);
});

document.getElementById("paste-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  scan(document.getElementById("qr-input").value);
});

async function answer(path, done) {
  if (!scanned) return;
  const r = await api(path, { body: { token: scanned }, token: phoneLogin.token });
  document.getElementById("asking").hidden = true;
  say("scan-status", r.code === 0 ? done : `Failed: ${r.message}`, r.code === 0 ? "ok" : "error");
  scanned = null;
}

document.getElementById("confirm").addEventListener("click", () => answer("/confirm_pc", "Confirmed: the web page is logging in."));
document.getElementById("cancel").addEventListener("click", () => answer("/cancel_pc", "Cancelled."));

showLoggedIn();
