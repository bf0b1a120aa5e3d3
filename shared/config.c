/* config.c -- the one loop that parses, validates and documents magpie.conf (see config.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define FIELD(cfg, k) ((char *)(cfg) + (k)->offset)

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const struct config_key *config_find(const char *dotted)
{
    const char *dot = strchr(dotted, '.');
    if (dot == NULL)
        return NULL;
    size_t slen = (size_t)(dot - dotted);
    for (size_t i = 0; i < config_nkeys; i++) {
        const struct config_key *k = &config_keys[i];
        if (strlen(k->section) == slen && strncmp(k->section, dotted, slen) == 0 &&
            strcmp(k->name, dot + 1) == 0)
            return k;
    }
    return NULL;
}

static const struct config_key *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < config_nkeys; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

static int section_exists(const char *section)
{
    for (size_t i = 0; i < config_nkeys; i++)
        if (strcmp(config_keys[i].section, section) == 0)
            return 1;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    static const char *yes[] = {"yes", "true", "on", "1"};
    static const char *no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Validate `value` for key k and store it into cfg. On error returns -1 with the reason (without location)
 * in err. */
static int set_value(struct magpie_config *cfg, const struct config_key *k, const char *value, char *err,
                     size_t errlen)
{
    void *field = FIELD(cfg, k);

    switch (k->type) {
    case CONFIG_INT: {
        char *end;
        long long n;
        /* Keys whose default is written in octal (file modes) take octal; all others decimal. */
        int base = (k->def[0] == '0' && k->def[1] != '\0') ? 8 : 10;
        if (*value == '\0' || isspace((unsigned char)*value)) {
            set_err(err, errlen, "%s.%s: '%s' is not a number", k->section, k->name, value);
            return -1;
        }
        errno = 0;
        n = strtoll(value, &end, base);
        if (*end != '\0') {
            set_err(err, errlen, "%s.%s: '%s' is not a number", k->section, k->name, value);
            return -1;
        }
        if (errno == ERANGE || n < k->min || n > k->max) {
            if (base == 8)
                set_err(err, errlen, "%s.%s: %s is out of range (0%llo..0%llo)", k->section, k->name, value,
                        k->min, k->max);
            else
                set_err(err, errlen, "%s.%s: %s is out of range (%lld..%lld)", k->section, k->name, value,
                        k->min, k->max);
            return -1;
        }
        *(long long *)field = n;
        return 0;
    }
    case CONFIG_BOOL: {
        int b;
        if (parse_bool(value, &b) != 0) {
            set_err(err, errlen, "%s.%s: '%s' is not yes or no", k->section, k->name, value);
            return -1;
        }
        *(int *)field = b;
        return 0;
    }
    case CONFIG_STR: {
        size_t len = strlen(value);
        const char *why;
        char *copy;
        if (len > 0 && (len < (size_t)k->min || len > (size_t)k->max)) {
            if (k->min == k->max)
                set_err(err, errlen, "%s.%s: must be exactly %lld bytes", k->section, k->name, k->min);
            else if (len < (size_t)k->min)
                set_err(err, errlen, "%s.%s: must be at least %lld bytes", k->section, k->name, k->min);
            else
                set_err(err, errlen, "%s.%s: must be at most %lld bytes", k->section, k->name, k->max);
            return -1;
        }
        if (k->check != NULL && (why = k->check(value)) != NULL) {
            set_err(err, errlen, "%s.%s: %s", k->section, k->name, why);
            return -1;
        }
        copy = strdup(value);
        if (copy == NULL) {
            set_err(err, errlen, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    }
    return -1;
}

static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    *e = '\0';
    return s;
}

static int valid_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

/* Parse the file into cfg. Each key may appear once per file. */
static int load_file(struct magpie_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    char line[CONFIG_MAX_LINE + 2]; /* room for '\n' and NUL, so an exactly-max line is accepted */
    char section[64] = "";
    unsigned char *seen;
    int lineno = 0, rc = -1;

    if (fp == NULL) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    seen = calloc(config_nkeys, 1);
    if (seen == NULL) {
        set_err(err, errlen, "%s: out of memory", path);
        fclose(fp);
        return -1;
    }

    while (fgets(line, sizeof(line), fp) != NULL) {
        size_t len = strlen(line);
        char *s, *eq, *name, *value;
        const struct config_key *k;
        char why[CONFIG_ERR_LEN];

        lineno++;
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            set_err(err, errlen, "%s:%d: line longer than %d bytes", path, lineno, CONFIG_MAX_LINE);
            goto done;
        }
        /* fgets stops at '\n' only: a NUL inside the line makes strlen short of what was read. */
        if (len == 0 || (line[len - 1] != '\n' && !feof(fp))) {
            set_err(err, errlen, "%s:%d: line contains a NUL byte", path, lineno);
            goto done;
        }
        s = trim(line);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;

        if (*s == '[') {
            char *close = strchr(s, ']');
            if (close == NULL || close[1] != '\0') {
                set_err(err, errlen, "%s:%d: expected '[section]'", path, lineno);
                goto done;
            }
            *close = '\0';
            name = trim(s + 1);
            if (!valid_name(name) || strlen(name) >= sizeof(section) || !section_exists(name)) {
                set_err(err, errlen, "%s:%d: unknown section [%s]", path, lineno, name);
                goto done;
            }
            strcpy(section, name);
            continue;
        }

        eq = strchr(s, '=');
        if (eq == NULL) {
            set_err(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            goto done;
        }
        *eq = '\0';
        name = trim(s);
        value = trim(eq + 1);
        if (!valid_name(name)) {
            set_err(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            goto done;
        }
        if (section[0] == '\0') {
            set_err(err, errlen, "%s:%d: key '%s' outside of any [section]", path, lineno, name);
            goto done;
        }
        k = find_key(section, name);
        if (k == NULL) {
            set_err(err, errlen, "%s:%d: unknown key '%s' in section [%s]", path, lineno, name, section);
            goto done;
        }
        if (seen[k - config_keys]) {
            set_err(err, errlen, "%s:%d: %s.%s is set twice", path, lineno, k->section, k->name);
            goto done;
        }
        seen[k - config_keys] = 1;
        if (set_value(cfg, k, value, why, sizeof(why)) != 0) {
            set_err(err, errlen, "%s:%d: %s", path, lineno, why);
            goto done;
        }
    }
    if (ferror(fp)) {
        set_err(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(seen);
    fclose(fp);
    return rc;
}

/* MAGPIE_<SECTION>_<KEY>, upper-cased. */
static void env_name(const struct config_key *k, char *buf, size_t len)
{
    size_t i;
    snprintf(buf, len, "MAGPIE_%s_%s", k->section, k->name);
    for (i = 0; buf[i]; i++)
        buf[i] = (char)toupper((unsigned char)buf[i]);
}

static int load_env(struct magpie_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < config_nkeys; i++) {
        const struct config_key *k = &config_keys[i];
        char name[128], why[CONFIG_ERR_LEN];
        const char *v;
        env_name(k, name, sizeof(name));
        v = getenv(name);
        if (v == NULL)
            continue;
        if (strlen(v) > CONFIG_MAX_LINE) {
            set_err(err, errlen, "%s: value longer than %d bytes", name, CONFIG_MAX_LINE);
            return -1;
        }
        if (set_value(cfg, k, v, why, sizeof(why)) != 0) {
            set_err(err, errlen, "%s: %s", name, why);
            return -1;
        }
    }
    return 0;
}

void config_free(struct magpie_config *cfg)
{
    for (size_t i = 0; i < config_nkeys; i++)
        if (config_keys[i].type == CONFIG_STR)
            free(*(char **)FIELD(cfg, &config_keys[i]));
    memset(cfg, 0, sizeof(*cfg));
}

int config_load(struct magpie_config *cfg, const char *path, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < config_nkeys; i++) {
        char why[CONFIG_ERR_LEN];
        if (set_value(cfg, &config_keys[i], config_keys[i].def, why, sizeof(why)) != 0) {
            /* A default that fails its own bounds is a bug in config_table.c; test_config catches it. */
            set_err(err, errlen, "built-in default: %s", why);
            config_free(cfg);
            return -1;
        }
    }
    if ((path != NULL && load_file(cfg, path, err, errlen) != 0) || load_env(cfg, err, errlen) != 0) {
        config_free(cfg);
        return -1;
    }
    /* A Redis Cluster has only database 0 (SELECT is refused), and finds its masters itself. */
    if (cfg->redis.cluster[0] != '\0' && (cfg->redis.sentinels[0] != '\0' || cfg->redis.db != 0)) {
        set_err(err, errlen, "%s: redis.cluster cannot be combined with %s",
                path != NULL ? path : "environment",
                cfg->redis.sentinels[0] != '\0' ? "redis.sentinels (use one or the other)"
                                                : "redis.db other than 0 (a cluster has only database 0)");
        config_free(cfg);
        return -1;
    }
    /* A WAIT holds magpie-push's command connection, whose watchdog drops it after command_timeout_ms
     * without a reply (push/rdsa.h). */
    if (cfg->redis.min_replicas_acked > 0 && cfg->redis.wait_timeout_ms >= cfg->redis.command_timeout_ms) {
        set_err(err, errlen,
                "%s: redis.wait_timeout_ms (%lld) must be below redis.command_timeout_ms (%lld) when "
                "redis.min_replicas_acked is set",
                path != NULL ? path : "environment", cfg->redis.wait_timeout_ms,
                cfg->redis.command_timeout_ms);
        config_free(cfg);
        return -1;
    }
    return 0;
}

int config_format(const struct magpie_config *cfg, const struct config_key *k, char *buf, size_t len)
{
    const void *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case CONFIG_INT:
        if (k->def[0] == '0' && k->def[1] != '\0')
            snprintf(buf, len, "0%llo", *(const long long *)field);
        else
            snprintf(buf, len, "%lld", *(const long long *)field);
        return 0;
    case CONFIG_BOOL:
        snprintf(buf, len, "%s", *(const int *)field ? "yes" : "no");
        return 0;
    case CONFIG_STR:
        snprintf(buf, len, "%s", *(char *const *)field ? *(char *const *)field : "");
        return 0;
    }
    return -1;
}

void config_write_example(FILE *fp)
{
    const char *section = "";
    fputs(
        "# magpie.conf -- configuration of every Magpie binary (magpie-http, magpie-push, magpie-persist,\n"
        "# magpie-migrate). Generated from shared/config_table.c by `magpie-config example`; do not edit by\n"
        "# hand, `make check` compares them.\n"
        "#\n"
        "# Syntax: [section], key = value, full-line comments with # or ;. Each key can be overridden by "
        "the\n"
        "# environment as MAGPIE_<SECTION>_<KEY>, e.g. MAGPIE_REDIS_PORT=6390.\n"
        "# Every value below is the default; a commented-out key keeps it.\n",
        fp);
    for (size_t i = 0; i < config_nkeys; i++) {
        const struct config_key *k = &config_keys[i];
        const char *d = k->doc;
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(fp, "\n[%s]\n", section);
        }
        fputs("\n", fp);
        while (*d) {
            const char *nl = strchr(d, '\n');
            size_t n = nl ? (size_t)(nl - d) : strlen(d);
            fprintf(fp, "# %.*s\n", (int)n, d);
            d += n + (nl ? 1 : 0);
        }
        if (k->type == CONFIG_INT && k->min != k->max && !(k->def[0] == '0' && k->def[1] != '\0'))
            fprintf(fp, "# Range: %lld..%lld.\n", k->min, k->max);
        fprintf(fp, "#%s =%s%s\n", k->name, k->def[0] ? " " : "", k->def);
    }
}

int config_list_each(const char *list, int (*fn)(const char *item, size_t len, void *arg), void *arg)
{
    const char *p = list;
    while (p != NULL && *p) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e > b && fn(b, (size_t)(e - b), arg))
            return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

struct list_match {
    const char *item;
    size_t len;
};

static int match_item(const char *item, size_t len, void *arg)
{
    const struct list_match *m = arg;
    return len == m->len && memcmp(item, m->item, len) == 0;
}

int config_list_has(const char *list, const char *item, size_t item_len)
{
    struct list_match m = {item, item_len};
    return config_list_each(list, match_item, &m);
}

int config_split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon;
    char *end;
    long p;
    size_t hl;

    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hl = (size_t)(close - addr - 1);
        if (hl >= hostlen)
            return -1;
        memcpy(host, addr + 1, hl);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - addr);
        if (hl >= hostlen || memchr(addr, ':', hl) != NULL)
            return -1;
        memcpy(host, addr, hl);
    }
    host[hl] = '\0';
    if (!isdigit((unsigned char)colon[1]))
        return -1;
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || errno != 0 || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}
