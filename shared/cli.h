/* cli.h -- the command line every Magpie binary shares:
 *
 *   -c FILE   configuration file (default: $MAGPIE_CONF, else SYSCONFDIR/magpie/magpie.conf)
 *   -t        check the configuration, print "ok" or the error, and exit
 *   -h        help;  -V  version
 */
#ifndef MAGPIE_CLI_H
#define MAGPIE_CLI_H

#include "config.h"

/* Parse the common options (others are left to the caller: see cli_optind), load the config into *cfg and
 * open the log for component (NULL = no log: a tool that only prints). `extra_opts` is a getopt string of the caller's own options, and on_opt is
 * called for each of them (return 0 to accept, nonzero to reject as a usage error); both may be NULL.
 * Returns -1 to go on, or the exit status main should return (the reason is already printed). */
int cli_start(int argc, char **argv, const char *component, const char *usage, const char *extra_opts,
              int (*on_opt)(int opt, const char *arg), struct magpie_config *cfg);

/* Index of the first non-option argument after cli_start. */
int cli_optind(void);

/* The configuration file cli_start read. */
const char *cli_config_path(void);

#endif
