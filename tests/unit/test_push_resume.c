/* Unit tests of push/resume.c's live order: a subscription sends every entry of its user's timeline once,
 * in seq order; a gap its own sends in flight explain is waited for (the entries behind it held), any other
 * gap is caught up with a Y. The chat core, Redis and the connection layer are replaced by the stubs below:
 * chat_handle records each Y the subscription asks (the "after" it names), ops->send records what went out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "config.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"
#include "resume.h"
#include "stats.h"

/* ---- stubs of what resume.c calls ---- */

struct push push;
static struct magpie_config cfg;

static long long y_after[16];
static int ny;

void chat_handle(struct conn *c, const struct chatpkt *p)
{
    json_t *after = json_object_get(p->msg, "after");
    (void)c;
    assert_int_equal(p->type, 'Y');
    assert_true(json_is_integer(after));
    assert_true(ny < 16);
    y_after[ny++] = (long long)json_integer_value(after);
}

void conn_abort(struct conn *c, const char *why)
{
    (void)c;
    fail_msg("conn_abort: %s", why);
}

void conn_hold(struct conn *c)
{
    c->refs++;
}

void conn_release(struct conn *c)
{
    c->refs--;
}

void rdsa_script(struct rdsa_script *s)
{
    (void)s;
}

int rdsa_cmd(rdsa_reply_fn fn, void *arg, const char *fmt, ...)
{
    (void)fn, (void)arg, (void)fmt;
    return MP_OK;
}

int rdsa_eval(const struct rdsa_script *s, rdsa_reply_fn fn, void *arg, int numkeys, int argc,
              const char **argv, const size_t *argvlen)
{
    (void)s, (void)fn, (void)arg, (void)numkeys, (void)argc, (void)argv, (void)argvlen;
    return MP_OK;
}

void stats_resumed(const char *proto)
{
    (void)proto;
}

void stats_redelivered(const char *proto)
{
    (void)proto;
}

static int ncatchups, nheld_total;

void stats_catchup(const char *proto)
{
    (void)proto;
    ncatchups++;
}

void stats_held(const char *proto)
{
    (void)proto;
    nheld_total++;
}

/* ---- a subscription ---- */

static int64_t sent[256];
static int nsent;

static void key(char *buf, size_t size, int64_t uid)
{
    snprintf(buf, size, "test:%lld", (long long)uid);
}

static int send_one(struct resume *r, json_t *pkt, const char *text, size_t len, int64_t seq, int again)
{
    (void)r, (void)again;
    assert_non_null(pkt);
    assert_non_null(text);
    assert_true(len > 0 && text[0] == '{' && text[len - 1] == '}'); /* the packet, not NUL-terminated */
    assert_true(nsent < 256);
    sent[nsent++] = seq;
    return MP_OK;
}

static const struct resume_ops ops = {"st", key, send_one, NULL, NULL};

#define UID     42
#define PARTNER 43
#define PREFIX  "st1.00000000-"

static struct conn conn;
static struct resume r;

static int setup_with_grace(long long gap_ms)
{
    cfg.push.resume_gap_ms = gap_ms;
    push.cfg = &cfg;
    push.loop = uv_default_loop();
    memset(&conn, 0, sizeof(conn));
    conn.uid = UID;
    conn.state = CONN_OPEN;
    memset(&r, 0, sizeof(r));
    resume_setup(&r, &ops, &conn, PREFIX, strlen(PREFIX));
    ny = nsent = ncatchups = nheld_total = 0;
    /* LIVE at seq 10: the Y for the position answers max 10 */
    resume_begin(&r, RESUME_ACK_NONE);
    assert_int_equal(ny, 1);
    json_t *ans = json_pack("{s:[],s:b,s:I}", "messages", "more", 0, "max", (json_int_t)10);
    char rest[32];
    snprintf(rest, sizeof(rest), "y%llu", (unsigned long long)r.y_n);
    assert_int_equal(resume_reply(&r, rest, 'Y', ans), 1);
    json_decref(ans);
    assert_int_equal(r.state, RESUME_LIVE);
    assert_int_equal(r.sent_upto, 10);
    ny = 0;
    return 0;
}

/* push.resume_gap_ms 0: only own sends in flight are waited for. */
static int setup(void **state)
{
    (void)state;
    return setup_with_grace(0);
}

/* push.resume_gap_ms 50: any gap is waited for that long first. */
static int setup_grace(void **state)
{
    (void)state;
    return setup_with_grace(50);
}

static int teardown(void **state)
{
    (void)state;
    resume_free(&r);
    return 0;
}

/* A delivery of the partner's message with this seq, as relay.c hands it over. */
static int deliver(int64_t seq)
{
    char buf[160];
    int n = snprintf(buf, sizeof(buf),
                     "{\"id\":\"x%lld\",\"from\":%d,\"to\":%d,\"type\":\"t\",\"msg\":\"m\",\"seq\":%lld}",
                     (long long)seq, PARTNER, UID, (long long)seq);
    struct frame *f = frame_new(buf, (size_t)n, 0);
    assert_non_null(f);
    int rc = resume_deliver(&r, f);
    frame_unref(f);
    return rc;
}

static void assert_sent(const int64_t *want, int n)
{
    assert_int_equal(nsent, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(sent[i], want[i]);
}

static void test_in_order_goes_out(void **state)
{
    (void)state;
    deliver(11);
    deliver(12);
    deliver(12); /* a duplicate */
    int64_t want[] = {11, 12};
    assert_sent(want, 2);
    assert_int_equal(ny, 0);
}

static void test_gap_without_own_sends_catches_up(void **state)
{
    (void)state;
    deliver(12); /* 11 is missing and nothing of ours is in flight */
    assert_int_equal(nsent, 0);
    assert_int_equal(ny, 1);
    assert_int_equal(y_after[0], 10);
    assert_int_equal(r.state, RESUME_CATCHUP);
    assert_int_equal(ncatchups, 1);
    assert_int_equal(nheld_total, 0);
}

static void test_partner_overtakes_own_ack(void **state)
{
    (void)state;
    resume_own_begin(&r);                 /* our send: it gets seq 11, its A is late */
    assert_int_equal(deliver(12), MP_OK); /* the partner's answer overtakes it: held */
    assert_int_equal(deliver(13), MP_OK); /* and another */
    assert_int_equal(nsent, 0);
    assert_int_equal(ny, 0);
    resume_own_sent(&r, 11); /* the A: 11 is ours, 12 and 13 go out */
    int64_t want[] = {12, 13};
    assert_sent(want, 2);
    assert_int_equal(ny, 0);
    assert_int_equal(r.sent_upto, 13);
    assert_int_equal(r.nheld, 0);
    assert_int_equal(nheld_total, 2);
    assert_int_equal(ncatchups, 0);
    deliver(14);
    int64_t want2[] = {12, 13, 14};
    assert_sent(want2, 3);
}

static void test_held_once_and_own_acks_out_of_order(void **state)
{
    (void)state;
    resume_own_begin(&r);
    resume_own_begin(&r); /* two sends in flight: 11 and 12 may be ours */
    deliver(13);
    deliver(13); /* the same again: held once */
    assert_int_equal(r.nheld, 1);
    resume_own_sent(&r, 12); /* the second A first: 12 is held as ours, 11 still may be */
    assert_int_equal(nsent, 0);
    assert_int_equal(r.nheld, 2);
    resume_own_sent(&r, 11);
    int64_t want[] = {13};
    assert_sent(want, 1);
    deliver(14);
    int64_t want2[] = {13, 14};
    assert_sent(want2, 2);
    assert_int_equal(ny, 0);
    assert_int_equal(r.nheld, 0);
}

static void test_later_delivery_past_what_is_in_flight_catches_up(void **state)
{
    (void)state;
    resume_own_begin(&r);
    resume_own_begin(&r); /* 11 and 12 may be ours */
    deliver(14);          /* but 13 is missing too */
    assert_int_equal(ny, 1);
    assert_int_equal(y_after[0], 10);
    assert_int_equal(r.seen_max, 14);
}

static void test_gap_wider_than_what_is_in_flight_catches_up(void **state)
{
    (void)state;
    resume_own_begin(&r); /* one in flight, but 11 and 12 are missing */
    deliver(13);
    assert_int_equal(ny, 1);
    assert_int_equal(y_after[0], 10);
    assert_int_equal(r.nheld, 0);
    assert_int_equal(r.seen_max, 13);
}

static void test_refused_send_leaves_the_gap_to_a_catch_up(void **state)
{
    (void)state;
    resume_own_begin(&r);
    deliver(12); /* held: 11 may be ours */
    assert_int_equal(ny, 0);
    resume_own_refused(&r); /* E: no seq of ours comes, 11 is someone else's */
    assert_int_equal(ny, 1);
    assert_int_equal(y_after[0], 10);
    assert_int_equal(r.nheld, 0);
    assert_int_equal(r.seen_max, 12); /* the catch-up asks again until it has 12 */
    assert_int_equal(nsent, 0);
}

static void test_gap_filled_by_a_late_delivery(void **state)
{
    (void)state;
    resume_own_begin(&r); /* in flight, but its seq will be 13 */
    deliver(12);          /* held: 11 might be ours */
    deliver(11);          /* it was not: the delivery fills it, 12 follows */
    int64_t want[] = {11, 12};
    assert_sent(want, 2);
    resume_own_sent(&r, 13);
    deliver(14);
    int64_t want2[] = {11, 12, 14};
    assert_sent(want2, 3);
    assert_int_equal(ny, 0);
}

static void test_hold_is_bounded(void **state)
{
    (void)state;
    for (int i = 0; i < RESUME_HOLD_MAX + 1; i++)
        resume_own_begin(&r);
    for (int i = 0; i < RESUME_HOLD_MAX; i++)
        deliver(12 + i); /* all held behind 11 */
    assert_int_equal(r.nheld, RESUME_HOLD_MAX);
    assert_int_equal(ny, 0);
    deliver(12 + RESUME_HOLD_MAX); /* one more: no room, catch up */
    assert_int_equal(ny, 1);
    assert_int_equal(r.nheld, 0);
    assert_int_equal(r.seen_max, 12 + RESUME_HOLD_MAX);
}

static void test_end_drops_what_is_held(void **state)
{
    (void)state;
    resume_own_begin(&r);
    deliver(12);
    deliver(13);
    assert_int_equal(r.nheld, 2);
    resume_end(&r); /* unsubscribed */
    assert_int_equal(r.nheld, 0);
    resume_own_sent(&r, 11);
    assert_int_equal(nsent, 0);
}

static void test_free_releases_what_is_held(void **state)
{
    (void)state;
    resume_own_begin(&r);
    deliver(12);
    deliver(13);
    assert_int_equal(r.nheld, 2); /* teardown's resume_free releases them (ASan: nothing leaks) */
}

static void test_own_ack_ahead_of_a_delivery_waits_for_it(void **state)
{
    (void)state;
    resume_own_begin(&r);
    resume_own_sent(&r, 12); /* ours is 12; the partner's 11 is still on its way from another node */
    assert_int_equal(r.nheld, 1);
    assert_int_equal(ny, 0);
    deliver(11);
    deliver(13);
    int64_t want[] = {11, 13};
    assert_sent(want, 2);
    assert_int_equal(ny, 0);
    assert_int_equal(r.nheld, 0);
    assert_int_equal(r.gap_due, 0);
    resume_gap_sweep(push_now() + 1000); /* nothing is due */
    assert_int_equal(ny, 0);
}

static void test_a_gap_that_stays_is_caught_up_when_due(void **state)
{
    (void)state;
    deliver(12); /* 11 missing, nothing of ours in flight: held for the grace */
    deliver(13);
    assert_int_equal(ny, 0);
    assert_int_equal(r.nheld, 2);
    uint64_t due = r.gap_due;
    assert_true(due > 0);
    resume_gap_sweep(due - 1); /* not yet */
    assert_int_equal(ny, 0);
    resume_gap_sweep(due);
    assert_int_equal(ny, 1);
    assert_int_equal(y_after[0], 10);
    assert_int_equal(r.nheld, 0);
    assert_int_equal(r.seen_max, 13);
    assert_int_equal(r.gap_due, 0);
    assert_int_equal(ncatchups, 1);
}

static void test_own_sends_in_flight_keep_the_gap_waiting(void **state)
{
    (void)state;
    resume_own_begin(&r);
    deliver(12); /* 11 may be ours */
    uint64_t due = r.gap_due;
    resume_gap_sweep(due); /* due, but our send is unanswered: its A may bring 11 */
    assert_int_equal(ny, 0);
    assert_true(r.gap_due > due);
    resume_own_refused(&r); /* it was refused: the wait goes on until due */
    assert_int_equal(ny, 0);
    resume_gap_sweep(r.gap_due);
    assert_int_equal(ny, 1);
    assert_int_equal(r.nheld, 0);
}

static void test_free_while_waiting_leaves_the_node_list(void **state)
{
    (void)state;
    deliver(12);
    assert_true(r.gap_due > 0);
    resume_free(&r);
    assert_int_equal(r.gap_due, 0);
    resume_gap_sweep(push_now() + 1000); /* must not touch the freed subscription */
    assert_int_equal(ny, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_in_order_goes_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap_without_own_sends_catches_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partner_overtakes_own_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_once_and_own_acks_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_delivery_past_what_is_in_flight_catches_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gap_wider_than_what_is_in_flight_catches_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_send_leaves_the_gap_to_a_catch_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap_filled_by_a_late_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_drops_what_is_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_releases_what_is_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_ack_ahead_of_a_delivery_waits_for_it, setup_grace, teardown),
        cmocka_unit_test_setup_teardown(test_a_gap_that_stays_is_caught_up_when_due, setup_grace, teardown),
        cmocka_unit_test_setup_teardown(test_own_sends_in_flight_keep_the_gap_waiting, setup_grace, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_waiting_leaves_the_node_list, setup_grace, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    resume_stop();
    uv_run(uv_default_loop(), UV_RUN_NOWAIT); /* let the timer's close finish */
    uv_loop_close(uv_default_loop());
    return failed;
}
