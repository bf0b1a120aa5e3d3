# Unit tests (cmocka), run by `make check`. Integration tests (pytest, tests/integration) need the real
# servers and run from `scripts/dev test`.

UNIT_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CMOCKA_CFLAGS)
UNIT_LDADD = $(LIBMAGPIE) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_config tests/unit/test_auth tests/unit/test_id tests/unit/test_envelope \
	tests/unit/test_metrics tests/unit/test_log tests/unit/test_sentinel tests/unit/test_rcluster \
	tests/unit/test_keys
tests_unit_test_keys_SOURCES = tests/unit/test_keys.c
tests_unit_test_keys_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_keys_LDADD = $(UNIT_LDADD)
tests_unit_test_rcluster_SOURCES = tests/unit/test_rcluster.c
tests_unit_test_rcluster_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_rcluster_LDADD = $(UNIT_LDADD)
tests_unit_test_sentinel_SOURCES = tests/unit/test_sentinel.c
tests_unit_test_sentinel_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_sentinel_LDADD = $(UNIT_LDADD)
tests_unit_test_config_SOURCES = tests/unit/test_config.c
tests_unit_test_config_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_config_LDADD = $(UNIT_LDADD)
tests_unit_test_auth_SOURCES = tests/unit/test_auth.c
tests_unit_test_auth_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_auth_LDADD = $(UNIT_LDADD)
tests_unit_test_id_SOURCES = tests/unit/test_id.c
tests_unit_test_id_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_id_LDADD = $(UNIT_LDADD)
tests_unit_test_envelope_SOURCES = tests/unit/test_envelope.c
tests_unit_test_envelope_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_envelope_LDADD = $(UNIT_LDADD)
tests_unit_test_metrics_SOURCES = tests/unit/test_metrics.c
tests_unit_test_metrics_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_metrics_LDADD = $(UNIT_LDADD)
tests_unit_test_log_SOURCES = tests/unit/test_log.c
tests_unit_test_log_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_log_LDADD = $(UNIT_LDADD)

TESTS += tests/unit/test_config tests/unit/test_auth tests/unit/test_id tests/unit/test_envelope \
	tests/unit/test_metrics tests/unit/test_log tests/unit/test_sentinel tests/unit/test_rcluster \
	tests/unit/test_keys tests/unit/example-drift.sh
TESTS_ENVIRONMENT = MAGPIE_CONFIG_BIN=$(abs_builddir)/shared/magpie-config$(EXEEXT) \
	EXAMPLE=$(abs_srcdir)/magpie.conf.example
EXTRA_DIST += tests/unit/example-drift.sh
# the stock protocol clients test_stomp.py and test_mqtt.py drive (npm ci in tests/clients: scripts/dev test)
EXTRA_DIST += tests/clients/package.json tests/clients/package-lock.json tests/clients/stomp_driver.mjs \
	tests/clients/mqtt_driver.mjs

# The Redis Cluster client driven line by line by tests/integration/test_rcluster.py against a real cluster
# (built by make so that 'scripts/dev test' has it in both builds; not installed). Not in tests/integration,
# which EXTRA_DIST takes whole: a build there would put objects into the tarball.
noinst_PROGRAMS += tests/probes/rcluster-probe
tests_probes_rcluster_probe_SOURCES = tests/probes/rcluster_probe.c
tests_probes_rcluster_probe_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS)
tests_probes_rcluster_probe_LDADD = $(LIBMAGPIE)
