/* fuzz_config.c -- magpie.conf through config_load (shared/config.c), as every binary reads it at start,
 * then the helpers that take values apart later: config_split_addr on every listen-style value,
 * config_list_each / config_list_has on the lists (auth.api_keys, push.allowed_origins).
 *
 * The input is the file: written to a memfd and read back through /proc/self/fd/N, so config_load's own
 * fopen/fgets path runs. The environment overrides (MAGPIE_*) are cleared first.
 *
 * Invariants: a refused file has a "file:line: reason" (or "file: reason") message; an accepted one gives
 * every key a value within its bounds, which config_format prints.
 */
#include "config.h"
#include "fuzz.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    extern char **environ;
    /* Nothing from the environment may change what a file means. */
    for (char **e = environ; *e != NULL;) {
        if (strncmp(*e, "MAGPIE_", 7) == 0) {
            char name[256];
            size_t n = strcspn(*e, "=");
            snprintf(name, sizeof(name), "%.*s", (int)n, *e);
            unsetenv(name);
        } else {
            e++;
        }
    }
    fd = memfd_create("magpie-fuzz.conf", 0);
    if (fd < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

static int count_item(const char *item, size_t len, void *arg)
{
    FUZZ_CHECK(len > 0 && item[0] != ' ' && item[len - 1] != ' ');
    (*(int *)arg)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct magpie_config cfg;
    char err[CONFIG_ERR_LEN];

    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    err[0] = '\0';
    if (config_load(&cfg, path, err, sizeof(err)) != 0) {
        FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':');
        config_free(&cfg);
        return 0;
    }
    for (size_t i = 0; i < config_nkeys; i++) {
        const struct config_key *k = &config_keys[i];
        char buf[CONFIG_MAX_LINE + 64], host[256];
        int port, items = 0;
        FUZZ_CHECK(config_format(&cfg, k, buf, sizeof(buf)) == 0);
        if (k->type == CONFIG_INT) {
            long long v = *(const long long *)(const void *)((const char *)&cfg + k->offset);
            FUZZ_CHECK(v >= k->min && v <= k->max);
        }
        if (k->type != CONFIG_STR)
            continue;
        if (config_split_addr(buf, host, sizeof(host), &port) == 0)
            FUZZ_CHECK(port >= 1 && port <= 65535 && strlen(host) < sizeof(host));
        config_list_each(buf, count_item, &items);
        (void)config_list_has(buf, "https://example.com", 19);
    }
    config_free(&cfg);
    return 0;
}
