/* sms.c -- login by SMS code: POST /send_code and POST /login (SPEC §3).
 *
 * Every limit lives in Redis (keys.h), checked and updated by one Lua script so concurrent requests cannot
 * slip past it: per client IP (sms.ip_limit per sms.ip_window_s), per number one code per
 * sms.resend_interval_s and sms.daily_limit per 24 h. A code is a hash {code, tries[, burnt]} with TTL
 * sms.code_ttl_s; sms.max_attempts wrong tries burn it (code 4 from then on, even for the right code);
 * the right code deletes it, so it logs in once.
 *
 * Delivery: sms.command (run with MAGPIE_SMS_MOBILE and MAGPIE_SMS_CODE in its environment, killed after
 * sms.command_timeout_s) or sms.sink_file (a line "<mobile> <code>" appended: the dev stack and tests).
 * A failed delivery undoes the code and the resend lock, and answers code 20. Codes are never logged.
 */
#include "call.h"
#include "handlers.h"
#include "hmetrics.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "users.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SMS_CODE_DIGITS    6
#define SMS_MAX_CODE_INPUT 16 /* longer "codes" are refused as invalid input, not compared */
#define SMS_WAIT_STEP_MS   5  /* how often a running delivery command is checked */

/* The IP's counter and the mobile's keys are in different slots on a cluster (keys.h): two scripts, the
 * IP's first, as the one script before them counted (an IP over its limit is refused before the mobile's
 * limits are looked at; a request refused for the mobile still counts for its IP).
 * KEYS: ip counter. ARGV: ip_window_s. Returns the count in the window, this request included. */
static const char ip_lua[] = "local n = redis.call('INCR', KEYS[1])\n"
                             "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
                             "return n\n";

/* KEYS: resend lock, daily counter, code hash (one mobile's: one slot).
 * ARGV: resend_interval_s, daily_limit, daily window, code, code_ttl_s.
 * Returns 0 = code stored, 2 = resend too soon, 3 = daily limit reached. */
static const char send_lua[] =
    "if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 2 end\n"
    "local d = redis.call('INCR', KEYS[2])\n"
    "if d == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end\n"
    "if d > tonumber(ARGV[2]) then return 3 end\n"
    "redis.call('DEL', KEYS[3])\n"
    "redis.call('HSET', KEYS[3], 'code', ARGV[4], 'tries', 0)\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[5])\n"
    "return 0\n";

/* KEYS: code hash. ARGV: the code offered, max_attempts.
 * Returns {0, pttl} = right (the code is deleted; pttl lets a failed login put it back), {4} = burnt,
 * {5} = no code, {6} = wrong. */
static const char verify_lua[] = "local h = redis.call('HMGET', KEYS[1], 'code', 'burnt')\n"
                                 "if not h[1] then return {5} end\n"
                                 "if h[2] then return {4} end\n"
                                 "if h[1] == ARGV[1] then\n"
                                 "  local ttl = redis.call('PTTL', KEYS[1])\n"
                                 "  redis.call('DEL', KEYS[1])\n"
                                 "  return {0, ttl}\n"
                                 "end\n"
                                 "if redis.call('HINCRBY', KEYS[1], 'tries', 1) >= tonumber(ARGV[2]) then\n"
                                 "  redis.call('HSET', KEYS[1], 'burnt', '1')\n"
                                 "  return {4}\n"
                                 "end\n"
                                 "return {6}\n";

static void count(const char *outcome)
{
    char labels[48];
    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    metric_add(hm.sms, labels, 1);
}

/* A uniformly random code of SMS_CODE_DIGITS digits. 0 or -1. */
static int new_code(char *out)
{
    uint32_t v, limit = UINT32_MAX - UINT32_MAX % 1000000;
    do {
        if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
            return -1;
    } while (v >= limit);
    snprintf(out, SMS_CODE_DIGITS + 1, "%06u", v % 1000000);
    return 0;
}

static int deliver_to_sink(const char *path, const char *mobile, const char *code)
{
    char line[64];
    int fd, len = snprintf(line, sizeof(line), "%s %s\n", mobile, code);
    ssize_t n;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("cannot open the SMS sink file=%s errno=%d", path, errno);
        return -1;
    }
    n = write(fd, line, (size_t)len); /* one write on O_APPEND: lines from threads never interleave */
    close(fd);
    if (n != len) {
        log_error("cannot write the SMS sink file=%s errno=%d", path, errno);
        return -1;
    }
    return 0;
}

static int deliver_by_command(const char *command, const char *mobile, const char *code)
{
    char env_mobile[64], env_code[32];
    char **env;
    char *argv[] = {(char *)command, NULL};
    size_t n = 0, i;
    pid_t pid;
    int status, rc, waited_ms = 0, limit_ms = (int)app.cfg.sms.command_timeout_s * 1000;

    while (environ[n] != NULL)
        n++;
    env = calloc(n + 3, sizeof(char *));
    if (env == NULL)
        return -1;
    for (i = 0; i < n; i++)
        env[i] = environ[i];
    snprintf(env_mobile, sizeof(env_mobile), "MAGPIE_SMS_MOBILE=%s", mobile);
    snprintf(env_code, sizeof(env_code), "MAGPIE_SMS_CODE=%s", code);
    env[n] = env_mobile;
    env[n + 1] = env_code;
    rc = posix_spawn(&pid, command, NULL, NULL, argv, env);
    explicit_bzero(env_code, sizeof(env_code));
    free(env);
    if (rc != 0) {
        log_error("cannot run the SMS command command=%s errno=%d", command, rc);
        return -1;
    }
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            log_error("lost the SMS command pid=%d errno=%d", (int)pid, errno);
            return -1;
        }
        if (waited_ms >= limit_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            log_error("the SMS command did not finish in time; killed command=%s timeout_s=%lld", command,
                      app.cfg.sms.command_timeout_s);
            return -1;
        }
        struct timespec ts = {0, SMS_WAIT_STEP_MS * 1000000L};
        nanosleep(&ts, NULL);
        waited_ms += SMS_WAIT_STEP_MS;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_warn("the SMS command failed command=%s status=%d", command,
                 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        return -1;
    }
    return 0;
}

static int deliver(const char *mobile, const char *code)
{
    if (app.cfg.sms.command[0] != '\0')
        return deliver_by_command(app.cfg.sms.command, mobile, code);
    if (app.cfg.sms.sink_file[0] != '\0')
        return deliver_to_sink(app.cfg.sms.sink_file, mobile, code);
    log_error("no SMS delivery configured: set sms.command or sms.sink_file");
    return -1;
}

/* Read and validate {mobile}. 0, or -1 after answering. */
static int get_mobile(struct call *c, const char **mobile)
{
    if (field_str(c, "mobile", 1, 64, mobile) != 0)
        return -1;
    if (!mobile_valid(*mobile)) {
        reply(c, API_BAD_MOBILE, NULL);
        return -1;
    }
    return 0;
}

void sms_send_code(struct call *c)
{
    const char *mobile;
    char code[SMS_CODE_DIGITS + 1], masked[MOBILE_MAX_LEN + 1];
    char k_ip[128], k_resend[64], k_daily[64], k_code[64];
    char a_ip_window[24], a_resend[24], a_daily[24], a_window[24], a_ttl[24];
    redisReply *rep;
    long long outcome;
    int replicated;

    if (get_mobile(c, &mobile) != 0)
        return;
    if (new_code(code) != 0) {
        reply_unavailable(c, "random source");
        return;
    }
    snprintf(k_ip, sizeof(k_ip), KEY_SMS_IP, c->req->client_ip ? c->req->client_ip : "-");
    snprintf(k_resend, sizeof(k_resend), KEY_SMS_RESEND, mobile);
    snprintf(k_daily, sizeof(k_daily), KEY_SMS_DAILY, mobile);
    snprintf(k_code, sizeof(k_code), KEY_SMS_CODE, mobile);
    snprintf(a_ip_window, sizeof(a_ip_window), "%lld", app.cfg.sms.ip_window_s);
    snprintf(a_resend, sizeof(a_resend), "%lld", app.cfg.sms.resend_interval_s);
    snprintf(a_daily, sizeof(a_daily), "%lld", app.cfg.sms.daily_limit);
    snprintf(a_window, sizeof(a_window), "%d", SMS_DAILY_WINDOW_S);
    snprintf(a_ttl, sizeof(a_ttl), "%lld", app.cfg.sms.code_ttl_s);

    rep = rds_cmd(&c->w->rds, "EVAL %s 1 %s %s", ip_lua, k_ip, a_ip_window);
    if (rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer > app.cfg.sms.ip_limit) {
        freeReplyObject(rep);
        rep = NULL;
        outcome = 1; /* the IP is over its limit */
    } else if (rep != NULL && rep->type == REDIS_REPLY_INTEGER) {
        freeReplyObject(rep);
        rep = rds_cmd(&c->w->rds, "EVAL %s 3 %s %s %s %s %s %s %s %s", send_lua, k_resend, k_daily, k_code,
                      a_resend, a_daily, a_window, code, a_ttl);
        if (rep == NULL || rep->type != REDIS_REPLY_INTEGER)
            goto failed;
        outcome = rep->integer;
        freeReplyObject(rep);
    } else {
        goto failed;
    }
    mobile_mask(mobile, masked, sizeof(masked));
    if (outcome != 0) {
        static const char *why[] = {"", "too many requests from this address", "a code was sent recently",
                                    "too many codes for this number today"};
        count("limited");
        log_info("sms code refused mobile=%s reason=\"%s\"", masked,
                 why[outcome > 0 && outcome < 4 ? outcome : 0]);
        explicit_bzero(code, sizeof(code));
        reply_msg(c, API_TOO_FREQUENT, why[outcome > 0 && outcome < 4 ? outcome : 0], NULL);
        return;
    }
    /* The code must outlive a failover of the Redis master (redis.min_replicas_acked): else the user is
     * told it was sent and then that it is wrong. Too few replicas: undone like a failed delivery. */
    replicated = rds_wait(&c->w->rds) == MP_OK;
    if (!replicated || deliver(mobile, code) != 0) {
        /* Undo, so the user can ask again at once. */
        freeReplyObject(rds_cmd(&c->w->rds, "DEL %s %s", k_code, k_resend));
        freeReplyObject(rds_cmd(&c->w->rds, "DECR %s", k_daily));
        explicit_bzero(code, sizeof(code));
        count("failed");
        reply_unavailable(c, replicated ? "sms gateway" : "redis replicas");
        return;
    }
    explicit_bzero(code, sizeof(code));
    count("sent");
    log_info("sms code sent mobile=%s", masked);
    reply(c, API_OK, NULL);
    return;
failed:
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        log_error("send_code script failed reason=\"%s\"", rep->str);
    freeReplyObject(rep);
    explicit_bzero(code, sizeof(code));
    reply_unavailable(c, "redis");
}

/* Put a verified code back (the login failed after it was taken), for what was left of its life. */
static void restore_code(struct call *c, const char *k_code, const char *code, long long pttl)
{
    if (pttl <= 0)
        return;
    freeReplyObject(rds_cmd(&c->w->rds, "HSET %s code %s tries 0", k_code, code));
    freeReplyObject(rds_cmd(&c->w->rds, "PEXPIRE %s %lld", k_code, pttl));
}

/* 0 when the code is right (consumed), else -1 after answering. *pttl: the code's remaining life. */
static int check_code(struct call *c, const char *k_code, const char *code, long long *pttl)
{
    char a_max[24];
    redisReply *rep;
    long long r;

    *pttl = 0;
    if (app.cfg.sms.test_code[0] != '\0' && strcmp(code, app.cfg.sms.test_code) == 0)
        return 0;
    snprintf(a_max, sizeof(a_max), "%lld", app.cfg.sms.max_attempts);
    rep = rds_cmd(&c->w->rds, "EVAL %s 1 %s %s %s", verify_lua, k_code, code, a_max);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER) {
        if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
            log_error("login script failed reason=\"%s\"", rep->str);
        freeReplyObject(rep);
        reply_unavailable(c, "redis");
        return -1;
    }
    r = rep->element[0]->integer;
    if (r == 0 && rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_INTEGER)
        *pttl = rep->element[1]->integer;
    freeReplyObject(rep);
    switch (r) {
    case 0:
        return 0;
    case 4:
        reply(c, API_CODE_BURNT, NULL);
        return -1;
    case 6:
        reply(c, API_WRONG_CODE, NULL);
        return -1;
    default:
        reply(c, API_NO_CODE, NULL);
        return -1;
    }
}

void sms_login(struct call *c)
{
    const char *mobile, *code, *client_id;
    char k_code[64], masked[MOBILE_MAX_LEN + 1];
    json_t *platform = c->body ? json_object_get(c->body, "platform") : NULL;
    struct auth_claims claims;
    long long pttl;
    int64_t uid;
    int created, rc;
    char *token;

    if (get_mobile(c, &mobile) != 0 || field_str(c, "code", 1, SMS_MAX_CODE_INPUT, &code) < 0 ||
        field_str(c, "clientId", 0, 128, &client_id) < 0)
        return;
    if (platform != NULL && !json_is_null(platform) && !json_is_integer(platform) &&
        !json_is_string(platform)) {
        reply_msg(c, API_INVALID, "platform: must be an integer or a string", NULL);
        return;
    }
    snprintf(k_code, sizeof(k_code), KEY_SMS_CODE, mobile);
    if (check_code(c, k_code, code, &pttl) != 0)
        return;

    rc = users_login(&c->w->db, mobile, &uid, &created);
    if (rc != MP_OK) {
        restore_code(c, k_code, code, pttl);
        reply_unavailable(c, "mysql");
        return;
    }
    token = auth_issue(&app.auth, AUTH_KIND_LOGIN, uid, app.cfg.auth.login_ttl_s, NULL, &claims);
    if (token == NULL) {
        restore_code(c, k_code, code, pttl);
        reply_unavailable(c, "token issuer");
        return;
    }
    mobile_mask(mobile, masked, sizeof(masked));
    log_info("login uid=%lld mobile=%s new_user=%d", (long long)uid, masked, created);
    http_resp_header(c->resp, "authToken", token);
    reply(c, API_OK,
          json_pack("{s:I, s:s, s:b, s:I}", "userId", (json_int_t)uid, "token", token, "register", created,
                    "expires_in", (json_int_t)app.cfg.auth.login_ttl_s));
    free(token);
}
