/* config_table.c -- every key of magpie.conf, described once.
 *
 * To add a key: add the field to struct magpie_config (config.h), add a row here in its section's block,
 * then run `make update-example` to regenerate magpie.conf.example (make check fails until you do).
 */
#include "config.h"

#include <stddef.h>
#include <string.h>

#define OFF(f) offsetof(struct magpie_config, f)
#define INT(sec, key, field, lo, hi, def, doc) {sec, key, CONFIG_INT, OFF(field), lo, hi, def, doc, NULL}
#define BOOL(sec, key, field, def, doc) {sec, key, CONFIG_BOOL, OFF(field), 0, 1, def, doc, NULL}
#define STR(sec, key, field, lo, hi, def, doc, chk) {sec, key, CONFIG_STR, OFF(field), lo, hi, def, doc, chk}

static const char *check_level(const char *v)
{
    static const char *levels[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strcmp(v, levels[i]) == 0)
            return NULL;
    return "must be one of debug, info, warn, error";
}

static const char *check_addr(const char *v)
{
    char host[256];
    int port;
    if (*v == '\0')
        return NULL;
    if (config_split_addr(v, host, sizeof(host), &port) != 0)
        return "must be host:port with a port in 1..65535";
    return NULL;
}

static int short_item(const char *item, size_t len, void *arg)
{
    return len < 16;
}

static const char *check_api_keys(const char *v)
{
    return config_list_each(v, short_item, NULL) ? "each key must be at least 16 characters" : NULL;
}

static const char *check_digits6(const char *v)
{
    if (*v == '\0')
        return NULL;
    if (strlen(v) != 6 || strspn(v, "0123456789") != 6)
        return "must be exactly 6 digits";
    return NULL;
}

static const char *check_ws_url(const char *v)
{
    if (*v == '\0' || strncmp(v, "ws://", 5) == 0 || strncmp(v, "wss://", 6) == 0)
        return NULL;
    return "must start with ws:// or wss://";
}

static const char *check_http_url(const char *v)
{
    if (*v == '\0' || strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0)
        return NULL;
    return "must start with http:// or https://";
}

static int bad_addr(const char *item, size_t len, void *arg)
{
    char buf[300], host[256];
    int port;
    if (len >= sizeof(buf))
        return 1;
    memcpy(buf, item, len);
    buf[len] = '\0';
    return config_split_addr(buf, host, sizeof(host), &port) != 0 || host[0] == '\0';
}

static const char *check_addr_list(const char *v)
{
    return config_list_each(v, bad_addr, NULL) ? "must be a comma-separated list of host:port" : NULL;
}

const struct config_key config_keys[] = {
    /* [log] */
    STR("log", "level", log.level, 1, 5, "info", "Lowest level written: debug, info, warn or error.",
        check_level),
    STR("log", "file", log.file, 1, 4095, "",
        "Log file (appended; reopened on SIGHUP for logrotate). Empty = standard error.", NULL),

    /* [auth] */
    STR("auth", "secret", auth.secret, 32, 4095, "",
        "HS256 key for every token Magpie issues. At least 32 bytes; there is no built-in secret, and\n"
        "magpie-http and magpie-push refuse to start without one. Generate: head -c 48 /dev/urandom | base64",
        NULL),
    STR("auth", "api_keys", auth.api_keys, 16, 4095, "",
        "Comma-separated API keys for server-to-server calls (Authorization: Key <key>) to /msg and\n"
        "/admin/*. Each at least 16 characters. Empty = those calls are refused.",
        check_api_keys),
    INT("auth", "login_ttl_s", auth.login_ttl_s, 60, 31536000, "604800",
        "Lifetime of a login token in seconds (default 7 days)."),
    INT("auth", "ws_ticket_ttl_s", auth.ws_ticket_ttl_s, 10, 3600, "120",
        "Lifetime of a WebSocket ticket from /IM/token in seconds; each ticket opens one connection."),

    /* [redis] */
    STR("redis", "host", redis.host, 1, 255, "127.0.0.1", "Redis host name or address.", NULL),
    INT("redis", "port", redis.port, 1, 65535, "6379", "Redis port."),
    STR("redis", "password", redis.password, 1, 511, "", "Redis AUTH password. Empty = no AUTH.", NULL),
    INT("redis", "db", redis.db, 0, 15, "0", "Redis database number."),
    INT("redis", "connect_timeout_ms", redis.connect_timeout_ms, 10, 60000, "1000",
        "Give up connecting to Redis after this many milliseconds (then retry with backoff)."),
    INT("redis", "command_timeout_ms", redis.command_timeout_ms, 10, 60000, "2000",
        "Blocking clients (magpie-http, magpie-persist) treat Redis as down when a reply takes longer."),
    STR("redis", "sentinels", redis.sentinels, 1, 4095, "",
        "Redis Sentinel (SPEC §7): comma-separated host:port of the sentinels. When set, redis.host and\n"
        "redis.port are ignored: every daemon asks the sentinels (in turn) where redis.master_name is,\n"
        "checks with ROLE that it is a master, and asks again after a lost connection or a READONLY reply,\n"
        "so it follows a failover by itself. Empty = one Redis at redis.host:redis.port.",
        check_addr_list),
    STR("redis", "master_name", redis.master_name, 1, 255, "mymaster",
        "The master's name in the sentinels' configuration (sentinel monitor <name> ...).", NULL),
    INT("redis", "min_replicas_acked", redis.min_replicas_acked, 0, 16, "0",
        "Acknowledge a message (A, RECEIPT, PUBACK; /logout, /admin/friends, /admin/orders, group changes\n"
        "over HTTP) only once this many replicas hold it (WAIT); when fewer confirm within\n"
        "redis.wait_timeout_ms the client gets \"temporarily unavailable\" and retries (the retry is\n"
        "deduplicated). With Sentinel and 1, a kill -9 of the master loses no acknowledged message as long "
        "as a replica that acked it is promoted\n"
        "(README, Redis Sentinel). 0 = no WAIT: an ack means the master has it (and its AOF setting)."),
    INT("redis", "wait_timeout_ms", redis.wait_timeout_ms, 1, 60000, "500",
        "How long WAIT waits for redis.min_replicas_acked replicas. Must be below\n"
        "redis.command_timeout_ms: WAIT holds magpie-push's command connection meanwhile."),
    STR("redis", "cluster", redis.cluster, 1, 4095, "",
        "Redis Cluster (SPEC §7): comma-separated host:port of some of its nodes (seeds); the slot map\n"
        "is asked of them and followed from there (MOVED, ASK, failovers). Not with redis.sentinels, and\n"
        "redis.db must be 0. Every script keeps to the slot of one shard (shared/keys.h), so any\n"
        "redis.stream_shards works; more shards than masters spread the load. Empty = no cluster.",
        check_addr_list),
    INT("redis", "stream_shards", redis.stream_shards, 1, 1024, "1",
        "Users are split into this many shards (uid mod N; a group's is gid mod N): every per-user and\n"
        "per-group Redis key carries its shard's hash tag (shared/keys.h), and the chat and notification\n"
        "queues are one stream per shard, which magpie-persist and magpie-notify all read. It must never\n"
        "change once data exists: Redis records it at the first start, and every daemon refuses to start\n"
        "when this differs. More than 1 spreads the users over the masters of a Redis Cluster (a later\n"
        "step of issue 20); on one Redis it works but gains nothing."),
    INT("redis", "cluster_retry_ms", redis.cluster_retry_ms, 0, 60000, "1000",
        "Redis Cluster: how long one command is retried (backoff, slot map refreshed between tries) through\n"
        "CLUSTERDOWN, TRYAGAIN and lost connections before the caller answers \"temporarily unavailable\"\n"
        "(the client retries then). A failover takes about cluster-node-timeout plus 1-2 s. 0 = one try."),

    /* [mysql] */
    STR("mysql", "host", mysql.host, 1, 255, "127.0.0.1", "MySQL/MariaDB host (ignored when socket is set).",
        NULL),
    INT("mysql", "port", mysql.port, 1, 65535, "3306", "MySQL/MariaDB port."),
    STR("mysql", "socket", mysql.socket, 1, 107, "", "Unix socket path; empty = connect over TCP.", NULL),
    STR("mysql", "user", mysql.user, 1, 80, "magpie", "Database user.", NULL),
    STR("mysql", "password", mysql.password, 1, 511, "", "Database password.", NULL),
    STR("mysql", "database", mysql.database, 1, 64, "magpie", "Database (schema) name.", NULL),
    INT("mysql", "connect_timeout_s", mysql.connect_timeout_s, 1, 60, "2", "Connect timeout in seconds."),
    INT("mysql", "rw_timeout_s", mysql.rw_timeout_s, 1, 600, "5",
        "A query whose reply takes longer is abandoned and MySQL is treated as down (catches a hung "
        "server)."),

    /* [http] */
    STR("http", "listen", http.listen, 3, 261, "127.0.0.1:8081",
        "Standalone HTTP front-end (libmicrohttpd), for running without nginx. Empty = off.", check_addr),
    STR("http", "fcgi_socket", http.fcgi_socket, 1, 107, "/run/magpie/http.sock",
        "Unix socket of the FastCGI front-end (what nginx's fastcgi_pass points at). Empty = off.\n"
        "magpie-http creates it; when started by spawn-fcgi it uses the socket on fd 0 instead.",
        NULL),
    INT("http", "fcgi_socket_mode", http.fcgi_socket_mode, 0, 0777, "0660",
        "Permissions of the FastCGI socket (octal). nginx's worker user must be able to connect."),
    INT("http", "threads", http.threads, 1, 256, "8", "Request handler threads per front-end."),
    INT("http", "max_long_polls", http.max_long_polls, 1, 100000, "4096",
        "QR long polls that may wait at once; more get code 10 at once (the page polls again)."),
    STR("http", "public_url", http.public_url, 8, 1023, "http://127.0.0.1:8080",
        "The site's base URL as browsers see it (nginx); used to build absolute URLs such as qr_url.",
        check_http_url),
    INT("http", "max_body", http.max_body, 1024, 1048576, "65536",
        "Largest request body in bytes; larger gets code 16 / 413."),
    INT("http", "long_poll_s", http.long_poll_s, 1, 55, "25",
        "How long POST /session_login waits for a change before answering code 10.\n"
        "Keep it under nginx's fastcgi_read_timeout for that location."),
    BOOL("http", "enable_test_token", http.enable_test_token, "no",
         "Serve POST /tk, which hands out a token for any uid. For tests only; never in production."),
    INT("http", "poll_threads", http.poll_threads, 1, 64, "2",
        "Threads that answer QR long polls when they wake (a state change or their time is up). Waiting\n"
        "polls hold no thread at all; these only run the short Redis check and write the answer."),
    INT("http", "max_connections", http.max_connections, 16, 100000, "8192",
        "Connections the standalone front-end holds at once (waiting long polls included)."),
    INT("http", "client_timeout_s", http.client_timeout_s, 5, 3600, "60",
        "The standalone front-end closes a connection idle this long. Must exceed long_poll_s."),
    INT("http", "revoked_cache_max", http.revoked_cache_max, 0, 100000000, "1000000",
        "Tokens revoked by /logout that each magpie-http keeps in memory (~80 bytes each), kept right\n"
        "through Redis pub/sub, so a request does not ask Redis whether its token was revoked. Past it\n"
        "(or 0) every request asks Redis, as it does while the copy is being read (http/revoked.h)."),
    INT("http", "revoked_silence_ms", http.revoked_silence_ms, 1500, 60000, "3000",
        "The copy of revoked tokens is not used (requests ask Redis) once its subscription has heard\n"
        "nothing from Redis this long; it is PINGed every second."),

    /* [sms] */
    INT("sms", "code_ttl_s", sms.code_ttl_s, 30, 3600, "300", "A login code is valid this long."),
    INT("sms", "resend_interval_s", sms.resend_interval_s, 1, 3600, "60",
        "At most one code per number in this many seconds."),
    INT("sms", "daily_limit", sms.daily_limit, 1, 1000, "10", "At most this many codes per number in 24 h."),
    INT("sms", "ip_limit", sms.ip_limit, 1, 1000000, "200",
        "At most this many /send_code calls per client IP per ip_window_s."),
    INT("sms", "ip_window_s", sms.ip_window_s, 1, 86400, "60", "Window of ip_limit in seconds."),
    INT("sms", "max_attempts", sms.max_attempts, 1, 100, "5", "Wrong codes that burn a code (code 4)."),
    STR("sms", "command", sms.command, 1, 4095, "",
        "Executable that delivers a code; run with MAGPIE_SMS_MOBILE and MAGPIE_SMS_CODE in its\n"
        "environment; a non-zero exit is a failed delivery (code 20).",
        NULL),
    STR("sms", "sink_file", sms.sink_file, 1, 4095, "",
        "Instead of command: append a line \"<mobile> <code>\" to this file (dev stack and tests).", NULL),
    STR("sms", "test_code", sms.test_code, 6, 6, "",
        "A fixed code that always works, for tests only. Empty = off (the default).", check_digits6),
    INT("sms", "command_timeout_s", sms.command_timeout_s, 1, 300, "10",
        "A delivery command still running after this long is killed and the delivery fails (code 20)."),

    /* [qr] */
    INT("qr", "session_ttl_s", qr.session_ttl_s, 10, 3600, "120", "A QR login session lives this long."),
    STR("qr", "prefix", qr.prefix, 1, 255, "magpie://pcsession/",
        "qr_text is this prefix followed by the session token; the phone app recognises it.", NULL),
    STR("qr", "cookie", qr.cookie, 1, 64, "mp_pc",
        "Name of the HttpOnly cookie that binds a QR session to the browser that created it.", NULL),

    /* [push] */
    STR("push", "listen", push.listen, 3, 261, "127.0.0.1:9001", "WebSocket listener of this node.",
        check_addr),
    INT("push", "node_id", push.node_id, 0, 1022, "1",
        "This node's id, unique in the cluster (part of every message id). 1023 is taken: group\n"
        "events' ids are minted in Redis as that node (push/group.h)."),
    STR("push", "advertise_url", push.advertise_url, 5, 1023, "ws://127.0.0.1:8080/ws",
        "The chat URL clients should use to reach this node (what /route hands out).", check_ws_url),
    STR("push", "advertise_room_url", push.advertise_room_url, 5, 1023, "ws://127.0.0.1:8080/room",
        "The room URL clients should use to reach this node.", check_ws_url),
    STR("push", "allowed_origins", push.allowed_origins, 1, 4095, "",
        "Comma-separated Origins allowed to open a WebSocket (e.g. https://chat.example.com).\n"
        "Clients that send no Origin (apps, servers) are allowed; a browser from any other Origin gets 403.",
        NULL),
    INT("push", "max_frame", push.max_frame, 256, 16777216, "65536",
        "Largest WebSocket message in bytes; larger closes the connection with 1009."),
    INT("push", "rate", push.rate, 1, 100000, "50", "Packets per second one connection may send, sustained."),
    INT("push", "burst", push.burst, 1, 100000, "100", "Packets one connection may send in a burst."),
    INT("push", "max_conns_per_user", push.max_conns_per_user, 1, 1000, "10",
        "Connections one user may hold across the cluster; one more gets E and is closed."),
    INT("push", "handshake_timeout_s", push.handshake_timeout_s, 1, 300, "10",
        "Close a connection whose WebSocket handshake has not finished in this time (logged)."),
    INT("push", "max_header_bytes", push.max_header_bytes, 4096, 65535, "36864",
        "Bytes of request headers a handshake may carry (libwebsockets' header table, held only while\n"
        "a handshake is in progress). Keep it above what nginx passes on: its large_client_header_buffers\n"
        "(4 x 8k in the site conf) plus the headers nginx adds. Larger is closed without an answer\n"
        "(libwebsockets 4.1.6 cannot answer it), logged as \"handshake dropped\"."),
    INT("push", "max_conns", push.max_conns, 0, 10000000, "0",
        "Connections this node takes at most (handshakes included); one more gets HTTP 503 at the\n"
        "handshake, which nginx answers by trying another node. 0 = the open-file limit less what the\n"
        "node needs for itself (Redis, MySQL, listeners, logs)."),
    INT("push", "idle_timeout_s", push.idle_timeout_s, 5, 3600, "60",
        "Close a connection that sent nothing (not even a pong) for this long."),
    INT("push", "ping_interval_s", push.ping_interval_s, 1, 3600, "25",
        "Send a WebSocket ping after this much silence; keep it under nginx's proxy_read_timeout (60 s)."),
    INT("push", "resume_gap_ms", push.resume_gap_ms, 0, 5000, "50",
        "A STOMP or MQTT subscription that is delivered a seq past a gap in its user's timeline holds it\n"
        "this long for the missing entries to arrive (a delivery from another node, on another Redis\n"
        "connection, often comes a moment after a later one) before it asks for them with a Y. While the\n"
        "connection's own sends are unanswered it waits for their A (which brings their seqs) instead.\n"
        "0: ask at once."),
    INT("push", "queue_cap", push.queue_cap, 4096, 1073741824, "1048576",
        "Bytes waiting to be written to one connection; a reader that falls further behind is closed."),
    INT("push", "room_flush_ms", push.room_flush_ms, 1, 10000, "20",
        "The longest a room message waits on a node to be merged with the next ones. A batch leaves at\n"
        "once when the room is idle; it waits this long only while most members' queues still\n"
        "hold earlier frames or the room's last batch began less than this long ago (or less than\n"
        "twice that batch's fan-out time ago). It also\n"
        "leaves at once..."),
    INT("push", "room_batch", push.room_batch, 1, 10000, "32",
        "...when it holds this many messages, or when the next message would take its merged data\n"
        "past push.room_batch_bytes (a message larger than that travels alone)."),
    INT("push", "room_batch_bytes", push.room_batch_bytes, 1024, 16777216, "65536",
        "Bytes of merged messages in one room batch frame."),
    INT("push", "room_normal_queue", push.room_normal_queue, 1024, 1073741824, "262144",
        "A room member whose outgoing queue holds more than this many bytes misses normal messages\n"
        "(counted); important ones (level 1) are still queued, up to push.queue_cap, past which the\n"
        "member is disconnected. A push.queue_cap below this lowers it to push.queue_cap."),
    INT("push", "room_idle_s", push.room_idle_s, 2, 3600, "60",
        "A room connection that sends no HEARTBEAT (or other request) for this long is closed;\n"
        "one that has not signed in by then too."),
    INT("push", "rooms_per_conn", push.rooms_per_conn, 1, 1000, "10",
        "Rooms one STOMP or MQTT connection on /ws may be in at once (SUBSCRIBE /topic/room.<id>,\n"
        "room/<id>); one more is refused (STOMP ERROR, MQTT 0x80). A /room connection is in one room."),
    STR("push", "metrics_listen", push.metrics_listen, 3, 261, "127.0.0.1:9101",
        "Loopback HTTP listener for /metrics and /healthz of this node. Empty = off.", check_addr),
    INT("push", "heartbeat_s", push.heartbeat_s, 1, 60, "5", "How often the node renews its registration."),
    INT("push", "node_ttl_s", push.node_ttl_s, 3, 300, "15",
        "A node that missed its heartbeats this long is dead: it leaves routing and presence."),
    INT("push", "dedup_ttl_s", push.dedup_ttl_s, 86400, 2592000, "90000",
        "How long (from, id) of an accepted message is remembered, so a retry is not stored twice."),
    INT("push", "bad_packet_limit", push.bad_packet_limit, 1, 100000, "20",
        "Bad or rate-limited packets one connection may send (the allowance refills by one per second);\n"
        "one more closes the connection with 1008."),
    INT("push", "db_threads", push.db_threads, 1, 128, "4",
        "Threads that run MySQL work (H history, T orders), each with its own MySQL connection."),

    /* [persist] */
    INT("persist", "batch", persist.batch, 1, 10000, "500",
        "Stream entries read, and stored in MySQL in one transaction, at a time."),
    INT("persist", "batch_wait_ms", persist.batch_wait_ms, 0, 1000, "10",
        "When a read brings fewer than `batch` entries, wait this long before the next read, so that\n"
        "under load the next batch gathers more: fewer, larger MySQL transactions (at 8,000 msg/s, 21\n"
        "rows per transaction without the wait, 163 with 10 ms, and half the worker's time). Adds at\n"
        "most this much to the time an entry takes to reach MySQL. 0 = read again at once."),
    INT("persist", "block_ms", persist.block_ms, 1, 2000, "1000",
        "How long one XREADGROUP waits for new entries before the worker looks around again. At most\n"
        "2000, so that a SIGTERM is served (the batch in hand finished) well within 5 s."),
    STR("persist", "consumer", persist.consumer, 1, 128, "",
        "This worker's consumer name in the group. Empty = the host name, so a restarted worker finds\n"
        "the entries it held at once. Give each worker on one host its own name\n"
        "(MAGPIE_PERSIST_CONSUMER=...).",
        NULL),
    INT("persist", "claim_idle_ms", persist.claim_idle_ms, 2000, 86400000, "30000",
        "Entries pending this long under another consumer (a worker that died) are taken over\n"
        "(XAUTOCLAIM), and consumers idle this long with nothing pending are removed from the group.\n"
        "At least twice block_ms."),
    INT("persist", "max_failures", persist.max_failures, 1, 1000, "5",
        "A row MySQL refuses (a value it rejects, a constraint, a message id already taken) is retried\n"
        "until its entry has been delivered this many times, then goes to the dead-letter stream\n"
        "of its shard (mp:{<shard>}:mq:dead) with the reason and its original fields. A malformed entry\n"
        "goes there at once."),
    INT("persist", "stream_maxlen", persist.stream_maxlen, 1000, 1000000000, "1000000",
        "Each shard's stream keeps only what someone still needs: every housekeeping_ms the worker\n"
        "trims the entries every consumer group on it has acked (XTRIM MINID). If other groups than\n"
        "magpie-persist lag so much that one stream holds more than this many entries, the entries\n"
        "magpie-persist has stored are trimmed even though those groups have not read them. Entries\n"
        "not yet stored in MySQL are never trimmed, so while MySQL is down the stream grows past this\n"
        "(watch magpie_persist_lag_seconds)."),
    STR("persist", "metrics_listen", persist.metrics_listen, 3, 261, "127.0.0.1:9201",
        "Loopback HTTP listener for /metrics and /healthz of this worker. Empty = off.", check_addr),
    INT("persist", "housekeeping_ms", persist.housekeeping_ms, 100, 60000, "1000",
        "How often the worker takes over entries of dead workers, trims the stream and updates its\n"
        "lag gauges."),

    /* [chat] */
    BOOL("chat", "read_receipts", chat.read_receipts, "yes",
         "An R (read) in a 1:1 conversation sends the other user a read receipt r {with, mid}."),

    /* [timeline] */
    INT("timeline", "keep_s", timeline.keep_s, 60, 31536000, "86400",
        "Redis keeps the recent part of every user's timeline (the entries Y serves without MySQL) and\n"
        "the content of each stored message this long after it was written; older ones come from\n"
        "MySQL. Redis memory: about 20 bytes per timeline entry plus the message (its packet, ~150\n"
        "bytes + the text) for this long. A timeline idle this long leaves Redis."),
    INT("timeline", "max_entries", timeline.max_entries, 16, 1000000, "1000",
        "At most about this many of a user's latest timeline entries stay in Redis (older ones come\n"
        "from MySQL)."),

    /* [group] (design: push/group.h) */
    INT("group", "max_members", group.max_members, 2, 100000, "500",
        "Members a group may have at most, the owner included (SPEC §4.2). A g costs Redis one seq\n"
        "and one timeline entry per member."),
    INT("group", "max_per_user", group.max_per_user, 1, 100000, "500",
        "Groups a user may belong to at most; creating or being added to one more is refused."),

    /* [stomp] (STOMP 1.2 on /ws, SPEC §4.3; design: push/stomp.c) */
    INT("stomp", "max_frame", stomp.max_frame, 256, 16777216, "16384",
        "Largest STOMP frame in bytes (one WebSocket message, so push.max_frame bounds it too); a larger\n"
        "one gets ERROR \"frame too large\" and the connection is closed."),
    INT("stomp", "max_headers", stomp.max_headers, 1, 128, "32",
        "Header lines one STOMP frame may carry; more gets ERROR \"too many headers\" and a close."),
    INT("stomp", "max_header_len", stomp.max_header_len, 64, 65536, "1024",
        "Bytes of one STOMP header line (and of the command line); longer gets ERROR and a close."),
    INT("stomp", "heartbeat_ms", stomp.heartbeat_ms, 0, 3600000, "10000",
        "The heart-beat the server offers in CONNECTED (heart-beat:<this>,<this>): it sends an EOL at\n"
        "the negotiated interval when the client asks for heart-beats, and closes a client that asked to\n"
        "send them and is silent for twice its interval. 0 = no heart-beating (push.idle_timeout_s\n"
        "still applies)."),
    INT("stomp", "session_ttl_s", stomp.session_ttl_s, 3600, 31536000, "2592000",
        "How long the position of an ack:client STOMP session (the last seq it ACKed, per user and\n"
        "CONNECT client-id) is kept after its last ACK; a client back later starts at the timeline's end."),

    /* [mqtt] (MQTT 3.1.1 on /ws, SPEC §4.3; design: push/mqtt.c) */
    INT("mqtt", "max_packet", mqtt.max_packet, 256, 16777216, "16384",
        "Largest MQTT packet (its remaining length) in bytes; a larger one, or a remaining length that\n"
        "does not parse, closes the connection (MQTT answers a malformed packet by closing)."),
    INT("mqtt", "max_topic", mqtt.max_topic, 16, 65535, "256",
        "Bytes of a topic name or filter; a longer one in PUBLISH, SUBSCRIBE or UNSUBSCRIBE closes the\n"
        "connection."),
    INT("mqtt", "session_ttl_s", mqtt.session_ttl_s, 3600, 31536000, "2592000",
        "How long a clean-session-0 MQTT session (its me/inbox subscription and the last seq it\n"
        "PUBACKed, per user and client id) is kept after its last write; a client back later gets\n"
        "session present 0 and starts at the timeline's end."),
    INT("mqtt", "max_sessions_per_user", mqtt.max_sessions_per_user, 1, 10000, "32",
        "Clean-session-0 MQTT sessions (client ids) kept per user; one more drops the one written\n"
        "longest ago (a client that makes up a new id at every connect cannot grow the hash)."),
    INT("mqtt", "max_inflight", mqtt.max_inflight, 1, 65535, "256",
        "QoS 1 PUBLISHes on me/inbox sent and not PUBACKed yet, per connection, at most; the next ones\n"
        "wait (they are read from the timeline when PUBACKs make room), so a client that does not\n"
        "PUBACK holds at most this many in the server's memory."),

    /* [notify] (design: notify/notify_worker.h) */
    STR("notify", "webhook_url", notify.webhook_url, 8, 2048, "",
        "Offline notifications (SPEC §6): a message stored for a user with no open connection, or a\n"
        "POST /msg {to} to one, becomes an event that magpie-notify POSTs here (a JSON array of events,\n"
        "signed with secret). Empty = off: nothing is queued. https checks the receiver's certificate\n"
        "against the system's CA certificates, or against ca_file.",
        check_http_url),
    STR("notify", "ca_file", notify.ca_file, 1, 4096, "",
        "A PEM file of the CA certificates an https webhook_url must chain to, instead of the system's\n"
        "(e.g. a private CA). Empty = the system's. The receiver's name is always checked.",
        NULL),
    STR("notify", "secret", notify.secret, 16, 512, "",
        "The HMAC-SHA256 key of the X-Magpie-Signature header (sha256=<hex of the body's HMAC>); the\n"
        "receiver checks it. Required when webhook_url is set (magpie-notify refuses to start without).",
        NULL),
    INT("notify", "preview_chars", notify.preview_chars, 0, 1023, "100",
        "An event carries the first this many characters of a text message as its preview; 0 = none\n"
        "(the receiver then knows only who wrote, not what)."),
    INT("notify", "queue_maxlen", notify.queue_maxlen, 1000, 1000000000, "1000000",
        "Each shard's stream mp:{<shard>}:notify holds at most about this many events (XADD MAXLEN\n"
        "~): if magpie-notify is down long enough for more to queue, the oldest are dropped (they\n"
        "would be past max_age_s soon)."),
    INT("notify", "max_batch", notify.max_batch, 1, 1000, "100", "Events in one POST at most."),
    INT("notify", "max_inflight", notify.max_inflight, 1, 64, "4",
        "POSTs in flight at once (libcurl's multi interface, one thread)."),
    INT("notify", "max_pending", notify.max_pending, 10, 1000000, "10000",
        "Events magpie-notify holds in memory at most (in flight or waiting for a retry); no more are\n"
        "read from the stream until some are done, so a receiver that is down costs bounded memory."),
    INT("notify", "timeout_ms", notify.timeout_ms, 100, 600000, "5000",
        "A POST that has not finished (connect, send, whole answer) in this time fails and is retried: a\n"
        "receiver that answers slowly or not at all holds a batch no longer."),
    INT("notify", "max_response_bytes", notify.max_response_bytes, 0, 1048576, "4096",
        "Bytes of a receiver's answer body read at most; after that the transfer is cut and the status\n"
        "decides (2xx = taken). The body is never kept beyond the first line logged on failure."),
    INT("notify", "retry_base_ms", notify.retry_base_ms, 10, 600000, "1000",
        "A failed POST's events are tried again after this long, doubling per failure up to\n"
        "retry_max_ms, each wait drawn at random between half and all of it (jitter)."),
    INT("notify", "retry_max_ms", notify.retry_max_ms, 10, 3600000, "60000",
        "The longest wait between two tries of an event."),
    INT("notify", "max_age_s", notify.max_age_s, 1, 2592000, "86400",
        "An event still not taken this long after it was queued goes to the dead-letter stream\n"
        "of its shard (mp:{<shard>}:notify:dead) with the last failure as its reason."),
    INT("notify", "block_ms", notify.block_ms, 1, 2000, "1000",
        "How long one read of the stream waits for new events when magpie-notify has nothing else to do."),
    INT("notify", "claim_idle_ms", notify.claim_idle_ms, 2000, 86400000, "30000",
        "Events pending this long under another consumer (a magpie-notify that is gone) are taken over\n"
        "(XAUTOCLAIM). Run one magpie-notify per Redis: a second one would break the per-recipient order."),
    STR("notify", "consumer", notify.consumer, 1, 128, "",
        "This magpie-notify's consumer name in the group; empty = the host name, so a restart finds the\n"
        "events it held at once.",
        NULL),
    STR("notify", "metrics_listen", notify.metrics_listen, 3, 261, "127.0.0.1:9301",
        "Loopback HTTP listener for /metrics and /healthz of magpie-notify. Empty = off.", check_addr),
};

const size_t config_nkeys = sizeof(config_keys) / sizeof(config_keys[0]);
