/* payload.h -- the bench message every scenario sends: ASCII, so the same bytes travel as a chat text, a
 * room message, a NATS payload or an nchan body:
 *
 *     mb1 <run> <step> <pub> <seq> <sched_ns> ......
 *
 * run: this run's 8-hex-digit nonce (messages of other runs are ignored); step: the step of the rate ramp;
 * pub: the global index of the sending connection; seq: its per-sender counter; sched_ns: CLOCK_MONOTONIC
 * time at which the fixed-rate schedule wanted the message sent (latency is measured from there, not from
 * when the sender got round to it, so a stalled sender shows up as latency). Padded with '.' to the
 * requested size. The alphabet (digits, hex, blanks, dots) needs no escaping in JSON.
 */
#ifndef BENCH_PAYLOAD_H
#define BENCH_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#define PAYLOAD_MAX 65536
#define PAYLOAD_MIN 64 /* room for the header with the largest numbers */

struct payload {
    uint32_t run;
    uint32_t step;
    uint32_t pub;
    uint64_t seq;
    int64_t sched_ns;
};

/* Write p into buf, padded to size bytes (at least the header; at most cap). No NUL is added.
 * Returns the length written, or -1 when cap is too small. */
int payload_format(char *buf, size_t cap, size_t size, const struct payload *p);

/* Parse a payload. Returns 0, or -1 when it is not one of ours (wrong magic, malformed numbers, bad padding).
 */
int payload_parse(const char *buf, size_t n, struct payload *out);

/* A receiver's view of one sender's sequence: *next is the next sequence number expected (start at 0).
 * Returns 1 when seq is new (a jump over missing numbers adds them to *gaps), 0 when it was seen before or is
 * older than one already seen (a duplicate, or a message overtaken by a later one). */
int payload_seq_note(uint64_t *next, uint64_t seq, uint64_t *gaps);

/* The compact form used as a chat packet id (SPEC §4: 1-64 characters, unique per sender):
 * "<run>-<step>-<seq>-<sched_ns>" (at most 60 characters). The sender is the connection itself, so pub is
 * not in it: payload_id_parse leaves out->pub alone. */
#define PAYLOAD_ID_MAX 64

/* Returns the length written into buf (cap >= PAYLOAD_ID_MAX + 1, NUL-terminated), or -1. */
int payload_id_format(char *buf, size_t cap, const struct payload *p);

/* Returns 0, or -1 when id is not of that form. */
int payload_id_parse(const char *id, size_t n, struct payload *out);

#endif
