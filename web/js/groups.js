// The pure parts of group chat in the web client (SPEC §4.2): which conversation a packet belongs to, the
// text of a group's s events, what an event tells about the user's own membership, the member list's lines,
// and the pages that read a group's history back from the timeline. No DOM, no network:
// tests/web/unit.test.mjs runs them under node.
//
// Group ids and uids are both small integers and may be equal, so conversations are keyed apart: "u<uid>"
// for 1:1, "g<gid>" for a group.

/** The conversation a packet belongs to, seen by `me`: t/i with the other user, g with its group (`to`), an
 * s event with a group (`msg.group`, or `to`) that group; null for anything else (e.g. order_taken). */
export function convKey(p, me) {
  if (!p || typeof p !== "object") return null;
  if (p.type === "t" || p.type === "i") {
    const other = p.from === me ? p.to : p.from;
    return Number.isSafeInteger(other) && other > 0 ? `u${other}` : null;
  }
  if (p.type === "g") return Number.isSafeInteger(p.to) && p.to > 0 ? `g${p.to}` : null;
  if (p.type === "s" && isGroupEvent(p.msg)) return `g${p.msg.group}`;
  return null;
}

const EVENTS = ["group_created", "member_added", "member_removed", "group_renamed", "group_deleted"];

/** Whether an s packet's msg is a group event. */
export function isGroupEvent(ev) {
  return Boolean(ev) && typeof ev === "object" && EVENTS.includes(ev.event) && Number.isSafeInteger(ev.group) && ev.group > 0;
}

/** How the page names a user: "you" for `me`. */
export function userName(uid, me) {
  return uid === me ? "you" : `User ${uid}`;
}

/** "A", "A and B", "A, B and C". */
export function joinNames(names) {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

/** The system line of a group event, as `me` reads it ("User 5 added User 7", "You left", ...). */
export function eventText(ev, me) {
  if (!isGroupEvent(ev)) return "";
  const by = Number.isSafeInteger(ev.by) ? cap(userName(ev.by, me)) : "Someone";
  const members = Array.isArray(ev.members) ? ev.members.filter(Number.isSafeInteger) : [];
  const them = joinNames(members.map((u) => userName(u, me)));
  const name = typeof ev.name === "string" ? ev.name : null;
  switch (ev.event) {
    case "group_created":
      return name === null ? `${by} created the group` : `${by} created the group “${name}”`;
    case "member_added":
      return `${by} added ${them || "members"}`;
    case "member_removed":
      if (members.length === 1 && members[0] === ev.by) return `${by} left`;
      return `${by} removed ${them || "members"}`;
    case "group_renamed":
      return name === null ? `${by} renamed the group` : `${by} renamed the group to “${name}”`;
    case "group_deleted":
      return `${by} deleted the group`;
  }
  return "";
}

/** What a group event changes in what the page knows of group `g` ({member, name, deleted}) for `me`.
 * Returns whether the member list changed (the page then asks the server for it again). */
export function applyGroupEvent(g, ev, me) {
  if (!isGroupEvent(ev)) return false;
  const members = Array.isArray(ev.members) ? ev.members : [];
  const mine = members.includes(me);
  if (typeof ev.name === "string" && (ev.event === "group_created" || ev.event === "group_renamed")) g.name = ev.name;
  switch (ev.event) {
    case "group_created":
      g.member = true;
      g.deleted = false;
      return true;
    case "member_added":
      if (mine) {
        g.member = true;
        g.deleted = false;
      }
      return true;
    case "member_removed":
      if (mine) g.member = false;
      return true;
    case "group_deleted":
      g.member = false;
      g.deleted = true;
      return true;
  }
  return false;
}

const RANK = { owner: 0, admin: 1, member: 2 };

/** The member list of GET /groups/<id> as lines to show: owner first, then admins, then members (each in
 * the server's order, which is join order); `me` marked. */
export function memberLines(members, me) {
  const list = Array.isArray(members) ? members.filter((m) => m && Number.isSafeInteger(m.uid)) : [];
  return list
    .map((m, i) => ({ m, i }))
    .sort((a, b) => (RANK[a.m.role] ?? 2) - (RANK[b.m.role] ?? 2) || a.i - b.i)
    .map(({ m }) => ({
      uid: m.uid,
      role: m.role ?? "member",
      text: `${m.uid === me ? `User ${m.uid} (you)` : `User ${m.uid}`}${m.role === "owner" || m.role === "admin" ? ` · ${m.role}` : ""}`,
    }));
}

/** Whether `role` may add members and rename the group (SPEC §4.2: owner or admin). */
export function canManage(role) {
  return role === "owner" || role === "admin";
}

/** Whether `role` may remove a member whose role is `theirs`: only a higher role (the owner removes admins
 * and members, an admin members; README's group endpoints). */
export function canRemove(role, theirs) {
  return canManage(role) && (RANK[role] ?? 2) < (RANK[theirs] ?? 2);
}

/** The next page when reading the timeline back from `floor` (the lowest seq read so far, or the first seq
 * not yet handled): Y {after, limit} answers exactly the seqs [after + 1, floor - 1]. null at the start. */
export function historyPage(floor, size) {
  if (!Number.isSafeInteger(floor) || floor <= 1) return null;
  const after = Math.max(0, floor - 1 - size);
  return { after, limit: floor - 1 - after };
}
