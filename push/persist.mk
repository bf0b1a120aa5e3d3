# magpie-persist: the Redis stream to MySQL worker (SPEC §6). Build rules for it, its unit tests and its
# benchmark helper.

# The worker's parts, in a library so the unit tests and the benchmark link the same code.
noinst_LIBRARIES += push/libpersist.a
push_libpersist_a_SOURCES = \
	push/persist_sid.h push/persist_sid.c \
	push/persist_entry.h push/persist_entry.c \
	push/persist_store.h push/persist_store.c \
	push/persist_stream.h push/persist_stream.c \
	push/persist_seq.h push/persist_seq.c push/timeline_chunks.h \
	push/persist_worker.h push/persist_worker.c
push_libpersist_a_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS)

bin_PROGRAMS += push/magpie-persist
push_magpie_persist_SOURCES = push/persist.c
push_magpie_persist_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS)
push_magpie_persist_LDADD = push/libpersist.a $(LIBMAGPIE)

PERSIST_UNIT_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CMOCKA_CFLAGS) -I$(srcdir)/push
PERSIST_UNIT_LDADD = push/libpersist.a $(LIBMAGPIE) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_persist_entry tests/unit/test_persist_sid
tests_unit_test_persist_entry_SOURCES = tests/unit/test_persist_entry.c
tests_unit_test_persist_entry_CFLAGS = $(PERSIST_UNIT_CFLAGS)
tests_unit_test_persist_entry_LDADD = $(PERSIST_UNIT_LDADD)
tests_unit_test_persist_sid_SOURCES = tests/unit/test_persist_sid.c
tests_unit_test_persist_sid_CFLAGS = $(PERSIST_UNIT_CFLAGS)
tests_unit_test_persist_sid_LDADD = $(PERSIST_UNIT_LDADD)
TESTS += tests/unit/test_persist_entry tests/unit/test_persist_sid

# The insert-variant comparison (bench/persist-insert-variants.c): built with the tests so it cannot rot,
# run by hand or by bench/persist-bench (see bench/persist-bench --help).
check_PROGRAMS += bench/persist-insert-variants
bench_persist_insert_variants_SOURCES = bench/persist-insert-variants.c
bench_persist_insert_variants_CFLAGS = $(PERSIST_UNIT_CFLAGS)
bench_persist_insert_variants_LDADD = push/libpersist.a $(LIBMAGPIE)
EXTRA_DIST += bench/persist-bench bench/results/persist-insert-variants.md
