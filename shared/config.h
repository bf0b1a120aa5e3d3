/* config.h -- magpie.conf: one INI file read by every binary (SPEC §2).
 *
 * Every key is described once, in the table in config_table.c (section, name, type, bounds, default, doc).
 * One loop parses, validates and documents them all: config_load() fills a struct magpie_config from the
 * defaults, then the file, then MAGPIE_<SECTION>_<KEY> environment overrides; config_write_example() prints
 * magpie.conf.example from the same table, and `make check` fails if the committed example drifts.
 *
 * File syntax: `[section]` headers, `key = value` lines, full-line comments starting with '#' or ';'.
 * The value is the rest of the line with surrounding blanks removed (so a secret may contain '#').
 */
#ifndef MAGPIE_CONFIG_H
#define MAGPIE_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CONFIG_MAX_LINE 4096 /* longer lines are an error, not silently cut */
#define CONFIG_ERR_LEN 512

struct magpie_config {
    struct {
        char *level; /* debug | info | warn | error */
        char *file;  /* "" = stderr */
    } log;
    struct {
        char *secret;   /* HS256 key, >= 32 bytes; no default */
        char *api_keys; /* comma-separated server-to-server keys */
        long long login_ttl_s;
        long long ws_ticket_ttl_s;
    } auth;
    struct {
        char *host;
        long long port;
        char *password;
        long long db;
        long long connect_timeout_ms;
        long long command_timeout_ms;
        char *sentinels;   /* "host:port, ..."; "" = no Sentinel, redis.host/port is the server */
        char *master_name; /* the master's name in the sentinels' config */
        long long min_replicas_acked; /* WAIT for this many replicas before a durable ack; 0 = no WAIT */
        long long wait_timeout_ms;    /* WAIT's timeout; below command_timeout_ms (config_load checks) */
        char *cluster;                /* "host:port, ..." seeds of a Redis Cluster; "" = no cluster */
        long long stream_shards;      /* users' shards: keys' hash tags and streams (shared/keys.h) */
        long long cluster_retry_ms;   /* how long one command retries through a failover (rcluster.h) */
    } redis;
    struct {
        char *host;
        long long port;
        char *socket;
        char *user;
        char *password;
        char *database;
        long long connect_timeout_s;
        long long rw_timeout_s;
    } mysql;
    struct {
        char *listen;
        char *fcgi_socket;
        long long fcgi_socket_mode;
        long long threads;
        long long max_long_polls;
        char *public_url;
        long long max_body;
        long long long_poll_s;
        int enable_test_token;
        long long poll_threads;
        long long max_connections;
        long long client_timeout_s;
        long long revoked_cache_max;
        long long revoked_silence_ms;
    } http;
    struct {
        long long code_ttl_s;
        long long resend_interval_s;
        long long daily_limit;
        long long ip_limit;
        long long ip_window_s;
        long long max_attempts;
        char *command;
        char *sink_file;
        char *test_code;
        long long command_timeout_s;
    } sms;
    struct {
        long long session_ttl_s;
        char *prefix;
        char *cookie;
    } qr;
    struct {
        char *listen;
        long long node_id;
        char *advertise_url;
        char *advertise_room_url;
        char *allowed_origins;
        long long max_frame;
        long long rate;
        long long burst;
        long long max_conns_per_user;
        long long handshake_timeout_s;
        long long max_header_bytes;
        long long max_conns;
        long long idle_timeout_s;
        long long ping_interval_s;
        long long resume_gap_ms;
        long long queue_cap;
        long long room_flush_ms;
        long long room_batch;
        long long room_batch_bytes;
        long long room_normal_queue;
        long long room_idle_s;
        long long rooms_per_conn;
        char *metrics_listen;
        long long heartbeat_s;
        long long node_ttl_s;
        long long dedup_ttl_s;
        long long bad_packet_limit;
        long long db_threads;
    } push;
    struct {
        long long batch;
        long long batch_wait_ms;
        long long block_ms;
        char *consumer;
        long long claim_idle_ms;
        long long max_failures;
        long long stream_maxlen;
        char *metrics_listen;
        long long housekeeping_ms;
    } persist;
    struct {
        int read_receipts;
    } chat;
    struct {
        long long keep_s;
        long long max_entries;
    } timeline;
    struct {
        long long max_members;
        long long max_per_user;
    } group;
    struct {
        long long max_frame;
        long long max_headers;
        long long max_header_len;
        long long heartbeat_ms;
        long long session_ttl_s;
    } stomp;
    struct {
        long long max_packet;
        long long max_topic;
        long long session_ttl_s;
        long long max_sessions_per_user;
        long long max_inflight;
    } mqtt;
    struct {
        char *webhook_url;
        char *ca_file;
        char *secret;
        long long preview_chars;
        long long queue_maxlen;
        long long max_batch;
        long long max_inflight;
        long long max_pending;
        long long timeout_ms;
        long long max_response_bytes;
        long long retry_base_ms;
        long long retry_max_ms;
        long long max_age_s;
        long long block_ms;
        long long claim_idle_ms;
        char *consumer;
        char *metrics_listen;
    } notify;
};

enum config_type {
    CONFIG_INT,  /* decimal, or octal with a leading 0 (for file modes); bounds are min..max */
    CONFIG_BOOL, /* yes/no, true/false, on/off, 1/0 */
    CONFIG_STR,  /* bounds are on the length in bytes; an empty value is always allowed unless min_empty */
};

struct config_key {
    const char *section;
    const char *name;
    enum config_type type;
    size_t offset;      /* of the field in struct magpie_config */
    long long min, max; /* CONFIG_INT: value bounds; CONFIG_STR: length bounds of a non-empty value */
    const char *def;    /* default, spelled as in the file */
    const char *doc;    /* for magpie.conf.example; lines separated by '\n' */
    /* Optional extra check of a string value; returns NULL when fine, else a static reason. */
    const char *(*check)(const char *value);
};

/* The table, in the order magpie.conf.example lists the keys. */
extern const struct config_key config_keys[];
extern const size_t config_nkeys;

/* Load defaults, then `path` (NULL = defaults only), then environment overrides, into *cfg.
 * Returns 0 on success. On error returns -1, writes "file:line: reason" (or "MAGPIE_X_Y: reason" for the
 * environment) to err, and leaves *cfg freed (safe to config_free again). */
int config_load(struct magpie_config *cfg, const char *path, char *err, size_t errlen);

/* Free every string owned by cfg and zero it. */
void config_free(struct magpie_config *cfg);

/* Find a key by "section.name"; NULL if there is none. */
const struct config_key *config_find(const char *dotted);

/* Print the current value of a key as it would be written in the file into buf. Returns 0, or -1 if the
 * key is unknown. */
int config_format(const struct magpie_config *cfg, const struct config_key *k, char *buf, size_t len);

/* Write magpie.conf.example (every key, its doc and its default) to fp. */
void config_write_example(FILE *fp);

/* Split a comma-separated list value: calls fn(item, len, arg) for each non-empty item with blanks trimmed.
 * Stops early and returns 1 when fn returns nonzero; returns 0 otherwise. */
int config_list_each(const char *list, int (*fn)(const char *item, size_t len, void *arg), void *arg);

/* Does the comma-separated list contain exactly `item`? */
int config_list_has(const char *list, const char *item, size_t item_len);

/* Split "host:port" (port required, host may be empty = all interfaces, "[v6]" allowed).
 * host must hold at least 256 bytes. Returns 0 or -1. */
int config_split_addr(const char *addr, char *host, size_t hostlen, int *port);

#endif
