/* frame.h -- an outgoing WebSocket message, shared by every connection it is queued on.
 *
 * libwebsockets writes a frame's header into the LWS_PRE bytes in front of the payload, so the payload
 * lives after that headroom. One frame may sit in many connections' queues (a room broadcast, a message to
 * a user with several devices): it is reference-counted and never copied per connection. Sharing is safe
 * because lws_write() finishes with the buffer before it returns (a partial write is copied by lws), and
 * the header it writes is the same for every connection (servers do not mask).
 */
#ifndef PUSH_FRAME_H
#define PUSH_FRAME_H

#include <libwebsockets.h>
#include <stddef.h>

struct frame {
    int refs;
    int binary;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then len bytes of payload */
};

/* A new frame holding a copy of payload, with one reference (the caller's). NULL when out of memory. */
struct frame *frame_new(const void *payload, size_t len, int binary);

/* A new frame that adopts a malloc'd payload string: copies it and frees it in every case. */
struct frame *frame_from_str(char *payload, size_t len);

static inline unsigned char *frame_payload(struct frame *f)
{
    return f->buf + LWS_PRE;
}

static inline struct frame *frame_ref(struct frame *f)
{
    f->refs++;
    return f;
}

/* Drop one reference; the last one frees the frame. NULL is ignored. */
void frame_unref(struct frame *f);

#endif
