/* db.h -- a MySQL/MariaDB connection (libmariadb) that comes back by itself.
 *
 * No MYSQL_OPT_RECONNECT: a silent reconnect in the middle of a transaction would lose its first half.
 * Instead a connection error drops the connection, the caller sees MP_EAGAIN (and retries its whole unit of
 * work), and the next db_conn() reconnects, no sooner than a backoff (100 ms doubling to 2 s).
 * mysql.rw_timeout_s bounds every read and write, so a hung server looks like a dead one.
 * Character set utf8mb4. One struct db per thread.
 */
#ifndef MAGPIE_DB_H
#define MAGPIE_DB_H

#include <mysql.h>
#include <stdint.h>

struct magpie_config;

struct db {
    MYSQL *m;
    char host[256];
    int port;
    char socket[108];
    char user[81];
    char password[512];
    char database[65];
    unsigned connect_timeout_s;
    unsigned rw_timeout_s;
    unsigned long client_flags; /* e.g. CLIENT_MULTI_STATEMENTS for the migration command */
    char init_command[256];     /* run on every new connection (e.g. SET SESSION ...); "" = none */
    int64_t retry_at_ms;
    int backoff_ms;
    int down;
};

/* Call once per process, before any thread uses MySQL. Returns MP_OK or MP_ERR. */
int db_library_init(void);

/* Take the settings from cfg's [mysql]; connects lazily. */
void db_init(struct db *d, const struct magpie_config *cfg);

/* The live connection, connecting if needed; NULL when MySQL is unavailable. */
MYSQL *db_conn(struct db *d);

/* Is a mysql_errno() value a connection problem (as opposed to a rejected statement)? */
int db_is_conn_error(unsigned int err);

/* Run a statement that returns no rows (or whose rows are discarded).
 * MP_OK; MP_EAGAIN when MySQL is unavailable (connection dropped; retry later); MP_ERR when MySQL rejected
 * the statement (mysql_errno/mysql_error on db_conn(d) tell why; the connection stays). */
int db_exec(struct db *d, const char *sql, unsigned long len);

/* After a failed mysql_* call on db_conn(d): drop the connection if the error is a connection problem.
 * Returns MP_EAGAIN for a connection problem, MP_ERR otherwise. */
int db_check_error(struct db *d);

/* Drop the connection (logged once per outage). */
void db_drop(struct db *d, const char *why);

void db_close(struct db *d);

#endif
