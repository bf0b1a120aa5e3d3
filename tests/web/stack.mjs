// The test stack scripts/dev started ($MAGPIE_RUN): ports, secrets, the SMS sink, and the API.
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";

function readEnvFile(path) {
  const out = {};
  for (const raw of readFileSync(path, "utf8").split("\n")) {
    const line = raw.replace(/\s+#.*$/, "").trim();
    const m = line.match(/^([A-Z_]+)=(?:"([^"]*)"|(\S*))/);
    if (m) out[m[1]] = m[2] ?? m[3];
  }
  return out;
}

export const RUN = process.env.MAGPIE_RUN;
if (!RUN || !existsSync(join(RUN, "dev.env"))) {
  throw new Error("no test stack: run the browser tests through 'scripts/dev test'");
}
const env = readEnvFile(join(RUN, "dev.env"));
const secret = readEnvFile(join(RUN, "secret"));
export const BASE = `http://127.0.0.1:${env.NGINX_PORT}`;
export const API_KEY = secret.API_KEY;

/** The last code the SMS sink received for this mobile (the dev stack writes "mobile code" lines). */
export function lastSmsCode(mobile) {
  const path = join(RUN, "logs", "sms.txt");
  if (!existsSync(path)) return null;
  const lines = readFileSync(path, "utf8").trim().split("\n").reverse();
  const line = lines.find((l) => l.split(" ")[0] === mobile);
  return line ? line.split(" ")[1] : null;
}

/** A mobile number no other test uses. */
let seq = 0;
export function freshMobile() {
  seq += 1;
  return `139${String(Date.now() % 1e6).padStart(6, "0")}${String(seq).padStart(2, "0")}`;
}

export async function admin(path, body) {
  const resp = await fetch(BASE + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Key ${API_KEY}` },
    body: JSON.stringify(body),
  });
  const data = await resp.json();
  if (data.code !== 0) throw new Error(`${path} failed: ${JSON.stringify(data)}`);
  return data.result;
}
