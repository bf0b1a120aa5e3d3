/* notify_event.h -- the fields of one entry of the notification stream KEY_NOTIFY (keys.h): written by the
 * send script of magpie-push (push/chat_send.c) and by POST /msg {to} (http/msg.c) when the recipient had
 * no connection on a live node, read by magpie-notify, which turns each entry into one event of the
 * webhook's JSON array (SPEC §6, "Offline notifications"; the JSON is made in notify/notify_post.c).
 *
 * Every value is a string; numbers are decimal. Unknown fields are ignored by the reader, so a field can
 * be added without breaking an older magpie-notify; changing the meaning of one needs a new
 * NOTIFY_FORMAT_VERSION. The entry id (Redis' "<ms>-<n>") is the event's event_id, and its ms part is when
 * the event was queued (notify.max_age_s counts from there).
 *
 * Groups: a group message adds one entry per offline member with NT_F_CONV = "g<gid>" (keys.h's
 * conversation ids), NT_F_TO the member and NT_F_SEQ/NT_F_UNREAD the member's own; nothing else changes.
 */
#ifndef MAGPIE_NOTIFY_EVENT_H
#define MAGPIE_NOTIFY_EVENT_H

#define NOTIFY_FORMAT_VERSION "1"

#define NT_F_VERSION "v"    /* NOTIFY_FORMAT_VERSION; an entry of another version is dead-lettered */
#define NT_F_TYPE    "type" /* "message" (t, i, g: stored, with seq and unread) or "system" (POST /msg) */
#define NT_F_KIND    "kind" /* the packet's type letter: "t", "i", "g" or "s" */
#define NT_F_TO      "to"   /* the recipient uid (> 0) */
#define NT_F_FROM    "from" /* the sender uid; 0 = the system */
#define NT_F_CONV    "conv" /* "u<uid>" (1:1 with that user) or "g<gid>" (a group) */
#define NT_F_MID     "mid"  /* the message id (decimal; a system packet's id is its hex id) */
#define NT_F_SEQ     "seq"  /* the recipient's seq of it; absent for system packets (not in timelines) */
#define NT_F_TS      "ts"   /* server ms of the message */
#define NT_F_PREVIEW                                                                                         \
    "preview"                /* its first notify.preview_chars characters (t and s with a text msg), or "" */
#define NT_F_UNREAD "unread" /* the recipient's unread count in the conversation, this message included */

#endif
