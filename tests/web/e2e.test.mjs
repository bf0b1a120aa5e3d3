// End to end, as people use it: Debian's chromium driven by playwright-core against the test stack
// (nginx -> magpie-http over FastCGI -> Redis/MariaDB -> magpie-push over WebSocket -> another browser).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

import { BASE, admin, freshMobile, lastSmsCode } from "./stack.mjs";

const ARTIFACTS = resolve(process.env.MAGPIE_ARTIFACTS ?? join(import.meta.dirname, "..", "..", "test-artifacts", "web"));
const DESKTOP = { viewport: { width: 1280, height: 800 } };
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };
const T = 20000; // generous per-step timeout: sanitizer-built daemons on a busy 2-core machine

let browser;
const consoleErrors = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
});

/** A new browser context (one person's browser) whose pages report console errors. */
async function person(options) {
  const context = await browser.newContext({ baseURL: BASE, ...options });
  context.on("page", watch);
  return context;
}

function watch(page) {
  page.on("console", (msg) => {
    // While a context is offline on purpose the browser itself reports the failed requests; anything else
    // is the page's fault.
    if (msg.type() === "error" && !msg.text().includes("ERR_INTERNET_DISCONNECTED")) {
      consoleErrors.push(`${page.url()}: ${msg.text()}`);
    }
  });
  page.on("pageerror", (err) => consoleErrors.push(`${page.url()}: ${err.message}`));
}

async function open(context, path) {
  const page = await context.newPage();
  await page.goto(path);
  return page;
}

/** Log in on the phone page by SMS; returns the user id the phone got. */
async function phoneLogin(phone, mobile) {
  await phone.fill("#mobile", mobile);
  await phone.click("#send-code");
  await phone.waitForFunction(() => document.getElementById("login-status").textContent.includes("Code sent"), null, { timeout: T });
  const code = lastSmsCode(mobile);
  assert.match(code, /^\d{6}$/);
  await phone.fill("#code", code);
  await phone.press("#code", "Enter"); // the keyboard works
  await phone.waitForFunction(() => document.getElementById("login-status").textContent.includes("Logged in"), null, { timeout: T });
  return phone.evaluate(() => Number(localStorage.getItem("magpie.phone.userId")));
}

/** The phone photographs the web page's QR code and scans it: the picture travels, not the token. */
async function scanQr(web, phone) {
  await web.waitForFunction(() => document.getElementById("qr").complete && document.getElementById("qr").naturalWidth > 0, null, { timeout: T });
  const dir = mkdtempSync(join(tmpdir(), "magpie-qr-"));
  const photo = join(dir, "qr.png");
  await web.locator(".qr-frame").screenshot({ path: photo });
  await phone.setInputFiles("#scan-file", photo);
  await phone.locator("#asking").waitFor({ state: "visible", timeout: T });
}

/** The whole QR login: web page shows a code, the phone (logged in by SMS) scans and confirms. */
async function qrLogin(web, phone, mobile, beforeConfirm = async () => {}) {
  const uid = await phoneLogin(phone, mobile);
  await scanQr(web, phone);
  await web.waitForFunction(() => document.getElementById("status").dataset.kind === "scanned", null, { timeout: T });
  await beforeConfirm(uid);
  await phone.click("#confirm");
  await web.waitForURL(/chat\.html$/, { timeout: T });
  return uid;
}

test("QR login: the web page ends up logged in as the phone's user", async () => {
  const webCtx = await person(DESKTOP);
  const phoneCtx = await person(PHONE);
  const web = await open(webCtx, "/");
  await web.screenshot({ path: join(ARTIFACTS, "login-desktop.png") });
  const phone = await open(phoneCtx, "/phone.html");

  const uid = await phoneLogin(phone, freshMobile());
  await scanQr(web, phone);
  // The phone sees who is asking: the web browser's user agent and device.
  assert.match(await phone.textContent("#ask-ua"), /Chrome/);
  assert.ok((await phone.textContent("#ask-device")).length > 0);
  assert.ok((await phone.textContent("#ask-ip")).length > 0);
  await phone.screenshot({ path: join(ARTIFACTS, "phone-scanned-phone.png") });
  // The web page shows the scanned state before the phone confirms.
  await web.waitForFunction(() => document.getElementById("status").textContent.includes("confirm on your phone"), null, { timeout: T });

  await phone.click("#confirm");
  await web.waitForURL(/chat\.html$/, { timeout: T });
  await web.waitForFunction((u) => document.getElementById("me").textContent.includes(`User ${u}`), uid, { timeout: T });
  await web.locator("#conn[data-state=online]").waitFor({ timeout: T });
  await web.screenshot({ path: join(ARTIFACTS, "chat-desktop.png") });

  // The same page at phone width.
  const small = await person(PHONE);
  const loginSmall = await open(small, "/");
  await loginSmall.waitForFunction(() => document.getElementById("qr").naturalWidth > 0, null, { timeout: T });
  await loginSmall.screenshot({ path: join(ARTIFACTS, "login-phone.png") });
  await Promise.all([webCtx.close(), phoneCtx.close(), small.close()]);
});

test("two friends chat; a message sent while one is offline arrives once when it is back", async () => {
  const aWeb = await person(DESKTOP);
  const aPhone = await person(PHONE);
  const bWeb = await person(PHONE);
  const bPhone = await person(PHONE);
  const a = await open(aWeb, "/");
  const b = await open(bWeb, "/");
  const ap = await open(aPhone, "/phone.html");
  const bp = await open(bPhone, "/phone.html");

  // A logs in first; B's friendship with A is made through the admin API before B's page opens the chat.
  const uidA = await qrLogin(a, ap, freshMobile());
  const uidB = await qrLogin(b, bp, freshMobile(), (uid) => admin("/admin/friends", { a: uidA, b: uid }));
  await a.reload(); // A's friends list was loaded before the friendship existed

  for (const page of [a, b]) await page.locator("#conn[data-state=online]").waitFor({ timeout: T });
  await a.click(`#chats li[data-uid="${uidB}"] button`);
  await b.click(`#chats li[data-uid="${uidA}"] button`);
  await a.locator(`#chats li[data-uid="${uidB}"][data-online=true]`).waitFor({ timeout: T });

  // A -> B, marked sent on A's side, shown on B's.
  await a.fill("#text", "hello from A");
  await a.press("#text", "Enter");
  await a.locator('#messages li.out[data-state=sent]', { hasText: "hello from A" }).waitFor({ timeout: T });
  await b.locator("#messages li.in", { hasText: "hello from A" }).waitFor({ timeout: T });
  // B -> A.
  await b.fill("#text", "hi A, B here");
  await b.click("#send");
  await a.locator("#messages li.in", { hasText: "hi A, B here" }).waitFor({ timeout: T });
  await b.locator('#messages li.out[data-state=sent]', { hasText: "hi A, B here" }).waitFor({ timeout: T });
  await a.screenshot({ path: join(ARTIFACTS, "chat-desktop-conversation.png") });
  await b.screenshot({ path: join(ARTIFACTS, "chat-phone.png") });

  // B goes offline; A sends; B comes back and shows the message exactly once.
  await bWeb.setOffline(true);
  await b.locator("#conn:not([data-state=online])").waitFor({ timeout: T });
  await a.fill("#text", "sent while B was away");
  await a.press("#text", "Enter");
  await a.locator('#messages li.out[data-state=sent]', { hasText: "sent while B was away" }).waitFor({ timeout: T });
  await bWeb.setOffline(false);
  const away = b.locator("#messages li.in", { hasText: "sent while B was away" });
  await away.waitFor({ timeout: T });
  await b.locator("#conn[data-state=online]").waitFor({ timeout: T });
  await b.waitForTimeout(1500); // a duplicate would arrive now, from the live copy or a second catch-up
  assert.equal(await away.count(), 1);
  assert.equal(await b.locator("#messages li", { hasText: "hello from A" }).count(), 1);

  await Promise.all([aWeb.close(), aPhone.close(), bWeb.close(), bPhone.close()]);
});

/** Someone logged in on the web page (by QR from their phone): their browser context, page and uid. */
async function webUser(options, beforeConfirm) {
  const ctx = await person(options);
  const phoneCtx = await person(PHONE);
  const page = await open(ctx, "/");
  const uid = await qrLogin(page, await open(phoneCtx, "/phone.html"), freshMobile(), beforeConfirm);
  await page.locator("#conn[data-state=online]").waitFor({ timeout: T });
  return { ctx, phoneCtx, page, uid, close: () => Promise.all([ctx.close(), phoneCtx.close()]) };
}

async function send(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
  await page.locator("#messages li.out[data-state=sent]", { hasText: text }).waitFor({ timeout: T });
}

/** The open conversation's messages as shown, top to bottom. */
const shown = (page) => page.$$eval("#messages li .text", (els) => els.map((e) => e.textContent));
/** The chat list: [uid, unread badge] top to bottom. */
const chatList = (page) =>
  page.$$eval("#chats li", (els) => els.map((li) => [Number(li.dataset.uid), li.querySelector(".badge").textContent]));

test("the chat list shows unread badges; a reconnect and a lost delivery miss nothing and show nothing twice", async () => {
  const a = await webUser(DESKTOP);
  const c = await webUser(DESKTOP);
  // B is friends with both before B's chat page first loads.
  const b = await webUser(PHONE, async (uid) => {
    await admin("/admin/friends", { a: a.uid, b: uid });
    await admin("/admin/friends", { a: c.uid, b: uid });
  });
  for (const x of [a, c]) {
    await x.page.reload(); // their friend lists were loaded before the friendships existed
    await x.page.locator("#conn[data-state=online]").waitFor({ timeout: T });
    await x.page.click(`#chats li[data-uid="${b.uid}"] button`);
  }

  // Unread badges, newest conversation first, on a page that has not opened either conversation.
  await send(a.page, "a1");
  await send(c.page, "c1");
  await b.page.locator(`#chats li[data-uid="${c.uid}"][data-unread="1"]`).waitFor({ timeout: T });
  await b.page.locator(`#chats li[data-uid="${a.uid}"][data-unread="1"]`).waitFor({ timeout: T });
  assert.deepEqual(await chatList(b.page), [[c.uid, "1"], [a.uid, "1"]]);
  assert.equal(await b.page.textContent(`#chats li[data-uid="${c.uid}"] .preview`), "c1");
  await b.page.screenshot({ path: join(ARTIFACTS, "chat-list-phone.png") });
  await b.page.setViewportSize(DESKTOP.viewport);
  await b.page.screenshot({ path: join(ARTIFACTS, "chat-list-desktop.png") });
  await b.page.setViewportSize(PHONE.viewport);

  // Opening A's conversation reads it: the badge goes, and A sees the read receipt.
  await b.page.click(`#chats li[data-uid="${a.uid}"] button`);
  await b.page.locator(`#chats li[data-uid="${a.uid}"][data-unread="0"]`).waitFor({ timeout: T });
  await a.page.locator("#messages li.out[data-read=true]", { hasText: "a1" }).waitFor({ timeout: T });

  // B goes offline; A sends six, C two. Back online, B has each once, in order, and C's badge counts three.
  await b.ctx.setOffline(true);
  await b.page.locator("#conn:not([data-state=online])").waitFor({ timeout: T });
  const away = ["m1", "m2", "m3", "m4", "m5", "m6"];
  for (const text of away) await send(a.page, text);
  await send(c.page, "c2");
  await send(c.page, "c3");
  await b.ctx.setOffline(false);
  await b.page.locator("#conn[data-state=online]").waitFor({ timeout: T });
  await b.page.locator("#messages li.in", { hasText: "m6" }).waitFor({ timeout: T });
  await b.page.locator(`#chats li[data-uid="${c.uid}"][data-unread="3"]`).waitFor({ timeout: T });
  await b.page.waitForTimeout(1500); // a duplicate would arrive now, from a live copy or a second sync
  assert.deepEqual(await shown(b.page), ["a1", ...away]);
  assert.deepEqual(await chatList(b.page), [[c.uid, "3"], [a.uid, ""]]);
  // Ten messages in B's timeline, all handled, kept for the next load.
  assert.equal(await b.page.evaluate((u) => localStorage.getItem(`magpie.web.seq.${u}`), b.uid), "10");
  await a.page.locator("#messages li.out[data-read=true]", { hasText: "m6" }).waitFor({ timeout: T });

  // B's page again, with the live delivery of "g2" lost on the way (as when a node dies mid-send): "g3"'s
  // seq is two past the last, so B asks Y for the gap. The list after the reload is the server's: B read
  // A's conversation, not C's.
  let dropped = false;
  let syncAfterDrop = false;
  await b.page.routeWebSocket(/\/ws\//, (ws) => {
    const server = ws.connectToServer();
    server.onMessage((m) => {
      const p = JSON.parse(String(m));
      if (p.type === "t" && p.msg === "g2" && !dropped) dropped = true;
      else ws.send(m);
    });
    ws.onMessage((m) => {
      if (dropped && JSON.parse(String(m)).type === "Y") syncAfterDrop = true;
      server.send(m);
    });
  });
  await b.page.reload();
  await b.page.locator("#conn[data-state=online]").waitFor({ timeout: T });
  await b.page.locator(`#chats li[data-uid="${c.uid}"][data-unread="3"]`).waitFor({ timeout: T });
  assert.deepEqual(await chatList(b.page), [[c.uid, "3"], [a.uid, ""]]);
  await b.page.click(`#chats li[data-uid="${a.uid}"] button`);
  await b.page.locator("#messages li", { hasText: "m6" }).waitFor({ timeout: T }); // history (H)
  for (const text of ["g1", "g2", "g3"]) await send(a.page, text);
  await b.page.locator("#messages li.in", { hasText: "g3" }).waitFor({ timeout: T });
  await b.page.locator("#messages li.in", { hasText: "g2" }).waitFor({ timeout: T });
  await b.page.waitForTimeout(1500);
  assert.ok(dropped && syncAfterDrop, "the delivery of g2 was dropped and B synced after it");
  assert.deepEqual(await shown(b.page), ["a1", ...away, "g1", "g2", "g3"]);
  assert.equal(await b.page.evaluate((u) => localStorage.getItem(`magpie.web.seq.${u}`), b.uid), "13");

  // B reads C's conversation in a second tab: the first tab's badge goes at once (r from B's other device).
  const b2 = await b.ctx.newPage();
  await b2.goto("/chat.html");
  await b2.locator("#conn[data-state=online]").waitFor({ timeout: T });
  await b2.locator(`#chats li[data-uid="${c.uid}"][data-unread="3"]`).waitFor({ timeout: T });
  await b2.click(`#chats li[data-uid="${c.uid}"] button`);
  await b.page.locator(`#chats li[data-uid="${c.uid}"][data-unread="0"]`).waitFor({ timeout: T });
  await b2.close();
  assert.deepEqual(await chatList(b.page), [[a.uid, ""], [c.uid, ""]]);
  await b.page.screenshot({ path: join(ARTIFACTS, "chat-synced-phone.png") });
  await a.page.screenshot({ path: join(ARTIFACTS, "chat-read-desktop.png") });

  await Promise.all([a.close(), b.close(), c.close()]);
});

/** The open conversation's chat messages (not the system lines), top to bottom. */
const shownMessages = (page) => page.$$eval("#messages li.msg .text", (els) => els.map((e) => e.textContent));
/** The open group's member list: uids, sorted. */
const memberUids = (page) =>
  page.$$eval("#group-members li", (els) => els.map((li) => Number(li.dataset.uid)).sort((x, y) => x - y));
const online = (page) => page.locator("#conn[data-state=online]").waitFor({ timeout: T });

test("group chat: create a group, add a member, three chat in one order, the member list, events, badges", async () => {
  const a = await webUser(DESKTOP);
  const b = await webUser(PHONE, (uid) => admin("/admin/friends", { a: a.uid, b: uid }));
  const c = await webUser(DESKTOP, (uid) => admin("/admin/friends", { a: a.uid, b: uid }));
  await a.page.reload(); // A's friends list was loaded before the friendships existed
  await online(a.page);

  // A makes a group with B. A name the server refuses (a control character) shows the server's reason.
  await a.page.click("#new-group");
  await a.page.click("#create-group");
  await a.page.locator("#new-group-error", { hasText: "name" }).waitFor({ timeout: T });
  await a.page.fill("#group-name", "bad\tname");
  await a.page.check(`#group-pick input[value="${b.uid}"]`);
  await a.page.click("#create-group");
  await a.page.locator("#new-group-error", { hasText: "Could not create the group:" }).waitFor({ timeout: T });
  // the browser itself logs the refused request (HTTP 400); that one is expected
  const refused = consoleErrors.findIndex((e) => e.includes("status of 400"));
  assert.ok(refused >= 0, "the browser logged the refused POST /groups");
  consoleErrors.splice(refused, 1);
  await a.page.fill("#group-name", "Trio");
  await a.page.click("#create-group");
  const active = a.page.locator("#chats li.group.active");
  await active.waitFor({ timeout: T });
  const gid = Number(await active.getAttribute("data-group"));
  assert.ok(gid > 0);
  assert.equal(await a.page.textContent("#peer"), "Trio");
  await a.page.locator('#group-members[data-count="2"]').waitFor({ timeout: T });
  assert.deepEqual(await memberUids(a.page), [a.uid, b.uid].sort((x, y) => x - y));
  await a.page.locator('#messages li.sys[data-event="group_created"]', { hasText: "You created the group “Trio”" }).waitFor({ timeout: T });

  // B's chat list shows the group (from the group_created event, live); B opens it.
  const item = `#chats li[data-group="${gid}"]`;
  await b.page.locator(`${item} .name`, { hasText: "Trio" }).waitFor({ timeout: T });
  await b.page.click(`${item} button`);
  await b.page.locator('#group-members[data-count="2"]').waitFor({ timeout: T });
  assert.equal(await b.page.locator("#add-member-form").isHidden(), true); // a member may not add

  // A adds C: A's member list has three; C's page gets the group, with the event that added C.
  await a.page.selectOption("#add-member", String(c.uid));
  await a.page.click("#add-member-button");
  await a.page.locator('#group-members[data-count="3"]').waitFor({ timeout: T });
  await c.page.locator(`${item} .name`, { hasText: "Trio" }).waitFor({ timeout: T });
  await c.page.click(`${item} button`);
  await c.page.locator('#messages li.sys[data-event="member_added"]', { hasText: `User ${a.uid} added you` }).waitFor({ timeout: T });
  await b.page.locator('#messages li.sys[data-event="member_added"]', { hasText: `User ${a.uid} added User ${c.uid}` }).waitFor({ timeout: T });
  const three = [a.uid, b.uid, c.uid].sort((x, y) => x - y);
  for (const x of [a, b, c]) {
    await x.page.locator('#group-members[data-count="3"]').waitFor({ timeout: T });
    assert.deepEqual(await memberUids(x.page), three);
  }

  // The three chat, all at once: every page shows every message once, and all in the same order.
  const sent = [];
  for (const round of [1, 2, 3]) {
    const texts = [a, b, c].map((x, i) => `${"abc"[i]}${round}`);
    sent.push(...texts);
    await Promise.all([a, b, c].map((x, i) => send(x.page, texts[i])));
  }
  for (const x of [a, b, c]) {
    for (const text of sent) await x.page.locator("#messages li.msg", { hasText: text }).waitFor({ timeout: T });
  }
  await a.page.waitForTimeout(1500); // a duplicate would arrive now
  const orders = await Promise.all([a, b, c].map((x) => shownMessages(x.page)));
  assert.equal(orders[0].length, sent.length);
  assert.deepEqual(new Set(orders[0]), new Set(sent));
  assert.deepEqual(orders[1], orders[0]);
  assert.deepEqual(orders[2], orders[0]);
  // who sent it, on the others' pages
  assert.equal(await b.page.textContent('#messages li.msg.in:has-text("c1") .from'), `User ${c.uid}`);
  await a.page.screenshot({ path: join(ARTIFACTS, "group-desktop.png") });
  await b.page.screenshot({ path: join(ARTIFACTS, "group-phone.png") });

  // A renames it: the others' lists and conversations say so.
  assert.equal(await b.page.locator("#rename-group").isHidden(), true);
  await a.page.click("#rename-group");
  await a.page.fill("#rename-name", "Trio+");
  await a.page.click("#rename-save");
  await c.page.locator('#messages li.sys[data-event="group_renamed"]', { hasText: `User ${a.uid} renamed the group to “Trio+”` }).waitFor({ timeout: T });
  await b.page.locator(`${item} .name`, { hasText: "Trio+" }).waitFor({ timeout: T });
  assert.equal(await c.page.textContent("#peer"), "Trio+");

  // B's badges across devices: B's first tab looks at A's 1:1; C writes; a second tab of B reads the
  // group, and the first tab's badge goes (r {group, mid} from B's other device).
  await b.page.click(`#chats li[data-uid="${a.uid}"] button`);
  const b2 = await b.ctx.newPage();
  await b2.goto("/chat.html");
  await online(b2);
  await b2.locator(`${item}[data-unread="0"]`).waitFor({ timeout: T });
  await send(c.page, "c4");
  await b.page.locator(`${item}[data-unread="1"]`).waitFor({ timeout: T });
  await b2.locator(`${item}[data-unread="1"]`).waitFor({ timeout: T });
  assert.equal(await b.page.textContent(`${item} .preview`), `User ${c.uid}: c4`);
  await b2.click(`${item} button`);
  await b2.locator(`${item}[data-unread="0"]`).waitFor({ timeout: T });
  await b.page.locator(`${item}[data-unread="0"]`).waitFor({ timeout: T });
  await b2.close();

  // C leaves: the others see it and the member list shrinks; C's page can no longer send, and gets nothing
  // sent after it left.
  await c.page.click("#leave-group");
  await c.page.locator("#group-status", { hasText: "not a member" }).waitFor({ timeout: T });
  assert.equal(await c.page.isDisabled("#text"), true);
  await a.page.locator('#messages li.sys[data-event="member_removed"]', { hasText: `User ${c.uid} left` }).waitFor({ timeout: T });
  await a.page.locator('#group-members[data-count="2"]').waitFor({ timeout: T });
  await send(a.page, "after C left");
  await b.page.click(`${item} button`);
  await b.page.locator("#messages li.msg", { hasText: "after C left" }).waitFor({ timeout: T });
  await c.page.waitForTimeout(1500);
  assert.equal(await c.page.locator("#messages li", { hasText: "after C left" }).count(), 0);
  assert.deepEqual(await shownMessages(c.page), [...orders[0], "c4"]);

  // Reloaded, the pages show the group's history again, read back from the timeline: all of it for A; for
  // C what it got while a member, its group still named in the list.
  for (const x of [a, c]) {
    await x.page.reload();
    await online(x.page);
    await x.page.click(`${item} button`);
  }
  await a.page.locator("#messages li.msg", { hasText: "after C left" }).waitFor({ timeout: T });
  assert.deepEqual(await shownMessages(a.page), [...orders[0], "c4", "after C left"]);
  await c.page.locator('#messages li.sys[data-event="member_removed"]', { hasText: "You left" }).waitFor({ timeout: T });
  assert.deepEqual(await shownMessages(c.page), [...orders[0], "c4"]);
  assert.equal(await c.page.textContent(`${item} .name`), "Trio+");
  assert.equal(await c.page.isDisabled("#text"), true);

  // A removes B: B's page says so and can no longer send.
  await a.page.click(`#group-members li[data-uid="${b.uid}"] button.remove`);
  await a.page.locator('#group-members[data-count="1"]').waitFor({ timeout: T });
  await b.page.locator('#messages li.sys[data-event="member_removed"]', { hasText: `User ${a.uid} removed you` }).waitFor({ timeout: T });
  await b.page.locator("#text:disabled").waitFor({ timeout: T });
  assert.equal(await b.page.textContent("#group-status"), "You are not a member of this group.");

  await Promise.all([a.close(), b.close(), c.close()]);
});

test("two people in one room see each other's messages and the member count", async () => {
  const aWeb = await person(DESKTOP);
  const bWeb = await person(PHONE);
  const a = await open(aWeb, "/");
  const b = await open(bWeb, "/");
  const aPhone = await person(PHONE);
  const bPhone = await person(PHONE);
  await qrLogin(a, await open(aPhone, "/phone.html"), freshMobile());
  await qrLogin(b, await open(bPhone, "/phone.html"), freshMobile());

  const room = `e2e-${Date.now()}`;
  for (const page of [a, b]) {
    await page.goto(`/room.html?room=${room}`);
  }
  for (const page of [a, b]) {
    await page.locator("#conn[data-state=online]").waitFor({ timeout: T });
    await page.locator('#members[data-count="2"]').waitFor({ timeout: T });
  }
  await a.fill("#room-text", "hello room from A");
  await a.press("#room-text", "Enter");
  await b.fill("#room-text", "and from B");
  await b.click("#room-send");
  for (const page of [a, b]) {
    await page.locator("#room-messages li", { hasText: "hello room from A" }).waitFor({ timeout: T });
    await page.locator("#room-messages li", { hasText: "and from B" }).waitFor({ timeout: T });
  }
  await a.screenshot({ path: join(ARTIFACTS, "room-desktop.png") });
  await b.screenshot({ path: join(ARTIFACTS, "room-phone.png") });
  await Promise.all([aWeb.close(), bWeb.close(), aPhone.close(), bPhone.close()]);
});

test("no page logged a console error", () => {
  assert.deepEqual(consoleErrors, []);
});
