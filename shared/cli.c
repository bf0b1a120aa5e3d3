/* cli.c -- see cli.h. */
#include "cli.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static char config_path[4096];
static int first_arg;

int cli_optind(void)
{
    return first_arg;
}

const char *cli_config_path(void)
{
    return config_path;
}

int cli_start(int argc, char **argv, const char *component, const char *usage, const char *extra_opts,
              int (*on_opt)(int opt, const char *arg), struct magpie_config *cfg)
{
    char opts[64], err[CONFIG_ERR_LEN];
    const char *env = getenv("MAGPIE_CONF");
    int check_only = 0, c;

    snprintf(config_path, sizeof(config_path), "%s", env && *env ? env : SYSCONFDIR "/magpie/magpie.conf");
    snprintf(opts, sizeof(opts), "c:thV%s", extra_opts ? extra_opts : "");
    while ((c = getopt(argc, argv, opts)) != -1) {
        switch (c) {
        case 'c':
            snprintf(config_path, sizeof(config_path), "%s", optarg);
            break;
        case 't':
            check_only = 1;
            break;
        case 'h':
            printf("usage: %s [-c FILE] [-t] [-h] [-V]%s\n"
                   "  -c FILE  configuration (default $MAGPIE_CONF, else " SYSCONFDIR "/magpie/magpie.conf)\n"
                   "  -t       check the configuration and exit\n",
                   argv[0], usage ? usage : "");
            return 0;
        case 'V':
            printf("%s %s\n", argv[0], PACKAGE_VERSION);
            return 0;
        default:
            if (c != '?' && on_opt != NULL && on_opt(c, optarg) == 0)
                break;
            fprintf(stderr, "usage: %s [-c FILE] [-t] [-h] [-V]%s\n", argv[0], usage ? usage : "");
            return 2;
        }
    }
    first_arg = optind;
    if (config_load(cfg, config_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", component ? component : argv[0], err);
        return 1;
    }
    keys_set_shards((int)cfg->redis.stream_shards);
    if (check_only) {
        printf("%s: configuration ok\n", config_path);
        config_free(cfg);
        return 0;
    }
    if (component != NULL && log_open(component, cfg->log.level, cfg->log.file) != 0) {
        fprintf(stderr, "%s: cannot open log file %s\n", component, cfg->log.file);
        config_free(cfg);
        return 1;
    }
    if (component != NULL)
        log_fatal_signals();
    /* redis.stream_shards must be what the data in Redis was written with (keys.h). Redis down now: the
     * daemon starts (it waits for Redis like at any outage), and magpie-persist checks before it works. */
    if (component != NULL && strcmp(component, "migrate") != 0) {
        int rc = keys_startup_check(cfg);
        if (rc == MP_ERR) {
            fprintf(stderr,
                    "%s: %s: redis.stream_shards = %lld, but the data in Redis was written with another "
                    "shard count (" KEY_SHARDS "; see the log); it cannot change once data exists\n",
                    component, config_path, cfg->redis.stream_shards);
            config_free(cfg);
            return 1;
        }
        if (rc != MP_OK)
            log_warn(
                "cannot check redis.stream_shards against Redis now (unavailable); magpie-persist checks "
                "it before it stores anything");
    }
    return -1;
}
