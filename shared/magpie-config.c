/* magpie-config -- look at magpie.conf the way the daemons see it.
 *
 *   magpie-config example            print magpie.conf.example (every key, its doc and default)
 *   magpie-config [-c FILE] check    validate FILE (and the MAGPIE_* environment)
 *   magpie-config [-c FILE] get K..  print the effective value of each section.key, one per line
 *
 * scripts/dev reads ports and paths with `get`, so the dev stack and the daemons cannot disagree.
 */
#include "cli.h"
#include "config.h"

#include <stdio.h>
#include <string.h>

static int usage(void)
{
    fputs("usage: magpie-config example\n"
          "       magpie-config [-c FILE] check\n"
          "       magpie-config [-c FILE] get section.key...\n",
          stderr);
    return 2;
}

int main(int argc, char **argv)
{
    struct magpie_config cfg;
    const char *cmd;
    int i, rc;

    if (argc == 2 && strcmp(argv[1], "example") == 0) {
        config_write_example(stdout);
        return 0;
    }
    /* No log: this tool writes to stdout only. */
    rc = cli_start(argc, argv, NULL, " example|check|get KEY...", NULL, NULL, &cfg);
    if (rc >= 0)
        return rc;
    i = cli_optind();
    if (i >= argc) {
        config_free(&cfg);
        return usage();
    }
    cmd = argv[i++];
    rc = 0;
    if (strcmp(cmd, "check") == 0 && i == argc) {
        printf("%s: configuration ok\n", cli_config_path());
    } else if (strcmp(cmd, "get") == 0 && i < argc) {
        for (; i < argc; i++) {
            const struct config_key *k = config_find(argv[i]);
            char buf[CONFIG_MAX_LINE + 1];
            if (k == NULL) {
                fprintf(stderr, "magpie-config: unknown key %s\n", argv[i]);
                rc = 1;
                break;
            }
            config_format(&cfg, k, buf, sizeof(buf));
            printf("%s\n", buf);
        }
    } else {
        rc = usage();
    }
    config_free(&cfg);
    return rc;
}
