# libFuzzer targets (tests/fuzz/README.md): one file per parser entry point, each linked twice.
#  - tests/fuzz/<name>: with libFuzzer, only in a build configured CC=clang-14 --enable-fuzzing (every
#    object then carries libFuzzer's coverage instrumentation and ASan+UBSan); built by `make fuzz-targets`,
#    run by `scripts/dev fuzz`.
#  - tests/fuzz/replay_<name>: with replay.c instead, in every build; `make check` runs it on the target's
#    corpus (tests/fuzz/corpus/<name>), so the seeds and every crash input found so far are regression tests.

FUZZ_NAMES = chatpkt roompkt bus persist_entry jwt config http qr_token bench_stream stompframe mqttpkt rcluster
FUZZ_TARGETS = tests/fuzz/rcluster tests/fuzz/mqttpkt tests/fuzz/stompframe tests/fuzz/bench_stream tests/fuzz/chatpkt tests/fuzz/roompkt tests/fuzz/bus tests/fuzz/persist_entry tests/fuzz/jwt tests/fuzz/config tests/fuzz/http tests/fuzz/qr_token
FUZZ_REPLAYS = tests/fuzz/replay_rcluster tests/fuzz/replay_mqttpkt tests/fuzz/replay_stompframe tests/fuzz/replay_bench_stream tests/fuzz/replay_chatpkt tests/fuzz/replay_roompkt tests/fuzz/replay_bus tests/fuzz/replay_persist_entry tests/fuzz/replay_jwt tests/fuzz/replay_config tests/fuzz/replay_http tests/fuzz/replay_qr_token

# The sources of push/ a target needs, compiled into the target (as the unit tests do).
FUZZ_PUSH_SOURCES = push/chatpkt.c push/chatpkt.h push/roompkt.c push/roompkt.h
FUZZ_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(FCGI_CFLAGS) $(MHD_CFLAGS) $(QRENCODE_CFLAGS) $(CRYPTO_CFLAGS) \
	-I$(srcdir)/tests/fuzz -I$(srcdir)/push -I$(srcdir)/http -I$(srcdir)/bench
FUZZ_REPLAY_LDADD = tests/fuzz/libreplay.a

# replay.c's main(), once.
check_LIBRARIES = tests/fuzz/libreplay.a
tests_fuzz_libreplay_a_SOURCES = tests/fuzz/replay.c tests/fuzz/fuzz.h
tests_fuzz_libreplay_a_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_CORPUS_ROOT='"$(abs_srcdir)/tests/fuzz/corpus"'

EXTRA_PROGRAMS = $(FUZZ_TARGETS)
check_PROGRAMS += $(FUZZ_REPLAYS)
TESTS += $(FUZZ_REPLAYS)

tests_fuzz_chatpkt_SOURCES = tests/fuzz/fuzz_chatpkt.c $(FUZZ_PUSH_SOURCES)
tests_fuzz_chatpkt_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_chatpkt_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_chatpkt_LDADD = $(LIBMAGPIE)
tests_fuzz_replay_chatpkt_SOURCES = tests/fuzz/fuzz_chatpkt.c $(FUZZ_PUSH_SOURCES)
tests_fuzz_replay_chatpkt_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_chatpkt_LDADD = $(FUZZ_REPLAY_LDADD) $(LIBMAGPIE)

tests_fuzz_roompkt_SOURCES = tests/fuzz/fuzz_roompkt.c $(FUZZ_PUSH_SOURCES)
tests_fuzz_roompkt_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_roompkt_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_roompkt_LDADD = $(LIBMAGPIE)
tests_fuzz_replay_roompkt_SOURCES = tests/fuzz/fuzz_roompkt.c $(FUZZ_PUSH_SOURCES)
tests_fuzz_replay_roompkt_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_roompkt_LDADD = $(FUZZ_REPLAY_LDADD) $(LIBMAGPIE)

tests_fuzz_bus_SOURCES = tests/fuzz/fuzz_bus.c $(FUZZ_PUSH_SOURCES)
tests_fuzz_bus_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_bus_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_bus_LDADD = $(LIBMAGPIE)
tests_fuzz_replay_bus_SOURCES = tests/fuzz/fuzz_bus.c $(FUZZ_PUSH_SOURCES)
tests_fuzz_replay_bus_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_bus_LDADD = $(FUZZ_REPLAY_LDADD) $(LIBMAGPIE)

tests_fuzz_persist_entry_SOURCES = tests/fuzz/fuzz_persist_entry.c
tests_fuzz_persist_entry_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_persist_entry_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_persist_entry_LDADD = push/libpersist.a $(LIBMAGPIE)
tests_fuzz_replay_persist_entry_SOURCES = tests/fuzz/fuzz_persist_entry.c
tests_fuzz_replay_persist_entry_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_persist_entry_LDADD = $(FUZZ_REPLAY_LDADD) push/libpersist.a $(LIBMAGPIE)

tests_fuzz_jwt_SOURCES = tests/fuzz/fuzz_jwt.c
tests_fuzz_jwt_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_jwt_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_jwt_LDADD = $(LIBMAGPIE) $(CRYPTO_LIBS)
tests_fuzz_replay_jwt_SOURCES = tests/fuzz/fuzz_jwt.c
tests_fuzz_replay_jwt_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_jwt_LDADD = $(FUZZ_REPLAY_LDADD) $(LIBMAGPIE) $(CRYPTO_LIBS)

tests_fuzz_config_SOURCES = tests/fuzz/fuzz_config.c
tests_fuzz_config_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_config_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_config_LDADD = $(LIBMAGPIE)
tests_fuzz_replay_config_SOURCES = tests/fuzz/fuzz_config.c
tests_fuzz_replay_config_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_config_LDADD = $(FUZZ_REPLAY_LDADD) $(LIBMAGPIE)

tests_fuzz_http_SOURCES = tests/fuzz/fuzz_http.c
tests_fuzz_http_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_http_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_http_LDADD = http/libhttp.a $(HTTP_LIBS)
tests_fuzz_replay_http_SOURCES = tests/fuzz/fuzz_http.c
tests_fuzz_replay_http_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_http_LDADD = $(FUZZ_REPLAY_LDADD) http/libhttp.a $(HTTP_LIBS)

tests_fuzz_qr_token_SOURCES = tests/fuzz/fuzz_qr_token.c
tests_fuzz_qr_token_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_qr_token_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_qr_token_LDADD = http/libhttp.a $(HTTP_LIBS)
tests_fuzz_replay_qr_token_SOURCES = tests/fuzz/fuzz_qr_token.c
tests_fuzz_replay_qr_token_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_qr_token_LDADD = $(FUZZ_REPLAY_LDADD) http/libhttp.a $(HTTP_LIBS)

tests_fuzz_bench_stream_SOURCES = tests/fuzz/fuzz_bench_stream.c
tests_fuzz_bench_stream_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_bench_stream_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_bench_stream_LDADD = $(LIBBENCH)
tests_fuzz_replay_bench_stream_SOURCES = tests/fuzz/fuzz_bench_stream.c
tests_fuzz_replay_bench_stream_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_bench_stream_LDADD = $(FUZZ_REPLAY_LDADD) $(LIBBENCH)

tests_fuzz_stompframe_SOURCES = tests/fuzz/fuzz_stompframe.c push/stompframe.c push/stompframe.h
tests_fuzz_stompframe_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_stompframe_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_stompframe_LDADD = $(LIBMAGPIE)
tests_fuzz_replay_stompframe_SOURCES = tests/fuzz/fuzz_stompframe.c push/stompframe.c push/stompframe.h
tests_fuzz_replay_stompframe_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_stompframe_LDADD = $(FUZZ_REPLAY_LDADD) $(LIBMAGPIE)

tests_fuzz_mqttpkt_SOURCES = tests/fuzz/fuzz_mqttpkt.c push/mqttpkt.c push/mqttpkt.h
tests_fuzz_mqttpkt_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_mqttpkt_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_mqttpkt_LDADD = $(LIBMAGPIE)
tests_fuzz_replay_mqttpkt_SOURCES = tests/fuzz/fuzz_mqttpkt.c push/mqttpkt.c push/mqttpkt.h
tests_fuzz_replay_mqttpkt_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_mqttpkt_LDADD = $(FUZZ_REPLAY_LDADD) $(LIBMAGPIE)

tests_fuzz_rcluster_SOURCES = tests/fuzz/fuzz_rcluster.c
tests_fuzz_rcluster_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_rcluster_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LINK)
tests_fuzz_rcluster_LDADD = $(LIBMAGPIE)
tests_fuzz_replay_rcluster_SOURCES = tests/fuzz/fuzz_rcluster.c
tests_fuzz_replay_rcluster_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_replay_rcluster_LDADD = $(FUZZ_REPLAY_LDADD) $(LIBMAGPIE)

EXTRA_DIST += tests/fuzz/README.md tests/fuzz/corpus tests/fuzz/dict tests/fuzz/make-corpus.py

# Every libFuzzer target (the generated sources first: make does not know yet that they include them).
fuzz-targets: $(BUILT_SOURCES)
if FUZZING
	$(MAKE) $(AM_MAKEFLAGS) $(FUZZ_TARGETS)
else
	@echo "the fuzz targets need a build configured with CC=clang-14 --enable-fuzzing (scripts/dev fuzz makes one)" >&2; exit 1
endif
.PHONY: fuzz-targets
