/* frame.c -- see frame.h. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

struct frame *frame_new(const void *payload, size_t len, int binary)
{
    struct frame *f = malloc(sizeof(*f) + LWS_PRE + len);
    if (f == NULL)
        return NULL;
    f->refs = 1;
    f->binary = binary;
    f->len = len;
    memcpy(f->buf + LWS_PRE, payload, len);
    return f;
}

struct frame *frame_from_str(char *payload, size_t len)
{
    struct frame *f = payload ? frame_new(payload, len, 0) : NULL;
    free(payload);
    return f;
}

void frame_unref(struct frame *f)
{
    if (f != NULL && --f->refs == 0)
        free(f);
}
