# bench/: magpie-bench, the load generator (bench/README.md), its cmocka unit tests, and the scripts that
# drive it (bench/run, bench/compare, bench/smoke; peers' configs in bench/peers/).

# The parsers and the histogram, in a library of their own so the unit tests link exactly what runs.
noinst_LIBRARIES += bench/libbench.a
bench_libbench_a_SOURCES = \
	bench/hist.h bench/hist.c \
	bench/wsframe.h bench/wsframe.c \
	bench/resp.h bench/resp.c \
	bench/natsp.h bench/natsp.c \
	bench/payload.h bench/payload.c \
	bench/roomproto.h bench/roomproto.c \
	bench/memstat.h bench/memstat.c \
	bench/syncans.h bench/syncans.c \
	bench/mqttc.h bench/mqttc.c \
	bench/stompc.h bench/stompc.c
bench_libbench_a_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CRYPTO_CFLAGS)

LIBBENCH = bench/libbench.a $(LIBMAGPIE) $(CRYPTO_LIBS) $(HTTP_PARSER_LIBS)

# Not installed: a tool for whoever measures a deployment from a checkout.
noinst_PROGRAMS += bench/magpie-bench
bench_magpie_bench_SOURCES = bench/bench.h bench/main.c bench/loop.c bench/proto_magpie.c bench/proto_peers.c \
	bench/proto_std.c
bench_magpie_bench_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CRYPTO_CFLAGS)
bench_magpie_bench_LDADD = $(LIBBENCH)

BENCH_UNIT_TESTS = tests/unit/test_bench_hist tests/unit/test_bench_wsframe tests/unit/test_bench_resp \
	tests/unit/test_bench_natsp tests/unit/test_bench_payload tests/unit/test_bench_roomproto \
	tests/unit/test_bench_memstat tests/unit/test_bench_syncans tests/unit/test_bench_mqttc \
	tests/unit/test_bench_stompc
check_PROGRAMS += $(BENCH_UNIT_TESTS)
TESTS += $(BENCH_UNIT_TESTS)
BENCH_UNIT_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CRYPTO_CFLAGS) $(CMOCKA_CFLAGS) -I$(srcdir)/bench
BENCH_UNIT_LDADD = $(LIBBENCH) $(CMOCKA_LIBS)
tests_unit_test_bench_hist_SOURCES = tests/unit/test_bench_hist.c
tests_unit_test_bench_hist_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_hist_LDADD = $(BENCH_UNIT_LDADD)
tests_unit_test_bench_wsframe_SOURCES = tests/unit/test_bench_wsframe.c
tests_unit_test_bench_wsframe_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_wsframe_LDADD = $(BENCH_UNIT_LDADD)
tests_unit_test_bench_resp_SOURCES = tests/unit/test_bench_resp.c
tests_unit_test_bench_resp_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_resp_LDADD = $(BENCH_UNIT_LDADD)
tests_unit_test_bench_natsp_SOURCES = tests/unit/test_bench_natsp.c
tests_unit_test_bench_natsp_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_natsp_LDADD = $(BENCH_UNIT_LDADD)
tests_unit_test_bench_payload_SOURCES = tests/unit/test_bench_payload.c
tests_unit_test_bench_payload_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_payload_LDADD = $(BENCH_UNIT_LDADD)
tests_unit_test_bench_roomproto_SOURCES = tests/unit/test_bench_roomproto.c
tests_unit_test_bench_roomproto_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_roomproto_LDADD = $(BENCH_UNIT_LDADD)

tests_unit_test_bench_memstat_SOURCES = tests/unit/test_bench_memstat.c
tests_unit_test_bench_memstat_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_memstat_LDADD = $(BENCH_UNIT_LDADD)
tests_unit_test_bench_syncans_SOURCES = tests/unit/test_bench_syncans.c
tests_unit_test_bench_syncans_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_syncans_LDADD = $(BENCH_UNIT_LDADD)
tests_unit_test_bench_mqttc_SOURCES = tests/unit/test_bench_mqttc.c
tests_unit_test_bench_mqttc_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_mqttc_LDADD = $(BENCH_UNIT_LDADD)
tests_unit_test_bench_stompc_SOURCES = tests/unit/test_bench_stompc.c
tests_unit_test_bench_stompc_CFLAGS = $(BENCH_UNIT_CFLAGS)
tests_unit_test_bench_stompc_LDADD = $(BENCH_UNIT_LDADD)

EXTRA_DIST += bench/README.md bench/run bench/compare bench/protos bench/smoke bench/benchlib.py bench/peers bench/results
