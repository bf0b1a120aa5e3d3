/* magpie-migrate -- apply the numbered schema migrations in sql/ (NNN_name.sql) that the database has not
 * seen yet, in order, each recorded in schema_migrations. Safe to run twice, and from two hosts at once
 * (a named lock serialises them).
 *
 *   magpie-migrate [-c FILE] [-d DIR] [-s]
 *     -d DIR   where the .sql files are (default: PKGDATADIR/sql)
 *     -s       status only: list applied and pending migrations
 *
 * A migration's statements run as one multi-statement batch. MariaDB commits DDL implicitly, so a
 * migration that fails half-way is not undone: the error names the file, and it must be fixed by hand
 * before running again (write migrations with IF NOT EXISTS so a re-run after the fix is harmless).
 */
#include "cli.h"
#include "db.h"
#include "log.h"
#include "magpie.h"

#include <dirent.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PKGDATADIR
#define PKGDATADIR "/usr/local/share/magpie"
#endif

#define MIGRATION_MAX_BYTES (1 << 20)
#define MIGRATE_LOCK_TIMEOUT_S 30

static const char *sql_dir = PKGDATADIR "/sql";
static int status_only;

static int on_opt(int opt, const char *arg)
{
    if (opt == 'd') {
        sql_dir = arg;
        return 0;
    }
    if (opt == 's') {
        status_only = 1;
        return 0;
    }
    return -1;
}

static int is_migration(const struct dirent *e)
{
    static regex_t re;
    static int compiled;
    if (!compiled) {
        if (regcomp(&re, "^[0-9]{3}_[a-z0-9_]+\\.sql$", REG_EXTENDED | REG_NOSUB) != 0)
            return 0;
        compiled = 1;
    }
    return regexec(&re, e->d_name, 0, NULL, 0) == 0;
}

/* Read path into a malloc'd NUL-terminated buffer; NULL on error (logged). */
static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    if (fp == NULL) {
        log_error("cannot open migration file=%s error=\"%s\"", path, strerror(errno));
        return NULL;
    }
    buf = malloc(MIGRATION_MAX_BYTES + 1);
    if (buf == NULL) {
        fclose(fp);
        return NULL;
    }
    *len = fread(buf, 1, MIGRATION_MAX_BYTES + 1, fp);
    fclose(fp);
    if (*len > MIGRATION_MAX_BYTES) {
        log_error("migration too large file=%s max=%d", path, MIGRATION_MAX_BYTES);
        free(buf);
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

/* Is version recorded? 1 yes, 0 no, -1 error. */
static int is_applied(struct db *d, int version)
{
    char sql[128];
    MYSQL *m = db_conn(d);
    MYSQL_RES *res;
    int found;
    snprintf(sql, sizeof(sql), "SELECT 1 FROM schema_migrations WHERE version = %d", version);
    if (m == NULL || mysql_query(m, sql) != 0)
        return -1;
    res = mysql_store_result(m);
    if (res == NULL)
        return -1;
    found = mysql_num_rows(res) > 0;
    mysql_free_result(res);
    return found;
}

static int apply(struct db *d, const char *name, int version)
{
    char path[4096], record[512];
    size_t len;
    char *sql;
    int rc;

    snprintf(path, sizeof(path), "%s/%s", sql_dir, name);
    if ((sql = read_file(path, &len)) == NULL)
        return -1;
    rc = db_exec(d, sql, (unsigned long)len);
    free(sql);
    if (rc != MP_OK) {
        log_error("migration failed file=%s error=\"%s\"", path, d->m ? mysql_error(d->m) : "mysql unavailable");
        return -1;
    }
    snprintf(record, sizeof(record), "INSERT INTO schema_migrations (version, name) VALUES (%d, '%.200s')",
             version, name);
    if (db_exec(d, record, (unsigned long)strlen(record)) != MP_OK) {
        log_error("cannot record migration file=%s error=\"%s\"", path, d->m ? mysql_error(d->m) : "?");
        return -1;
    }
    log_info("migration applied version=%03d name=%s", version, name);
    return 0;
}

int main(int argc, char **argv)
{
    static const char create[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                 " version INT NOT NULL PRIMARY KEY,"
                                 " name VARCHAR(255) NOT NULL,"
                                 " applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)"
                                 ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
    struct magpie_config cfg;
    struct dirent **files = NULL;
    struct db d;
    char lock[128];
    int n, rc = 1, pending = 0;

    rc = cli_start(argc, argv, "migrate", " [-d DIR] [-s]", "d:s", on_opt, &cfg);
    if (rc >= 0)
        return rc;
    rc = 1;
    if (db_library_init() != MP_OK) {
        log_error("cannot initialise the MySQL client library");
        config_free(&cfg);
        return 1;
    }
    db_init(&d, &cfg);
    d.client_flags = CLIENT_MULTI_STATEMENTS;
    n = scandir(sql_dir, &files, is_migration, alphasort);
    if (n < 0) {
        log_error("cannot read migrations dir=%s error=\"%s\"", sql_dir, strerror(errno));
        goto done;
    }
    if (db_conn(&d) == NULL) {
        log_error("cannot connect to mysql; is it running, and is [mysql] in %s right?", cli_config_path());
        goto done;
    }
    snprintf(lock, sizeof(lock), "DO GET_LOCK('magpie_migrate', %d)", MIGRATE_LOCK_TIMEOUT_S);
    if (db_exec(&d, lock, (unsigned long)strlen(lock)) != MP_OK ||
        db_exec(&d, create, sizeof(create) - 1) != MP_OK) {
        log_error("cannot prepare schema_migrations error=\"%s\"", d.m ? mysql_error(d.m) : "mysql unavailable");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        int version = atoi(files[i]->d_name);
        int applied = is_applied(&d, version);
        if (applied < 0) {
            log_error("cannot read schema_migrations");
            goto done;
        }
        if (status_only) {
            printf("%03d %-40s %s\n", version, files[i]->d_name, applied ? "applied" : "pending");
            pending += !applied;
            continue;
        }
        if (!applied && apply(&d, files[i]->d_name, version) != 0)
            goto done;
    }
    if (!status_only)
        log_info("schema up to date migrations=%d dir=%s", n, sql_dir);
    rc = status_only && pending ? 3 : 0;
done:
    for (int i = 0; i < n; i++)
        free(files[i]);
    free(files);
    db_close(&d);
    config_free(&cfg);
    mysql_library_end();
    return rc;
}
