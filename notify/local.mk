# magpie-notify: offline notifications to a signed webhook (SPEC §6; design in notify/notify_worker.h).
# It reads its stream with magpie-persist's stream code (push/libpersist.a).

noinst_LIBRARIES += notify/libnotify.a
notify_libnotify_a_SOURCES = \
	notify/notify_post.h notify/notify_post.c \
	notify/notify_worker.h notify/notify_worker.c
notify_libnotify_a_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CURL_CFLAGS) $(CRYPTO_CFLAGS) -I$(srcdir)/push

bin_PROGRAMS += notify/magpie-notify
notify_magpie_notify_SOURCES = notify/notify.c
notify_magpie_notify_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CURL_CFLAGS)
notify_magpie_notify_LDADD = notify/libnotify.a push/libpersist.a $(LIBMAGPIE) $(CURL_LIBS) $(CRYPTO_LIBS)

check_PROGRAMS += tests/unit/test_notify_sign
tests_unit_test_notify_sign_SOURCES = tests/unit/test_notify_sign.c
tests_unit_test_notify_sign_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CURL_CFLAGS) $(CMOCKA_CFLAGS) \
	-I$(srcdir)/notify
tests_unit_test_notify_sign_LDADD = notify/libnotify.a push/libpersist.a $(LIBMAGPIE) $(CURL_LIBS) \
	$(CRYPTO_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_notify_sign
